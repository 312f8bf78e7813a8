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
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from sqlalchemy import Engine, NullPool, create_engine, inspect
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.database import sync_url
from {{ cookiecutter.package_name }}.events.signing import new_secret  # drop: events
from {{ cookiecutter.package_name }}.jobs.celery_app import create_celery
from {{ cookiecutter.package_name }}.jobs.tasks import PROCESS_ITEM
from {{ cookiecutter.package_name }}.models import ItemStatus
from {{ cookiecutter.package_name }}.schema import head_revisions
from {{ cookiecutter.package_name }}.settings import Settings, environment_names

from conftest import (
    GRACEFUL_TIMEOUT,
    add_items,
    items_by_id,
    lock_waiters,
    row_locked,
    schema_of,
    service_environment,
    url_string,
)
from factor_guards import (
    backing_services_named,
    configuration_read_at_import,
    deploy_words,
    names_a_deploy,
    refused_secret_constants,
    shown_settings,
)
from file_guards import (
    BUILD_FILE,
    DOCKERFILE,
    DOTENV_PATHS,
    LOCK_FILES,
    dockerfile_instructions,
    dockerignore_rules,
    dotenv_files_used,
    excluded_from_build_context,
    lock_pins,
    pins_outside_their_range,
    runnable_files,
    shell_lines,
    unlocked_installs,
    variables_set,
)
from observation import ANOTHER_LOOPBACK_ADDRESS, Observation, ProbeRecord, observe_formation
from processes import (
    COMMAND_TIMEOUT,
    STARTUP_TIMEOUT,
    accepts_connections,
    console_script,
    event_receiver,  # drop: events
    free_port,
    is_ready,
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
# Settings that name a deploy instead of configuring one thing.
DEPLOY_NAME_SETTINGS = frozenset(
    {"ENV", "ENVIRONMENT", "APP_ENV", "DEPLOY_ENV", "STAGE", "DEPLOYMENT", "TIER"}
)
# A dotenv file: one deploy's (or one developer's) settings, whatever it is called.
PER_DEPLOY_FILE = re.compile(r"(^|/)(\.env(\..+)?|.+\.env)$")
# Named like a deploy but about none: the example of every setting, and the lock of the dev extra (tools).
NOT_PER_DEPLOY = frozenset({".env.example", "requirements-dev.txt"})
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


def status_in_database(database_url: URL, item_id: int) -> str:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            query = "SELECT status FROM items WHERE id = %(id)s"
            return str(connection.exec_driver_sql(query, {"id": item_id}).scalar_one())
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


# The tests that judge the formation run in one pytest-xdist worker, which starts it once.
ONE_FORMATION = pytest.mark.xdist_group("formation")


@pytest.fixture(scope="module")
def formation(
    database_url: URL, redis_keyspace: str, tmp_path_factory: pytest.TempPathFactory
) -> Observation:
    """Web, worker and clock run once, together, watched; several factors' tests judge what they did."""
    with redis.Redis.from_url(redis_keyspace) as queue:
        queue.flushdb()
    env = service_environment(database_url, redis_keyspace)
    return observe_formation(env, tmp_path_factory.mktemp("formation"), GRACEFUL_TIMEOUT)


def libraries_of_the_interpreter() -> set[str]:
    """The shared libraries Python itself runs on (the C library...): any host that runs Python has them."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    return {Path(line.split()[-1]).name for line in maps if ".so" in line.split()[-1]}


def program_started(record: ProbeRecord) -> str:
    """The program a process-starting audit event names."""
    if record.event == "subprocess.Popen":
        executable, args = record.args[0], record.args[1]
        return str(executable or (args[0] if isinstance(args, list) else args))
    if record.event == "os.spawn":
        return str(record.args[1])
    return str(record.args[0]) if record.args else record.event


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
    # A deploy's name anywhere in a path: config/production.toml, deploy/staging/values.yaml, settings_dev.py.
    per_deploy = [
        path
        for path in committable_files()
        if path not in NOT_PER_DEPLOY
        and (PER_DEPLOY_FILE.search(path) or any(deploy_words(part) for part in Path(path).parts))
    ]
    assert not per_deploy, broken(
        "I", f"set per-deploy values in each deploy's environment, not in committed files: {per_deploy}"
    )
    named = sorted(name for name in environment_names() if name in DEPLOY_NAME_SETTINGS or deploy_words(name))
    assert not named, broken("I", f"replace {named} with one setting per behaviour it switches")
    # A deploy's name as a value, whatever uses it: a comparison, startswith(), a match case, a dict key.
    switches = []
    for path, tree in source_trees():
        skipped = docstring_nodes(tree) | refused_secret_constants(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skipped
                and names_a_deploy(node.value)
            ):
                switches.append(f"{path.relative_to(PROJECT)}:{node.lineno}: {node.value!r}")
    assert not switches, broken(
        "I", f"branch on a setting for the behaviour, never on a deploy's name, however spelled: {switches}"
    )


# --- II. Dependencies: declared, isolated, locked -----------------------------------------------------------


def test_factor_02_dependencies_are_declared_locked_with_hashes_and_installed_as_locked() -> None:
    pyproject = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    project = pyproject["project"]
    absent = [lock_file for lock_file in LOCK_FILES if not (PROJECT / lock_file).is_file()]
    assert not absent, broken("II", f"commit the locks {absent}; run `make lock`")
    runtime, everything, backend = (locked(lock_file) for lock_file in LOCK_FILES)
    for lock_file, pins, declared in (
        ("requirements.txt", runtime, project["dependencies"]),
        (
            "requirements-dev.txt",
            everything,
            project["dependencies"] + project["optional-dependencies"]["dev"],
        ),
        ("requirements-build.txt", backend, pyproject["build-system"]["requires"]),
    ):
        names = [canonical(match[0]) for spec in declared if (match := NAME.match(spec))]
        missing = [name for name in names if name not in pins]
        assert not missing, broken(
            "II", f"{missing} declared in pyproject.toml but not in {lock_file}; run `make lock`"
        )
        outside = pins_outside_their_range(declared, lock_pins(PROJECT / lock_file))
        assert not outside, broken(
            "II", f"{lock_file} pins versions pyproject.toml excludes: {outside}; run `make lock`"
        )
    # The backend that builds the wheel in the image and on Heroku is the one `make install` builds with.
    developed_with = {(pin.name, pin.version) for pin in lock_pins(PROJECT / "requirements-dev.txt")}
    unlike = [
        f"{pin.name}=={pin.version}"
        for pin in lock_pins(PROJECT / "requirements-build.txt")
        if (pin.name, pin.version) not in developed_with
    ]
    assert not unlike, broken(
        "II", f"requirements-build.txt pins {unlike}, unlike requirements-dev.txt; run `make lock`"
    )
    for name, version in everything.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a pin whose platform marker excludes this machine
        assert installed == version, broken(
            "II", f"{name} {installed} is installed, {version} locked; run `make install`"
        )


def test_factor_02_dependencies_every_build_installs_the_hashed_locks_and_the_project_only() -> None:
    build_files = [path for path in committable_files() if BUILD_FILE.search(path)]
    unlocked = [
        f"{path}: {command}"
        for path in build_files
        for command in unlocked_installs(path, (PROJECT / path).read_text())
    ]
    assert not unlocked, broken(
        "II",
        "build from the hashed locks only (`--require-hashes -r requirements*.txt`), then the project itself "
        f"with --no-deps --no-build-isolation, so no build fetches what the locks do not pin: {unlocked}",
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


@ONE_FORMATION
def test_factor_02_dependencies_no_process_type_starts_a_program_or_loads_a_system_library(
    formation: Observation,
) -> None:
    interpreter = os.path.realpath(sys.executable)
    starts = formation.events("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system")
    programs = [
        f"{record.event}: {program_started(record)}"
        for record in starts
        if os.path.realpath(program_started(record)) != interpreter
    ]
    programs += [record.event for record in formation.events("os.forkpty")]
    assert not programs, broken(
        "II", f"depend on Python packages, not on programs the host may lack: {programs}"
    )
    own = (os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))
    libraries = [
        name
        for record in formation.events("ctypes.dlopen")
        if (name := record.args[0]) is not None
        and not os.path.realpath(name).startswith(own)
        and Path(name).name not in libraries_of_the_interpreter()
    ]
    assert not libraries, broken(
        "II", f"depend on Python packages that ship their libraries, not on the host's: {libraries}"
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


def test_factor_03_config_is_read_when_a_process_starts_never_at_import(tmp_path: Path) -> None:
    # No setting set and no .env: a module that reads configuration as it is imported fails, or is seen.
    failed, looked_up = configuration_read_at_import(tmp_path)
    assert not failed, broken(
        "III", f"load settings in each command (cli.py's load_or_exit), never at a module's import: {failed}"
    )
    assert not looked_up, broken(
        "III", f"read the environment in load_settings(), as a process starts, not at import: {looked_up}"
    )


def test_factor_03_config_exported_variables_win_over_dotenv_and_no_parent_dotenv_is_read(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    exported = {**service_env, "LOG_LEVEL": "WARNING"}
    bare, parent = tmp_path / "bare", tmp_path / "parent"
    child = parent / "child"
    for folder in (bare, child):
        folder.mkdir(parents=True)
    # A .env up the tree, as a checkout inside another project, or a stray one in a home folder, would have.
    (parent / ".env").write_text("MAX_BODY_BYTES=2048\nLOG_LEVEL=ERROR\n")

    def config(cwd: Path) -> dict[str, str]:
        result = run_command(["config"], exported, cwd)
        assert result.returncode == 0, result.stderr
        return shown_settings(result.stdout)

    alone = config(bare)
    exported_names = ("DATABASE_URL", "REDIS_URL", "LOG_LEVEL")
    assert [alone[name] for name in exported_names] == [exported[name] for name in exported_names], broken(
        "III", "let exported variables win over any .env, wherever it is (read it with override=False)"
    )
    assert config(child) == alone, broken(
        "III", "read .env from the working directory only, never from a parent folder (recurse=False)"
    )
    (child / ".env").write_text(
        "MAX_BODY_BYTES=4096\nLOG_LEVEL=DEBUG\nDATABASE_URL=postgresql://postgres@127.0.0.1:1/from-dotenv\n"
    )
    beside = config(child)
    assert {**beside, "MAX_BODY_BYTES": alone["MAX_BODY_BYTES"]} == alone, broken(
        "III", "let exported variables win over the working directory's .env too (override=False)"
    )
    assert beside["MAX_BODY_BYTES"] == "4096", "the working directory's .env fills in what is unset (README)"


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


def test_factor_04_another_app_attaches_by_events_url_and_detaches_by_unsetting_it(  # drop: events
    service_env: dict[str, str], database_url: URL, tmp_path: Path
) -> None:
    # Attached like the database: a URL (and its secret) in the configuration, the code unchanged.
    with event_receiver() as other_app:
        attached = {**service_env, "EVENTS_URL": other_app.url, "EVENTS_SECRET": new_secret()}
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
    events = [(received.id, json.loads(received.body)) for received in other_app.received]
    assert events, broken("IV", "announce done items to the app at EVENTS_URL")
    assert {(event_id, event["data"]["id"]) for event_id, event in events} == {(events[0][0], announced)}, (
        broken("IV", "announce done items to the app at EVENTS_URL")
    )
    assert [row["id"] for row in recorded if row["id"] in (announced, quiet)] == [announced], broken(
        "IV", "record and send no event once EVENTS_URL is unset"
    )


@ONE_FORMATION
def test_factor_04_backing_services_every_connection_goes_where_a_url_setting_points(
    formation: Observation,
) -> None:
    # The formation reached PostgreSQL and Redis through relays on ports of their own: a connection to any
    # other port found a backing service some other way than through its URL setting.
    elsewhere = sorted(
        {
            f"{host}:{port}"
            for remotes in formation.connections.values()
            for host, port in remotes
            if port not in formation.relay_ports
        }
        | {
            f"{record.args[0][0]}:{record.args[0][1]}"
            for record in formation.events("socket.connect")
            if isinstance(record.args[0], list) and record.args[0][1] not in formation.relay_ports
        }
    )
    assert not elsewhere, broken(
        "IV", f"reach each backing service through its URL setting only; connected to {elsewhere}"
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


def test_factor_05_no_long_running_process_changes_the_schema(
    service_env: dict[str, str], empty_database_url: URL, tmp_path: Path
) -> None:
    env = {**service_env, "DATABASE_URL": url_string(empty_database_url)}
    with (
        running("web", env, tmp_path) as web,
        running("worker", env, tmp_path) as worker,
        running("clock", env, tmp_path) as clock,
    ):
        web.wait_until_serving()
        worker.wait_for_event(is_ready, STARTUP_TIMEOUT)
        clock.wait_for_event(lambda event: event["message"] == "beat: Starting...", STARTUP_TIMEOUT)
        for process in (web, worker, clock):
            process.stop(timeout=GRACEFUL_TIMEOUT + 10)
    assert tables_of(empty_database_url) == set(), broken(
        "V", "change the schema in the release step only, never when a web, worker or clock process starts"
    )


# The one setting a build may stamp: RELEASE_ID names the build itself, so every deploy of it shares it.
STAMPED_BY_THE_BUILD = frozenset({"RELEASE_ID"})


def test_factor_05_build_puts_no_config_in_the_image() -> None:
    settings = set(environment_names()) - STAMPED_BY_THE_BUILD
    files = committable_files()
    for path in [path for path in files if DOCKERFILE.search(path)]:
        instructions = dockerfile_instructions((PROJECT / path).read_text())
        baked = [f"{keyword} {name}" for keyword, name in variables_set(instructions) if name in settings]
        assert not baked, broken(
            "V", f"set {baked} in each deploy's environment, never in the build or the image ({path})"
        )
        commands = [f"{keyword} {arguments}" for keyword, arguments in instructions if keyword != "ENV"]
        copied = dotenv_files_used(commands)
        assert not copied, broken(
            "V", f"put no .env in the image; a deploy's environment holds its settings: {copied}"
        )
    for path in [path for path in files if path.startswith("bin/")]:
        written = dotenv_files_used(shell_lines(path, (PROJECT / path).read_text()))
        assert not written, broken(
            "V", f"put no .env in the slug; a deploy's environment holds its settings: {written}"
        )
    ignore = PROJECT / ".dockerignore"
    rules = dockerignore_rules(ignore.read_text()) if ignore.is_file() else []
    sent = [path for path in DOTENV_PATHS if not excluded_from_build_context(rules, path)]
    assert not sent, broken(
        "V", f"keep dotenv files out of the build context: add **/.env and **/.env.* to .dockerignore: {sent}"
    )


# --- VI. Processes: stateless, sharing nothing but backing services -----------------------------------------


def test_factor_06_processes_two_web_processes_see_the_same_items(
    service_env: dict[str, str], database_url: URL, tmp_path: Path
) -> None:
    with (
        running("web", service_env, tmp_path, "web-a") as first,
        running("web", service_env, tmp_path, "web-b") as second,
        httpx2.Client(timeout=5) as http,
    ):
        first.wait_until_serving()
        second.wait_until_serving()
        before = http.get(f"{second.base_url}/items?limit=100").json()["items"]
        created = http.post(f"{first.base_url}/items", json={"name": "shared"}).json()
        listed = http.get(f"{second.base_url}/items?limit=100").json()["items"]
        fetched = http.get(f"{second.base_url}/items/{created['id']}")
        # No worker yet: the item is pending. Once a third process has done its job, both webs must say so.
        with running_worker(service_env, tmp_path):
            wait_until(
                lambda: status_in_database(database_url, created["id"]) == "done",
                STARTUP_TIMEOUT,
                "the worker's job done",
            )
        fetched_again = http.get(f"{second.base_url}/items/{created['id']}")
    assert created["id"] not in [item["id"] for item in before]
    assert created["id"] in [item["id"] for item in listed], broken(
        "VI", "keep no state in a process's memory; read it from the database every time"
    )
    assert fetched.status_code == 200, broken("VI", "keep state in the database, where every process sees it")
    assert (fetched.json()["status"], fetched_again.json()["status"]) == ("pending", "done"), broken(
        "VI", "keep no state in a process's memory (no cache of rows); read it from the database every time"
    )
    assert list((tmp_path / "workdir").iterdir()) == [], broken("VI", "write nothing to the local disk")


def written_paths(formation: Observation) -> list[str]:
    """Every file or folder a process of the formation wrote and left behind, or wrote in its working
    directory. Scratch files in the temporary directory that were gone by the end are a process's own
    business (Python's multiprocessing makes some)."""
    events = formation.events("open", "os.mkdir", "os.rename", "os.symlink", "os.link", "os.truncate")
    written = {formation.workdir / str(record.args[0]) for record in events}
    scratch = Path(tempfile.gettempdir()).resolve()
    paths = {
        str(path)
        for path in written
        if not path.is_relative_to("/dev")
        and (path.is_relative_to(formation.workdir) or not path.is_relative_to(scratch) or path.exists())
    }
    return sorted(paths | {str(formation.workdir / path) for path in formation.left_in_workdir})


def factor_of_a_written_file(path: str, log_files: set[str]) -> str:
    """Which factor a written file breaks, by what it most likely is (each of the three forbids it)."""
    name = Path(path).name.lower()
    if "pid" in name:
        return broken("VIII", f"write no PID file; the platform tracks processes ({path})")
    if path in log_files or ".log" in name:
        return broken("XI", f"write logs to stdout only, through logs.py, never to a file ({path})")
    return broken("VI", f"keep state in a backing service, never on the local disk ({path})")


@ONE_FORMATION
def test_factor_06_processes_no_process_type_writes_a_file(formation: Observation) -> None:
    # Web, worker and clock ran in an empty working directory that is read-only (as Kubernetes'
    # readOnlyRootFilesystem makes it); the probe also sees writes anywhere else, and as root.
    log_files = {
        str(record.args[2]).removeprefix("file ")
        for record in formation.events("logging.handler")
        if str(record.args[2]).startswith("file ")
    }
    written = written_paths(formation)
    assert not written, "\n".join(factor_of_a_written_file(path, log_files) for path in written)


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
        assert serving(), broken(
            "VII", f"bind the port in $PORT ({web.port}), read through settings.web.port"
        )
        response = httpx2.get(f"{web.base_url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "server" not in response.headers


@ONE_FORMATION
def test_factor_07_port_binding_web_is_reachable_on_every_interface(formation: Observation) -> None:
    # A router reaches a container or dyno from outside: 127.0.0.1 alone is not enough.
    assert formation.answered_elsewhere == '{"status":"ok"}', broken(
        "VII",
        f"serve on every interface, not the loopback address alone: {ANOTHER_LOOPBACK_ADDRESS} got "
        f"{formation.answered_elsewhere!r}",
    )
    bound = [
        record.args[0][0]
        for record in formation.events("socket.bind")
        if isinstance(record.args[0], list) and record.args[0][1] == formation.web_port
    ]
    every_interface = {"0.0.0.0", "::", ""}  # noqa: S104
    assert bound, broken("VII", f"bind $PORT ({formation.web_port}) in the web process itself")
    assert set(bound) <= every_interface, broken("VII", f"bind $PORT on every interface, not {bound}")


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


@ONE_FORMATION
def test_factor_08_concurrency_no_process_type_daemonises(formation: Observation) -> None:
    exited = formation.exited_before_stop
    assert not exited, broken("VIII", f"run every process in the foreground until stopped: {exited} exited")
    assert not formation.outside_the_tree, broken(
        "VIII", f"never detach from the process the platform started: {formation.outside_the_tree}"
    )


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
    assert "celery.apps.worker" not in loaded, broken(
        "IX", "publish through jobs/celery_app.py, not jobs/worker.py"
    )


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


# The service's job queue in Redis, and where kombu keeps the jobs it delivered and has not had acknowledged.
JOB_QUEUE = "{{ cookiecutter.package_name }}"
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
# Seconds for a job to come back, or be done, on a busy machine; typically well under one (billiard notices
# a lost pool process within 5 s).
JOB_BOUND = 30.0
# JOB_TIME_LIMIT of the worker that takes over from a dead one: Redis hands it the dead worker's job twice
# this long after its delivery (the visibility timeout). Short, yet far longer than the job's milliseconds.
SHORT_JOB_TIME_LIMIT = 2
# GRACEFUL_TIMEOUT of a worker stopped with a job in hand that cannot finish, and the seconds it may take to
# exit beyond it (closing the pool and the broker connection take 2-3 s; wide, for a busy machine).
SHORT_GRACE = 1
STOP_MARGIN = 15
# Jobs queued behind the one in hand when a worker is stopped.
BACKLOG = 3


def queued_and_unacknowledged(redis_url: str) -> tuple[int, int]:
    with redis.Redis.from_url(redis_url) as broker:
        return broker.llen(JOB_QUEUE), broker.hlen(UNACKED)


def deliveries_unacknowledged(redis_url: str) -> list[float]:
    """When each job delivered but not acknowledged was delivered, in epoch seconds (kombu's index)."""
    with redis.Redis.from_url(redis_url) as broker:
        return [score for _, score in broker.zrange(UNACKED_INDEX, 0, -1, withscores=True)]


def every_item_done(engine: Engine, item_ids: list[int]) -> bool:
    items = items_by_id(engine)
    return all(items[item_id].status is ItemStatus.DONE for item_id in item_ids)


def publish_jobs(settings: Settings, item_ids: list[int]) -> None:
    """Queue the items' jobs in this order, as the web process does; the queue is first in, first out."""
    producer = create_celery(settings)
    try:
        for item_id in item_ids:
            producer.send_task(PROCESS_ITEM, args=[item_id])
    finally:
        producer.close()


def test_factor_09_disposability_job_in_hand_of_a_killed_worker_is_done_later(
    settings: Settings, engine: Engine, service_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    # One pool process: the job in hand is the worker's only one, run by its only child process.
    env = {**service_env, "WORKER_CONCURRENCY": "1"}
    (item_id,) = add_items(engine, 1)
    publish_jobs(settings, [item_id])
    with row_locked(engine, item_id), running_worker(env, tmp_path, "worker-1") as first:
        # The job waits for the row the test holds: in hand for as long as the test wants, without a sleep.
        in_hand = wait_until(lambda: lock_waiters(engine) or None, JOB_BOUND, "the job in hand")
        pool = children_of(first.process.pid)
        assert pool, "the worker runs its jobs in pool processes"
        # As the out-of-memory killer would: the pool process, mid-job.
        for pool_process in pool:
            os.kill(pool_process, signal.SIGKILL)
        # The dead process's database session may go on waiting: the job is back in hand once another waits.
        wait_until(
            lambda: lock_waiters(engine) - in_hand or None,
            JOB_BOUND,
            broken(
                "IX",
                "requeue the job of a pool process that dies mid-job "
                "(task_acks_late=True, task_reject_on_worker_lost=True)",
            ),
        )
        # As a lost host would: the whole worker, mid-job.
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=COMMAND_TIMEOUT)
    delivered = deliveries_unacknowledged(redis_url)
    assert len(delivered) == 1, broken("IX", "acknowledge a job only once it ran (task_acks_late=True)")
    # Redis hands a job out again once its delivery is older than the visibility timeout, not before.
    visibility = 2 * SHORT_JOB_TIME_LIMIT
    visible = delivered[0] + visibility
    wait_until(lambda: time.time() > visible, visibility + JOB_BOUND, "the visibility timeout")
    with running_worker({**env, "JOB_TIME_LIMIT": str(SHORT_JOB_TIME_LIMIT)}, tmp_path, "worker-2"):
        wait_until(
            lambda: every_item_done(engine, [item_id]) and queued_and_unacknowledged(redis_url) == (0, 0),
            JOB_BOUND,
            broken(
                "IX",
                "let Redis hand a dead worker's job to the next worker 2 x JOB_TIME_LIMIT after its delivery "
                "(visibility_timeout in jobs/celery_app.py)",
            ),
        )


def test_factor_09_disposability_stopped_worker_leaves_no_job_behind(
    settings: Settings, engine: Engine, service_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    env = {**service_env, "WORKER_CONCURRENCY": "1", "GRACEFUL_TIMEOUT": str(SHORT_GRACE)}
    item_ids = add_items(engine, 1 + BACKLOG)
    # The first job is taken first and held past GRACEFUL_TIMEOUT by the row lock; the backlog waits behind.
    publish_jobs(settings, item_ids)
    with row_locked(engine, item_ids[0]), running_worker(env, tmp_path, "worker-1") as first:
        wait_until(lambda: lock_waiters(engine) or None, JOB_BOUND, "the job in hand")
        queued, _ = queued_and_unacknowledged(redis_url)
        assert queued == BACKLOG, broken(
            "IX",
            "reserve one job per pool process (worker_prefetch_multiplier=1): a job a worker holds "
            "unstarted waits for it to stop, or after a crash for the visibility timeout",
        )
        # As platforms send it: to every process of the worker, pool processes included.
        os.killpg(first.process.pid, signal.SIGTERM)
        try:
            exit_code = first.process.wait(timeout=SHORT_GRACE + STOP_MARGIN)
        except subprocess.TimeoutExpired:
            stuck = "on SIGTERM, requeue the jobs still running at GRACEFUL_TIMEOUT and exit"
            raise AssertionError(broken("IX", stuck)) from None
    assert exit_code == 0, broken("IX", f"exit with status 0 when a platform stops it, not {exit_code}")
    with running_worker(env, tmp_path, "worker-2"):
        wait_until(
            lambda: every_item_done(engine, item_ids) and queued_and_unacknowledged(redis_url) == (0, 0),
            JOB_BOUND,
            broken(
                "IX",
                "hand a stopped worker's unfinished job back to the queue: acknowledge a job only once it "
                "ran (task_acks_late=True), and let the stop's exception out of every job",
            ),
        )


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
    # The servers themselves, by kind only: a developer's or CI's machine may run another major version than
    # the files name (the template's own CI machine does); the files agree among themselves (test below).
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            database_server = str(connection.exec_driver_sql("SELECT version()").scalar_one())
    finally:
        engine.dispose()
    assert database_server.startswith("PostgreSQL "), broken(
        "X", f"run the tests on a PostgreSQL server, as production, not {database_server}"
    )
    with redis.Redis.from_url(redis_url) as broker:
        info = broker.info("server")
    # Valkey names itself in server_name, Dragonfly in dragonfly_version; both report a redis_version too.
    broker_server = str(info.get("server_name", "dragonfly" if "dragonfly_version" in info else "redis"))
    assert "redis_version" in info, broken("X", f"run the tests on a Redis server, as production: {info}")
    assert broker_server.lower() == "redis", broken(
        "X", f"run the tests on a Redis server, as production, not {broker_server}"
    )
    workflow = (PROJECT / ".github" / "workflows" / "ci.yml").read_text()
    for variable, scheme in (("DATABASE_URL", "postgresql://"), ("REDIS_URL", "redis://")):
        assert re.search(rf"(?m)^\s+{variable}: {scheme}", workflow), broken(
            "X", f"point the CI workflow's {variable} at its {scheme.rstrip(':/')} service container"
        )


# The backing services production runs (app.json's add-ons), so compose and CI run too.
PRODUCTION_SERVERS = frozenset({"PostgreSQL", "Redis"})
SERVER_DEFINITIONS = ("compose.yaml", ".github/workflows/ci.yml", "app.json")


def test_factor_10_parity_every_file_names_the_same_backing_services_and_major_versions() -> None:
    runs, versions = backing_services_named(PROJECT, committable_files())
    for path in SERVER_DEFINITIONS:
        assert frozenset(runs.get(path, ())) == PRODUCTION_SERVERS, broken(
            "X", f"run PostgreSQL and Redis in {path}, as everywhere else, not {sorted(runs.get(path, ()))}"
        )
    others = {path: sorted(kinds - PRODUCTION_SERVERS) for path, kinds in runs.items()}
    others = {path: kinds for path, kinds in others.items() if kinds}
    assert not others, broken("X", f"run PostgreSQL and Redis only, the servers production uses: {others}")
    majors: dict[str, dict[str, list[str]]] = {}
    for named, paths in versions.items():
        kind, major = named.rsplit(" ", 1)
        majors.setdefault(kind, {})[major] = sorted(paths)
    split = {kind: found for kind, found in majors.items() if len(found) > 1}
    assert not split, broken(
        "X", f"name one major version of each backing service in every file (compose, CI, app.json): {split}"
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


@ONE_FORMATION
def test_factor_11_logs_every_process_type_logs_to_stdout_only(formation: Observation) -> None:
    elsewhere = [
        f"{record.args[0] or 'root'}: {record.args[1]} to {record.args[2]}"
        for record in formation.events("logging.handler")
        if record.args[2] != "fd 1" and record.args[1] != "logging.NullHandler"
    ]
    elsewhere += [f"syslog: {record.args}" for record in formation.events("syslog.openlog")]
    assert not elsewhere, broken("XI", f"send every record to the one stdout handler of logs.py: {elsewhere}")
    for name, stderr in formation.stderr.items():
        assert stderr == "", broken("XI", f"log to stdout only, through logs.py; {name} wrote: {stderr}")
    for stdout in formation.stdout.values():
        one_event_per_line(stdout)


# --- XII. Admin processes: one-off commands of the same code and config -------------------------------------


# The runnable files a platform requires by name, and who runs them.
RUN_BY_PLATFORMS = {"bin/post_compile": "Heroku's Python buildpack runs it after installing the lock"}


def test_factor_12_admin_tasks_are_subcommands_of_the_one_console_script(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    scripts = [*project["scripts"], *project.get("gui-scripts", {})]
    assert scripts == [CONSOLE_SCRIPT], broken("XII", f"add commands to cli.py, not scripts: {scripts}")
    # git's record of the executable bit counts too, whatever the checkout's file system keeps.
    executable_in_git = {
        entry.split("\t", 1)[1]
        for entry in git("ls-files", "--stage").splitlines()
        if entry.startswith("100755 ")
    }
    candidates = [path for path in committable_files() if path not in RUN_BY_PLATFORMS]
    loose = runnable_files(PROJECT, candidates, executable_in_git)
    assert not loose, broken("XII", f"make each admin script a command in cli.py, sharing settings: {loose}")
    processes = [
        line.split(":", 1) for line in (PROJECT / "Procfile").read_text().splitlines() if ":" in line
    ]
    other_doors = [name for name, command in processes if command.split()[:1] != [CONSOLE_SCRIPT]]
    assert not other_doors, broken(
        "XII", f"start every process type with `{CONSOLE_SCRIPT} <command>`: {other_doors}"
    )
    usage = run_command(["--help"], service_env, tmp_path).stdout
    for command in ("web", "worker", "clock", "release", "migrate", "check", "config", "shell"):
        assert f"  {command} " in usage, broken("XII", f"keep `{command}` a subcommand of {CONSOLE_SCRIPT}")
    shell = subprocess.run(
        [console_script(), "shell"],
        input="print('port', settings.web.port)\n",
        env={**service_env, "PORT": "5123"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert "port 5123" in shell.stdout.replace(">>> ", ""), broken(
        "XII", f"run admin code with the processes' own settings: {shell.stdout}{shell.stderr}"
    )
