"""The conformance suite: one or more tests per factor, each against the real thing.

The console script runs in its own process with only the environment it is given, against real PostgreSQL
and Redis; signals are real, stdout is read as written; the lock files, the Procfile and the CI workflow
are read as committed. Every assertion says which factor broke and how to fix it, in one sentence, so a
fork whose change breaks a factor learns which one from CI. The README's factor map names these tests.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import NullPool, create_engine, inspect
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.database import sync_url
from {{ cookiecutter.package_name }}.schema import head_revisions
from {{ cookiecutter.package_name }}.settings import environment_names

from conftest import (
    GRACEFUL_TIMEOUT,
    schema_of,
    url_string,
)
from processes import (
    COMMAND_TIMEOUT,
    STARTUP_TIMEOUT,
    accepts_connections,
    console_script,
    event_receiver,
    free_port,
    json_events,
    modules_loaded_by,
    read_head,
    read_response,
    run_command,
    running,
    running_web,
    running_worker,
    settled_readiness,
    wait_until,
)

PROJECT = Path(__file__).resolve().parent.parent
SOURCE = PROJECT / "src" / "{{ cookiecutter.package_name }}"
CONSOLE_SCRIPT = "{{ cookiecutter.project_slug }}"
ACCESS_LOGGER = "{{ cookiecutter.package_name }}.web.access"
MIGRATE_LOGGER = "{{ cookiecutter.package_name }}.cli"
SHUTDOWN_LOGGER = "{{ cookiecutter.package_name }}.web.shutdown"
# Names a deploy goes by: code that compares anything with one of these behaves differently per deploy.
DEPLOY_NAMES = frozenset(
    {"production", "prod", "staging", "stage", "development", "dev", "local", "qa", "uat", "preprod"}
)
# Settings that name a deploy instead of configuring one thing.
DEPLOY_NAME_SETTINGS = frozenset(
    {"ENV", "ENVIRONMENT", "APP_ENV", "DEPLOY_ENV", "STAGE", "DEPLOYMENT", "TIER"}
)
PER_DEPLOY_FILE = re.compile(
    r"(^|/)(\.env(\..+)?|.+\.env|[^/]*[._-](prod|production|staging|stage|uat|qa|preprod)(\.[^/]+)?)$"
)
# Files that make a folder a second application or a second repository.
SECOND_CODEBASE_MARKERS = frozenset(
    {"pyproject.toml", "setup.py", "setup.cfg", "package.json", "Procfile", "manage.py", ".gitmodules"}
)
# A URL of a backing service, a host:port on this machine, or `localhost` as a host (a list of host names
# the web answers to, such as the ALLOWED_HOSTS default, and a list of trusted proxies are not addresses).
BACKING_SERVICE_ADDRESS = re.compile(
    r"\b(postgres(ql)?|redis|rediss|amqp|mysql|mongodb|sqlite)(\+\w+)?://"
    r"|\b(localhost|127\.0\.0\.1):\d+|^localhost$",
    re.IGNORECASE,
)
LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
# Each spawned uvicorn worker imports the whole service again: on a busy machine that takes a while.
MULTIPROCESS_STARTUP_TIMEOUT = 3 * STARTUP_TIMEOUT
INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host")


def broken(factor: str, fix: str) -> str:
    """The message of a failed conformance assertion: the factor, and the fix, in one sentence."""
    return f"Factor {factor} is broken: {fix}"


def git(*args: str) -> str:
    process = subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=30)
    assert process.returncode == 0, broken(
        "I", f"keep the service in git (`git {' '.join(args)}`: {process.stderr})"
    )
    return process.stdout


def committable_files() -> list[str]:
    """Every file git tracks or would add (`git add -A`), relative to the project root."""
    return git("ls-files", "--cached", "--others", "--exclude-standard").splitlines()


def source_trees() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(SOURCE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def docstring_nodes(tree: ast.Module) -> set[int]:
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                nodes.add(id(first.value))
    return nodes


def tables_of(database_url: URL) -> set[str]:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock_file: str) -> dict[str, str]:
    """{canonical name: version} of a lock file, after checking that every pin carries a hash."""
    text = (PROJECT / lock_file).read_text()
    pins: dict[str, str] = {}
    for requirement in re.split(r"\n(?=\S)", text):
        first_line = requirement.splitlines()[0]
        assert not first_line.startswith(INDEX_OPTIONS), broken(
            "II", f"{lock_file} names an index ({first_line!r}); keep names, versions and hashes only"
        )
        if match := LOCK_LINE.match(first_line):
            assert "--hash=sha256:" in requirement, broken(
                "II", f"{match[1]} has no hash in {lock_file}; run `make lock`"
            )
            pins[canonical(match[1])] = match[2]
    return pins


def one_event_per_line(output: str) -> list[dict[str, Any]]:
    for line in output.splitlines():
        try:
            json.loads(line)
        except ValueError:
            raise AssertionError(
                broken(
                    "XI", f"log through `logging` only, never print(); this stdout line is no event: {line!r}"
                )
            ) from None
    return json_events(output)


# --- I. Codebase: one codebase in git, many deploys of it ---------------------------------------------------


def test_factor_01_codebase_is_one_repository_with_no_second_app_inside() -> None:
    top = Path(git("rev-parse", "--show-toplevel").strip()).resolve()
    assert top == PROJECT, broken("I", f"give this service a repository of its own (it lives inside {top})")
    nested = [
        path
        for path in committable_files()
        if "/" in path and (Path(path).name in SECOND_CODEBASE_MARKERS or Path(path).parent.name == ".git")
    ]
    assert not nested, broken("I", f"move the second codebase out and depend on it as a package: {nested}")


def test_factor_01_codebase_has_no_per_deploy_config_files_or_deploy_name_switches() -> None:
    per_deploy = [path for path in committable_files() if PER_DEPLOY_FILE.search(path)]
    per_deploy = [path for path in per_deploy if path != ".env.example"]
    assert not per_deploy, broken(
        "I", f"set per-deploy values in each deploy's environment, not in committed files: {per_deploy}"
    )
    named = sorted(DEPLOY_NAME_SETTINGS & set(environment_names()))
    assert not named, broken("I", f"replace {named} with one setting per behaviour it switches")
    switches = []
    for path, tree in source_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                values = [item for operand in operands for item in getattr(operand, "elts", [operand])]
                words = {
                    item.value.lower()
                    for item in values
                    if isinstance(item, ast.Constant) and isinstance(item.value, str)
                }
                if words & DEPLOY_NAMES:
                    switches.append(f"{path.relative_to(PROJECT)}:{node.lineno}")
    assert not switches, broken(
        "I", f"branch on a setting for the behaviour, not on a deploy's name: {switches}"
    )


# --- II. Dependencies: declared, isolated, locked -----------------------------------------------------------


def test_factor_02_dependencies_are_declared_locked_with_hashes_and_installed_as_locked() -> None:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    runtime, everything = locked("requirements.txt"), locked("requirements-dev.txt")
    for lock_file, pins, declared in (
        ("requirements.txt", runtime, project["dependencies"]),
        (
            "requirements-dev.txt",
            everything,
            project["dependencies"] + project["optional-dependencies"]["dev"],
        ),
    ):
        names = [canonical(match[0]) for spec in declared if (match := NAME.match(spec))]
        missing = [name for name in names if name not in pins]
        assert not missing, broken(
            "II", f"{missing} declared in pyproject.toml but not in {lock_file}; run `make lock`"
        )
    for name, version in everything.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a pin whose platform marker excludes this machine
        assert installed == version, broken(
            "II", f"{name} {installed} is installed, {version} locked; run `make install`"
        )


def test_factor_02_dependencies_the_service_needs_no_system_tool_on_path(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # Only the virtualenv's own commands: no /usr/bin, so no curl, convert, pg_dump or git.
    env = {**service_env, "PATH": str(Path(sys.executable).parent)}
    result = run_command(["check", "--format", "json"], env, tmp_path)
    assert result.returncode == 0, broken(
        "II", f"depend on Python packages, not on tools the host may lack: {result.stdout}{result.stderr}"
    )


# --- III. Config: in the environment, nowhere else -------------------------------------------------------


def test_factor_03_config_required_settings_have_no_value_baked_into_the_code(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    required = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")
    env = {name: value for name, value in service_env.items() if name not in required}
    result = run_command(["config"], env, tmp_path)
    assert result.returncode == os.EX_CONFIG, broken("III", "give required settings no default in code")
    for name in required:
        assert name in result.stderr, broken("III", f"remove the default for {name} from the code")


def test_factor_03_config_each_process_reads_its_own_environment(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_command(["config"], {**service_env, "PORT": "5101", "LOG_LEVEL": "WARNING"}, tmp_path)
    assert result.returncode == 0, result.stderr
    shown = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert (shown["PORT"], shown["LOG_LEVEL"]) == ("5101", "WARNING"), broken(
        "III", "read every setting from the environment in settings.py, never from a file or a constant"
    )
    assert shown["SECRET_KEY"] == "********", broken("III", "mask secrets wherever settings are shown")


def test_factor_03_config_bad_environment_stops_web_before_binding(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {**service_env, "PORT": str(port), "WEB_CONCURRENCY": "many"}
    del env["DATABASE_URL"]
    process = subprocess.Popen(
        [console_script(), "web"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        bound = False
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            bound = bound or accepts_connections(port)
            time.sleep(0.02)
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == os.EX_CONFIG, broken(
        "III", "validate every setting before serving (exit 78)"
    )
    for name in (b"DATABASE_URL", b"WEB_CONCURRENCY"):
        assert name in stderr, broken("III", "name every bad variable in one error")
    assert stdout == b""
    assert not bound, broken("III", "load settings before binding the port")


# --- IV. Backing services: attached by URL ------------------------------------------------------------------


def test_factor_04_backing_services_are_located_by_url_settings_only() -> None:
    found = []
    for path, tree in source_trees():
        docstrings = docstring_nodes(tree)
        for node in ast.walk(tree):
            if (
                not isinstance(node, ast.Constant)
                or not isinstance(node.value, str)
                or id(node) in docstrings
            ):
                continue
            if BACKING_SERVICE_ADDRESS.search(node.value):
                found.append(f"{path.relative_to(PROJECT)}:{node.lineno}: {node.value!r}")
    assert not found, broken("IV", f"take each backing service's address from its URL setting: {found}")


def test_factor_04_backing_services_attach_by_url_as_a_platform_hands_it_out(
    service_env: dict[str, str], empty_database_url: URL, tmp_path: Path
) -> None:
    # As a platform writes it: postgres://, and p@ss%w0rd percent-encoded as p%40ss%25w0rd.
    url = url_string(empty_database_url.set(drivername="postgres", password="p@ss%w0rd"))
    assert url.startswith("postgres://")
    assert ":p%40ss%25w0rd@" in url
    env = {**service_env, "DATABASE_URL": url}

    migrate = run_command(["migrate"], env, tmp_path)
    assert migrate.returncode == 0, broken("IV", f"accept the database URL as given: {migrate.stderr}")
    (at_head,) = [event for event in json_events(migrate.stdout) if event["logger"] == MIGRATE_LOGGER]
    assert at_head["message"] == f"Database schema is at head {', '.join(sorted(head_revisions()))}"

    with running_web(env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        ready = settled_readiness(http.get)
        created = http.post("/items", json={"name": "behind a password"})
        fetched = http.get(created.headers["location"])
    assert ready.status_code == 200, broken("IV", f"reach the database the URL names: {ready.text}")
    assert fetched.json()["name"] == "behind a password"


def test_factor_04_another_app_attaches_by_events_url_and_detaches_by_unsetting_it(
    service_env: dict[str, str], database_url: URL, tmp_path: Path
) -> None:
    # Attached like the database: a URL (and its secret) in the configuration, the code unchanged.
    with event_receiver() as other_app:
        attached = {**service_env, "EVENTS_URL": other_app.url, "EVENTS_SECRET": "conformance-" + "e" * 32}
        with (
            running_web(service_env, tmp_path) as web,
            httpx2.Client(base_url=web.base_url, timeout=10) as http,
        ):
            with running_worker(attached, tmp_path):
                announced = http.post("/items", json={"name": "announced"}).json()["id"]
                wait_until(lambda: other_app.received or None, STARTUP_TIMEOUT, "the event at the other app")
            with running_worker(service_env, tmp_path, "detached-worker"):
                quiet = http.post("/items", json={"name": "not announced"}).json()["id"]
                wait_until(
                    lambda: http.get(f"/items/{quiet}").json()["status"] == "done" or None,
                    STARTUP_TIMEOUT,
                    "the detached worker's item done",
                )
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            recorded = connection.exec_driver_sql("SELECT data FROM event_deliveries").scalars().all()
    finally:
        engine.dispose()

    # Delivery is at least once (a job can run twice; the receiver deduplicates by event id): every request
    # the other app received is the one announcement.
    events = [json.loads(received.body) for received in other_app.received]
    assert events, broken("IV", "announce done items to the app at EVENTS_URL")
    assert {(event["id"], event["data"]["id"]) for event in events} == {(events[0]["id"], announced)}, broken(
        "IV", "announce done items to the app at EVENTS_URL"
    )
    assert [row["id"] for row in recorded if row["id"] in (announced, quiet)] == [announced], broken(
        "IV", "record and send no event once EVENTS_URL is unset"
    )


# --- V. Build, release, run: the release step alone changes the schema --------------------------------------


def test_factor_05_release_step_audits_then_migrates_as_the_procfile_says(
    service_env: dict[str, str], empty_database_url: URL, tmp_path: Path
) -> None:
    procfile = dict(line.split(": ", 1) for line in (PROJECT / "Procfile").read_text().splitlines() if line)
    assert procfile.get("release") == f"{CONSOLE_SCRIPT} release", broken(
        "V", f"make the Procfile's release process `{CONSOLE_SCRIPT} release` (check, then migrate)"
    )
    env = {**service_env, "DATABASE_URL": url_string(empty_database_url)}
    refused = run_command(["release"], {**env, "FORWARDED_ALLOW_IPS": "*"}, tmp_path)
    assert refused.returncode == os.EX_CONFIG, broken("V", "run `check` before migrating in the release step")
    assert tables_of(empty_database_url) == set(), broken("V", "migrate only after `check` passed")
    released = run_command(["release"], env, tmp_path)
    assert released.returncode == 0, released.stdout + released.stderr
    assert schema_of(empty_database_url)[0] == set(head_revisions())


def test_factor_05_web_never_migrates_and_reports_the_release_it_runs(
    service_env: dict[str, str], empty_database_url: URL, tmp_path: Path
) -> None:
    env = {**service_env, "DATABASE_URL": url_string(empty_database_url), "RELEASE_ID": "build-0042"}
    with running_web(env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        ready = http.get("/readyz")
        version = http.get("/version")
        web.stop(timeout=COMMAND_TIMEOUT)
    assert tables_of(empty_database_url) == set(), broken(
        "V", "change the schema in the release step (`release`) only, never when a web process starts"
    )
    not_ready = broken("V", "report not-ready while the database is behind the code's migrations")
    assert ready.status_code == 503, not_ready
    assert "schema" in ready.json()["problems"], not_ready
    assert version.json() == {"release": "build-0042"}, broken("V", "take the release id from RELEASE_ID")
    assert {event["release"] for event in json_events(web.stdout)} == {"build-0042"}


# --- VI. Processes: stateless, sharing nothing but backing services -----------------------------------------


def test_factor_06_processes_two_web_processes_see_the_same_items(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        running("web", service_env, tmp_path, "web-a") as first,
        running("web", service_env, tmp_path, "web-b") as second,
    ):
        first.wait_until_serving()
        second.wait_until_serving()
        with httpx2.Client(timeout=5) as http:
            before = http.get(f"{second.base_url}/items?limit=100").json()["items"]
            created = http.post(f"{first.base_url}/items", json={"name": "shared"}).json()
            listed = http.get(f"{second.base_url}/items?limit=100").json()["items"]
            fetched = http.get(f"{second.base_url}/items/{created['id']}")
    assert created["id"] not in [item["id"] for item in before]
    assert created["id"] in [item["id"] for item in listed], broken(
        "VI", "keep no state in a process's memory; read it from the database every time"
    )
    assert fetched.status_code == 200, broken("VI", "keep state in the database, where every process sees it")
    assert list((tmp_path / "workdir").iterdir()) == [], broken("VI", "write nothing to the local disk")


# --- VII. Port binding: the process serves HTTP itself, on $PORT --------------------------------------------


def test_factor_07_port_binding_web_serves_http_itself_on_port(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    with running("web", service_env, tmp_path) as web:

        def serving() -> bool:
            assert web.process.poll() is None, f"exited with {web.process.returncode}:\n{web.stderr}"
            return accepts_connections(web.port)

        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not serving() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert serving(), broken("VII", f"bind the port in $PORT ({web.port}), read through settings.port")
        response = httpx2.get(f"{web.base_url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "server" not in response.headers


# --- VIII. Concurrency: scale out by running more processes -------------------------------------------------


def children_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_factor_08_concurrency_web_runs_web_concurrency_processes_in_the_foreground(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    with running("web", {**service_env, "WEB_CONCURRENCY": "2"}, tmp_path) as web:
        # uvicorn's supervisor stays the process the platform started and spawns one child per worker at
        # once; the port answers only when a child listens. A single process would answer with no child.
        def started() -> bool:
            assert web.process.poll() is None, broken("VIII", "run in the foreground; never daemonise")
            return len(children_of(web.process.pid)) >= 2 or accepts_connections(web.port)

        wait_until(started, MULTIPROCESS_STARTUP_TIMEOUT, "neither two children nor a listening port")
        children = children_of(web.process.pid)
        assert len(children) >= 2, broken("VIII", "start WEB_CONCURRENCY server processes, as settings say")
        wait_until(lambda: accepts_connections(web.port), MULTIPROCESS_STARTUP_TIMEOUT, "web not listening")
        assert httpx2.get(f"{web.base_url}/healthz", timeout=5).status_code == 200
        assert web.process.poll() is None, broken("VIII", "run in the foreground; never daemonise")
        written = list((tmp_path / "workdir").iterdir())
    assert written == [], broken("VIII", f"write no PID file; the platform tracks processes: {written}")


def test_factor_08_concurrency_worker_runs_in_the_foreground_without_a_pid_file(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    with running_worker(service_env, tmp_path) as worker:
        assert worker.process.poll() is None, broken("VIII", "run the worker in the foreground; never detach")
        written = list((tmp_path / "workdir").iterdir())
        exit_code = worker.stop(timeout=GRACEFUL_TIMEOUT + 10)
    assert written == [], broken(
        "VIII", f"write no PID or state file; the platform tracks processes: {written}"
    )
    assert exit_code == 0


# --- IX. Disposability: fast start, graceful stop -----------------------------------------------------------


def test_factor_09_disposability_sigterm_stops_an_idle_web_process_at_once(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    with running_web(service_env, tmp_path) as web:
        started = time.monotonic()
        exit_code = web.stop(timeout=COMMAND_TIMEOUT)
    assert time.monotonic() - started < GRACEFUL_TIMEOUT, broken("IX", "stop promptly on SIGTERM when idle")
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught (a shell reports 143).
    assert exit_code == -signal.SIGTERM
    assert "Application shutdown complete." in [event["message"] for event in json_events(web.stdout)]
    assert not accepts_connections(web.port)


# A web process's whole start (settings, app, lifespan) and one request, in a fresh interpreter that then
# prints the modules it loaded.
WEB_START_PROGRAM = """
import json, sys
from starlette.testclient import TestClient
from {{ cookiecutter.package_name }}.web.app import app_from_environment
with TestClient(app_from_environment(), base_url="http://localhost") as client:
    assert client.get("/healthz").status_code == 200
print(json.dumps(sorted(sys.modules)))
"""


def test_factor_09_disposability_web_process_loads_neither_migrations_nor_the_worker(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    loaded = modules_loaded_by(WEB_START_PROGRAM, service_env, tmp_path)

    # Each was a sixth to a quarter of the web process's start-up, and serving needs neither.
    assert "alembic" not in loaded, broken("IX", "leave Alembic to the release step")
    assert "celery.apps.worker" not in loaded, broken("IX", "publish through celery_app.py, not worker.py")


def test_factor_09_disposability_sigterm_lets_an_in_flight_request_finish(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    body = json.dumps({"name": "in flight"}).encode()
    head = (
        "POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Request-ID: in-flight-1\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    def is_stop_requested(event: dict[str, Any]) -> bool:
        return event["logger"] == SHUTDOWN_LOGGER and str(event["message"]).startswith("Stop requested")

    def is_drain_decided(event: dict[str, Any]) -> bool:
        # uvicorn waits for open connections, or (with no graceful timeout) cancels their requests at once.
        return str(event["message"]).startswith(("Waiting for connections to close", "Cancel "))

    with running_web(service_env, tmp_path) as web:
        with socket.create_connection(("127.0.0.1", web.port), timeout=GRACEFUL_TIMEOUT) as connection:
            connection.sendall(head)
            # The server says "100 Continue" once the app asks for the body: the request is in flight.
            assert read_head(connection).startswith(b"HTTP/1.1 100 ")
            connection.sendall(body[:5])
            web.process.send_signal(signal.SIGTERM)
            web.wait_for_event(is_stop_requested, GRACEFUL_TIMEOUT)
            # The rest of the body only once uvicorn has decided to drain (or not), so no timer races it.
            web.wait_for_event(is_drain_decided, GRACEFUL_TIMEOUT)
            try:
                connection.sendall(body[5:])
                status, headers, answer = read_response(connection)
            except (OSError, pytest.fail.Exception) as closed:
                # Without a drain the server may close the connection instead of answering: the same breakage.
                fix = f"drain in-flight requests on SIGTERM (GRACEFUL_TIMEOUT > 0): {closed}"
                raise AssertionError(broken("IX", fix)) from None
        exit_code = web.process.wait(timeout=GRACEFUL_TIMEOUT + 5)

    assert status == 201, broken(
        "IX", f"drain in-flight requests on SIGTERM (GRACEFUL_TIMEOUT > 0): {answer!r}"
    )
    assert json.loads(answer)["name"] == "in flight"
    assert headers["x-request-id"] == "in-flight-1"
    assert exit_code == -signal.SIGTERM
    order = [
        event["message"]
        for event in web.events()
        if is_stop_requested(event)
        or event["logger"] == ACCESS_LOGGER
        or event["message"] == "Application shutdown complete."
    ]
    assert order[0].startswith("Stop requested")
    assert order[1:] == ["POST /items 201", "Application shutdown complete."]


# --- X. Dev/prod parity: the same kinds of backing services everywhere --------------------------------------


def test_factor_10_parity_tests_and_ci_use_the_backing_services_production_uses(
    database_url: URL, redis_url: str
) -> None:
    assert database_url.get_backend_name() == "postgresql", broken(
        "X", "run the tests on PostgreSQL, not SQLite"
    )
    assert redis_url.startswith(("redis://", "rediss://")), broken(
        "X", "run the tests on Redis, not another broker"
    )
    workflow = (PROJECT / ".github" / "workflows" / "ci.yml").read_text()
    compose = (PROJECT / "compose.yaml").read_text()
    for name, text in (("the CI workflow", workflow), ("compose.yaml", compose)):
        for image in ("postgres", "redis"):
            assert re.search(rf"(?m)^\s+image: {image}:", text), broken(
                "X", f"run {image} in {name}, as production"
            )
    for variable, scheme in (("DATABASE_URL", "postgresql://"), ("REDIS_URL", "redis://")):
        assert re.search(rf"(?m)^\s+{variable}: {scheme}", workflow), broken(
            "X", f"point the CI workflow's {variable} at its {scheme.rstrip(':/')} service container"
        )


# --- XI. Logs: one event stream on stdout -------------------------------------------------------------------


def test_factor_11_logs_every_stdout_line_is_one_json_event(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    with running_web(service_env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        assert settled_readiness(http.get).status_code == 200
        assert http.post("/items", json={"name": "from a process"}).status_code == 201
        traced = http.get("/items", headers={"X-Request-ID": "process-trace-1"})
        assert traced.headers["x-request-id"] == "process-trace-1"
        assert http.get("/no/such/route").status_code == 404
        web.stop(timeout=COMMAND_TIMEOUT)

    events = one_event_per_line(web.stdout)
    access = [event for event in events if event["logger"] == ACCESS_LOGGER]
    assert [(event["method"], event["path"], event["status"]) for event in access] == [
        ("POST", "/items", 201),
        ("GET", "/items", 200),
        ("GET", "/no/such/route", 404),
    ]
    assert access[1]["request_id"] == "process-trace-1"
    assert web.stderr == "", broken("XI", f"log to stdout only, through logs.py: {web.stderr}")
    assert list((tmp_path / "workdir").iterdir()) == [], broken("XI", "write logs to stdout, never to a file")


def test_factor_11_logs_an_unhandled_error_is_one_event_with_its_request_id(
    service_env: dict[str, str], empty_database_url: URL, tmp_path: Path
) -> None:
    # Web on a database the release step never migrated: a query fails unexpectedly.
    env = {**service_env, "DATABASE_URL": url_string(empty_database_url)}
    with running_web(env, tmp_path) as web, httpx2.Client(base_url=web.base_url, timeout=5) as http:
        failed = http.get("/items", headers={"X-Request-ID": "process-500"})
        web.stop(timeout=COMMAND_TIMEOUT)

    assert failed.status_code == 500
    assert failed.json() == {"error": {"status": 500, "message": "Internal Server Error"}}
    events = one_event_per_line(web.stdout)
    tracebacks = [event for event in events if "exception" in event]
    assert len(tracebacks) == 1, broken("XI", "log a traceback as one event (logger.exception), not as lines")
    assert (tracebacks[0]["level"], tracebacks[0]["request_id"]) == ("ERROR", "process-500")
    assert web.stderr == "", broken("XI", f"log to stdout only, through logs.py: {web.stderr}")


# --- XII. Admin processes: one-off commands of the same code and config -------------------------------------


def test_factor_12_admin_tasks_are_subcommands_of_the_one_console_script(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    scripts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["scripts"]
    assert list(scripts) == [CONSOLE_SCRIPT], broken(
        "XII", f"add commands to cli.py, not scripts: {list(scripts)}"
    )
    loose = [
        path
        for path in committable_files()
        if path.endswith(".py") and not path.startswith(("src/", "tests/"))
    ]
    assert not loose, broken("XII", f"make each admin script a command in cli.py, sharing settings: {loose}")
    usage = run_command(["--help"], service_env, tmp_path).stdout
    for command in ("web", "worker", "clock", "release", "migrate", "check", "config", "shell"):
        assert f"  {command} " in usage, broken("XII", f"keep `{command}` a subcommand of {CONSOLE_SCRIPT}")
    shell = subprocess.run(
        [console_script(), "shell"],
        input="print('port', settings.port)\n",
        env={**service_env, "PORT": "5123"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert "port 5123" in shell.stdout.replace(">>> ", ""), broken(
        "XII", f"run admin code with the processes' own settings: {shell.stdout}{shell.stderr}"
    )
