"""The service as a platform runs it: the real console script in its own process, configured only by its
environment, binding $PORT, logging to stdout and stopping on SIGTERM. Every wait here is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx2
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.schema import head_revisions

from conftest import (
    GRACEFUL_TIMEOUT,
    url_string,
)
from processes import (
    COMMAND_TIMEOUT,
    accepts_connections,
    console_script,
    free_port,
    json_events,
    run_command,
    running_web,
    settled_readiness,
)

ACCESS_LOGGER = "{{ cookiecutter.package_name }}.web.access"
MIGRATE_LOGGER = "{{ cookiecutter.package_name }}.cli"


def test_web_binds_port_from_env_and_serves_health(service_env: dict[str, str], tmp_path: Path) -> None:
    with running_web(service_env, tmp_path) as web:
        response = httpx2.get(f"{web.base_url}/healthz", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "server" not in response.headers


def test_every_stdout_line_is_json(service_env: dict[str, str], tmp_path: Path) -> None:
    with running_web(service_env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        assert http.get("/healthz").status_code == 200
        assert settled_readiness(http.get).status_code == 200
        assert http.post("/items", json={"name": "from a process"}).status_code == 201
        traced = http.get("/items", headers={"X-Request-ID": "process-trace-1"})
        assert traced.headers["x-request-id"] == "process-trace-1"
        assert http.get("/no/such/route").status_code == 404
        web.stop(timeout=COMMAND_TIMEOUT)

    events = json_events(web.stdout)
    access = [event for event in events if event["logger"] == ACCESS_LOGGER]
    assert [(event["method"], event["path"], event["status"]) for event in access] == [
        ("POST", "/items", 201),
        ("GET", "/items", 200),
        ("GET", "/no/such/route", 404),
    ]
    assert access[1]["request_id"] == "process-trace-1"
    assert web.stderr == ""
    # Logs are a stream, not files: the process wrote nothing into its working directory.
    assert list((tmp_path / "workdir").iterdir()) == []


def test_sigterm_stops_web_cleanly(service_env: dict[str, str], tmp_path: Path) -> None:
    with running_web(service_env, tmp_path) as web:
        assert httpx2.get(f"{web.base_url}/healthz", timeout=5).status_code == 200

        started = time.monotonic()
        exit_code = web.stop(timeout=COMMAND_TIMEOUT)

    assert time.monotonic() - started < GRACEFUL_TIMEOUT
    # uvicorn 0.54 finishes its graceful shutdown, then re-raises the signal it caught, so the process
    # ends the way an unhandled SIGTERM ends it (a shell reports 143).
    assert exit_code == -signal.SIGTERM
    messages = [event["message"] for event in json_events(web.stdout)]
    assert "Shutting down" in messages
    assert "Application shutdown complete." in messages
    assert not accepts_connections(web.port)


def test_bad_config_stops_before_binding(service_env: dict[str, str], tmp_path: Path) -> None:
    # Variant 1: three bad variables, all named at once.
    all_bad = {**service_env, "PORT": "abc"}
    del all_bad["DATABASE_URL"], all_bad["SECRET_KEY"]
    # Variant 2: a valid, free PORT, watched the whole time the process runs.
    port = free_port()
    no_database = {**service_env, "PORT": str(port)}
    del no_database["DATABASE_URL"]

    # Both start together: each takes a couple of seconds just to import.
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for env in (all_bad, no_database):
            processes.append(
                subprocess.Popen(
                    [console_script(), "web"],
                    env=env,
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        first, second = processes
        bound = False
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while second.poll() is None and time.monotonic() < deadline:
            bound = bound or accepts_connections(port)
            time.sleep(0.02)
        first_out, first_err = first.communicate(timeout=COMMAND_TIMEOUT)
        second_out, second_err = second.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)

    assert first.returncode == os.EX_CONFIG
    for name in ("DATABASE_URL", "SECRET_KEY", "PORT"):
        assert name.encode() in first_err
    assert first_out == b""

    assert second.returncode == os.EX_CONFIG
    assert b"DATABASE_URL" in second_err
    assert second_out == b""
    assert b"SECRET_KEY" not in second_err
    assert not bound
    assert not accepts_connections(port)


def test_migrate_then_web_with_percent_encoded_password(
    service_env: dict[str, str], empty_database_url: URL, tmp_path: Path
) -> None:
    # As a platform writes it: postgres://, and p@ss%w0rd percent-encoded as p%40ss%25w0rd.
    url = url_string(empty_database_url.set(drivername="postgres", password="p@ss%w0rd"))
    assert url.startswith("postgres://")
    assert ":p%40ss%25w0rd@" in url
    env = {**service_env, "DATABASE_URL": url}

    migrate = run_command(["migrate"], env, tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    (at_head,) = [event for event in json_events(migrate.stdout) if event["logger"] == MIGRATE_LOGGER]
    assert at_head["message"] == f"Database schema is at head {', '.join(sorted(head_revisions()))}"

    with running_web(env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        ready = settled_readiness(http.get)
        created = http.post("/items", json={"name": "behind a password"})
        fetched = http.get(created.headers["location"])

    assert ready.status_code == 200, ready.text
    assert created.status_code == 201
    assert fetched.json()["name"] == "behind a password"


def test_unhandled_error_is_json_500_and_its_traceback_line_carries_the_request_id(
    service_env: dict[str, str], empty_database_url: URL, tmp_path: Path
) -> None:
    # Web on a database the release step never migrated: readiness says so, and a query fails unexpectedly.
    env = {**service_env, "DATABASE_URL": url_string(empty_database_url)}
    with running_web(env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        ready = settled_readiness(http.get)
        failed = http.get("/items", headers={"X-Request-ID": "process-500"})
        web.stop(timeout=COMMAND_TIMEOUT)

    assert ready.status_code == 503
    assert set(ready.json()["problems"]) == {"schema"}
    assert failed.status_code == 500
    assert failed.json() == {"error": {"status": 500, "message": "Internal Server Error"}}
    assert failed.headers["x-request-id"] == "process-500"
    events = json_events(web.stdout)
    (traceback_event,) = [event for event in events if "exception" in event]
    assert traceback_event["level"] == "ERROR"
    assert traceback_event["request_id"] == "process-500"
    (access,) = [event for event in events if event["logger"] == ACCESS_LOGGER]
    assert (access["status"], access["request_id"]) == (500, "process-500")
    assert web.stderr == ""
