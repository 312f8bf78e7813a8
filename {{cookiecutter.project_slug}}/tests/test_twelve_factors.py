"""The service as a platform runs it: the real console script in its own process, configured only by its
environment, binding $PORT, logging to stdout and stopping on SIGTERM. Every wait here is bounded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.settings import environment_names

from conftest import SECRET_KEY, url_string

CONSOLE_SCRIPT = "{{ cookiecutter.project_slug }}"
ACCESS_LOGGER = "{{ cookiecutter.package_name }}.web.access"
STARTUP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 30.0
GRACEFUL_TIMEOUT = 5


def console_script() -> str:
    """The installed console script: next to this interpreter in the virtualenv, or on PATH."""
    beside = Path(sys.executable).with_name(CONSOLE_SCRIPT)
    found = str(beside) if beside.exists() else shutil.which(CONSOLE_SCRIPT)
    assert found, f"the {CONSOLE_SCRIPT} console script is not installed (run `make install`)"
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def service_env(database_url: URL, redis_url: str) -> dict[str, str]:
    """A complete environment for the service; no setting is inherited from the shell running the tests."""
    inherited = {name: value for name, value in os.environ.items() if name not in environment_names()}
    return {
        **inherited,
        "DATABASE_URL": url_string(database_url),
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET_KEY,
        "LOG_FORMAT": "json",
        "GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
    }


class WebProcess:
    """The web process running in a subprocess, with its stdout and stderr captured in files."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, stdout: Path, stderr: Path) -> None:
        self.process, self.port = process, port
        self.stdout_path, self.stderr_path = stdout, stderr
        self.base_url = f"http://127.0.0.1:{port}"

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"web exited with {self.process.returncode}:\n{self.stderr}"
            if accepts_connections(self.port):
                return
            time.sleep(0.05)
        pytest.fail(f"web did not listen on port {self.port} within {STARTUP_TIMEOUT} s:\n{self.stdout}")

    def stop(self, timeout: float) -> int:
        """SIGTERM, as a platform sends it, and the exit code once the process has exited."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


@contextmanager
def running_web(env: dict[str, str], cwd: Path) -> Iterator[WebProcess]:
    """Start the web process on a free port, wait until it listens, and always kill it afterwards."""
    port = free_port()
    stdout, stderr = cwd / "web.stdout", cwd / "web.stderr"
    workdir = cwd / "workdir"  # empty: no .env, and anything the process writes would show up here
    workdir.mkdir()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [console_script(), "web"], env={**env, "PORT": str(port)}, cwd=workdir, stdout=out, stderr=err
        )
    web = WebProcess(process, port, stdout, stderr)
    try:
        web.wait_until_serving()
        yield web
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def run_command(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )


def json_events(output: str) -> list[dict[str, Any]]:
    events = []
    for line in output.splitlines():
        event = json.loads(line)  # fails on any line that is not JSON
        assert isinstance(event, dict), line
        assert {"time", "level", "logger", "message"} <= set(event), line
        events.append(event)
    return events


def test_web_binds_port_from_env_and_serves_health(service_env: dict[str, str], tmp_path: Path) -> None:
    with running_web(service_env, tmp_path) as web:
        response = httpx2.get(f"{web.base_url}/healthz", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "server" not in response.headers


def test_every_stdout_line_is_json(service_env: dict[str, str], tmp_path: Path) -> None:
    with running_web(service_env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        assert http.post("/items", json={"name": "from a process"}).status_code == 201
        traced = http.get("/items", headers={"X-Request-ID": "process-trace-1"})
        assert traced.headers["x-request-id"] == "process-trace-1"
        assert http.get("/no/such/route").status_code == 404
        web.stop(timeout=GRACEFUL_TIMEOUT)

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
        exit_code = web.stop(timeout=GRACEFUL_TIMEOUT)

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
    assert "Database schema is at head." in migrate.stderr

    with running_web(env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        ready = http.get("/readyz")
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
        ready = http.get("/readyz")
        failed = http.get("/items", headers={"X-Request-ID": "process-500"})
        web.stop(timeout=GRACEFUL_TIMEOUT)

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
