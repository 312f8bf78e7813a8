"""A baked service installs, passes its own lint and tests, and runs as a twelve-factor process.

Slow: each bake is installed from its hashed lock (`make install`), then its own `make lint` and `make test`
run against the real PostgreSQL and Redis named by DATABASE_URL and REDIS_URL (the template's Makefile
exports local defaults). The acceptance scenario starts the real console script as the platform would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
from processes import Response, free_port, fresh_database, http, settled_readiness
from support import (
    HUB_TESTS,
    InstalledService,
    Installer,
    assert_every_test_ran_and_passed,
    assert_succeeded,
    clean_environment,
    describe,
    explain,
    run,
)

pytestmark = pytest.mark.slow

LINT_TIMEOUT = 300
TEST_TIMEOUT = 600
COMMAND_TIMEOUT = 120
STARTUP_TIMEOUT = 30.0
STARTUP_POLLS = 300
SHUTDOWN_TIMEOUT = 10.0
# Nothing listens on port 1: a connection there is refused at once.
NOWHERE_DATABASE_URL = "postgresql://postgres@127.0.0.1:1/nowhere"
NOWHERE_REDIS_URL = "redis://127.0.0.1:1/0"
# What uvicorn does on SIGTERM, observed: it shuts down gracefully, then re-raises the signal on itself.
EXIT_AFTER_SIGTERM = -signal.SIGTERM

COMMANDS = ("web", "release", "check", "migrate", "config", "shell")
# Every variable the service reads: the acceptance runs give each one explicitly or leave it unset.
SERVICE_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "PORT",
    "WEB_CONCURRENCY",
    "FORWARDED_ALLOW_IPS",
    "FORWARDED_ALLOW_ALL",
    "GRACEFUL_TIMEOUT",
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "BROKER_URL",
    "WORKER_CONCURRENCY",
    "JOB_TIME_LIMIT",
    "RELEASE_ID",
    "ALLOWED_HOSTS",
    "MAX_BODY_BYTES",
)


@pytest.fixture(
    scope="module",
    params=[pytest.param("default", id="my-service"), pytest.param("unusual", id="cafe-unicode-service")],
)
def service(request: pytest.FixtureRequest, install: Installer) -> InstalledService:
    installed: InstalledService = install(request.param)
    return installed


# --- Install, lint, test -----------------------------------------------------------------------------------


def test_make_install_provides_the_console_script(service: InstalledService) -> None:
    assert service.script.is_file()
    assert os.access(service.script, os.X_OK)


def test_console_script_help_lists_every_command(service: InstalledService) -> None:
    process = run([service.script, "--help"], cwd=service.project, env=clean_environment(), timeout=60)
    assert_succeeded(process)
    listed = set(re.findall(r"^\s+([a-z]+)\s", process.stdout, flags=re.MULTILINE))
    assert set(COMMANDS) <= listed, f"commands listed: {sorted(listed)}\n{explain(process)}"


def test_make_lint_passes(service: InstalledService) -> None:
    process = run(["make", "lint"], cwd=service.project, env=clean_environment(), timeout=LINT_TIMEOUT)
    assert process.returncode == 0, (
        f"`make lint` (ruff, ruff format --check, mypy --strict, deptry)\n{explain(process)}"
    )


def with_values(dotenv: str, **values: str) -> str:
    """The .env text with the given variables' lines set to these values."""
    lines = []
    for line in dotenv.splitlines():
        name = line.partition("=")[0]
        lines.append(f"{name}={values[name]}" if name in values else line)
    return "\n".join(lines) + "\n"


def test_hub_tests_pass_in_the_unusual_bake_on_exported_servers_which_win_over_dotenv(
    install: Installer, backing_services: dict[str, str]
) -> None:
    # The default bake's whole `make test`, with nothing exported, is in test_first_commands.py; here the
    # unusual names go through every hub and process type, and `make lint` (above) reads all of the code.
    service = install("unusual")
    dotenv = service.project / ".env"
    baked = dotenv.read_text()
    # .env names servers that are not there: the run passes only if the exported URLs win.
    dotenv.write_text(with_values(baked, DATABASE_URL=NOWHERE_DATABASE_URL, REDIS_URL=NOWHERE_REDIS_URL))
    try:
        process = run(
            ["make", "test", f"TESTS={' '.join(HUB_TESTS)}"],
            cwd=service.project,
            env=clean_environment(**backing_services),
            timeout=TEST_TIMEOUT,
        )
    finally:
        dotenv.write_text(baked)
    assert_every_test_ran_and_passed(process)


# --- The acceptance scenario: release, serve, use, stop ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WebRun:
    """What `<slug> web` was seen doing: the answers it gave, then how it stopped after SIGTERM."""

    responses: dict[str, Response]
    returncode: int | None
    shutdown_seconds: float
    stdout: str
    stderr: str

    def explain(self) -> str:
        return describe(["<slug>", "web"], self.returncode, self.stdout, self.stderr)


@dataclasses.dataclass(frozen=True)
class Scenario:
    migrate: subprocess.CompletedProcess[str]
    web: WebRun


def service_environment(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in clean_environment().items() if key not in SERVICE_VARIABLES}
    env.update(settings)
    return env


def wait_until_healthy(process: subprocess.Popen[bytes], base_url: str) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for _ in range(STARTUP_POLLS):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        with contextlib.suppress(OSError):
            if http("GET", f"{base_url}/healthz", timeout=1).status == 200:
                return True
        time.sleep(0.1)
    return False


def use_the_api(base_url: str) -> dict[str, Response]:
    responses = {
        "healthz": http("GET", f"{base_url}/healthz"),
        "readyz": settled_readiness(base_url),
        "create": http("POST", f"{base_url}/items", {"name": "x"}),
    }
    if responses["create"].status == 201:
        responses["read"] = http("GET", f"{base_url}/items/{responses['create'].json()['id']}")
    responses["list"] = http("GET", f"{base_url}/items")
    return responses


def serve_and_use(installed: InstalledService, env: dict[str, str], workdir: Path) -> WebRun:
    """Run the web process, make the requests, SIGTERM it; never leaves the process running."""
    base_url = f"http://127.0.0.1:{env['PORT']}"
    stdout_path, stderr_path = workdir / "web.stdout", workdir / "web.stderr"
    responses: dict[str, Response] = {}
    problem = ""
    returncode: int | None = None
    shutdown_seconds = float("inf")
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [installed.script, "web"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            if not wait_until_healthy(process, base_url):
                problem = f"the web process did not answer /healthz within {STARTUP_TIMEOUT:g} s"
            else:
                try:
                    responses = use_the_api(base_url)
                except OSError as error:
                    problem = f"a request to the web process failed: {error!r}"
            if process.poll() is None:
                stopping = time.monotonic()
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    returncode = process.wait(timeout=SHUTDOWN_TIMEOUT)
                    shutdown_seconds = time.monotonic() - stopping
            else:
                returncode = process.returncode
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    web = WebRun(
        responses=responses,
        returncode=returncode,
        shutdown_seconds=shutdown_seconds,
        stdout=stdout_path.read_text(errors="replace"),
        stderr=stderr_path.read_text(errors="replace"),
    )
    if problem:
        pytest.fail(f"{problem}\n{web.explain()}", pytrace=False)
    return web


@pytest.fixture(scope="module")
def scenario(
    install: Installer, backing_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Scenario:
    """The issue's acceptance scenario, run once on the default bake; each test below checks one promise."""
    installed = install("default")
    workdir = tmp_path_factory.mktemp("acceptance")  # no .env here: only the environment configures it
    with fresh_database(installed, backing_services["DATABASE_URL"], workdir) as database_url:
        env = service_environment(
            DATABASE_URL=database_url,
            REDIS_URL=backing_services["REDIS_URL"],
            SECRET_KEY=secrets.token_urlsafe(48),
            API_OPEN="true",
            LOG_FORMAT="json",
            PORT=str(free_port()),
        )
        migrate = run([installed.script, "migrate"], cwd=workdir, env=env, timeout=COMMAND_TIMEOUT)
        if migrate.returncode != 0:
            pytest.fail(f"`<slug> migrate` failed\n{explain(migrate)}", pytrace=False)
        web = serve_and_use(installed, env, workdir)
    return Scenario(migrate=migrate, web=web)


def test_migrate_upgrades_a_fresh_database(scenario: Scenario) -> None:
    assert scenario.migrate.returncode == 0, explain(scenario.migrate)


def test_healthz_answers_ok(scenario: Scenario) -> None:
    assert scenario.web.responses["healthz"].status == 200, scenario.web.explain()


def test_readyz_is_ready_after_migrate(scenario: Scenario) -> None:
    readyz = scenario.web.responses["readyz"]
    assert readyz.status == 200, f"{readyz.body!r}\n{scenario.web.explain()}"


def test_posting_an_item_creates_it(scenario: Scenario) -> None:
    created = scenario.web.responses["create"]
    assert created.status == 201, f"{created.body!r}\n{scenario.web.explain()}"
    item = created.json()
    assert item["name"] == "x"
    assert created.headers["location"] == f"/items/{item['id']}"


def test_a_created_item_reads_back(scenario: Scenario) -> None:
    assert "read" in scenario.web.responses, "no item was created to read back"
    read = scenario.web.responses["read"]
    assert read.status == 200, f"{read.body!r}\n{scenario.web.explain()}"
    assert read.json() == scenario.web.responses["create"].json()


def test_listing_items_includes_the_created_one(scenario: Scenario) -> None:
    listing = scenario.web.responses["list"]
    assert listing.status == 200, f"{listing.body!r}\n{scenario.web.explain()}"
    created = scenario.web.responses["create"].json()
    assert created in listing.json()["items"]


def assert_every_line_is_a_json_object(output: str, context: str) -> None:
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n{context}", pytrace=False)
        assert isinstance(event, dict), f"not a JSON object: {line!r}"


def test_every_web_stdout_line_is_one_json_object(scenario: Scenario) -> None:
    assert scenario.web.stdout.splitlines(), scenario.web.explain()
    assert_every_line_is_a_json_object(scenario.web.stdout, scenario.web.explain())


def test_every_migrate_stdout_line_is_one_json_object(scenario: Scenario) -> None:
    assert_every_line_is_a_json_object(scenario.migrate.stdout, explain(scenario.migrate))


def test_sigterm_stops_the_web_process_within_10_seconds(scenario: Scenario) -> None:
    assert scenario.web.returncode == EXIT_AFTER_SIGTERM, scenario.web.explain()
    assert scenario.web.shutdown_seconds <= SHUTDOWN_TIMEOUT


def test_sigterm_shuts_the_application_down_gracefully(scenario: Scenario) -> None:
    assert "Application shutdown complete" in scenario.web.stdout, scenario.web.explain()


def test_web_with_bad_configuration_exits_naming_every_problem(
    install: Installer, backing_services: dict[str, str], tmp_path: Path
) -> None:
    installed = install("default")
    # tmp_path holds no .env: the bake's own .env would supply a SECRET_KEY.
    env = service_environment(REDIS_URL=backing_services["REDIS_URL"], PORT="abc")
    process = run([installed.script, "web"], cwd=tmp_path, env=env, timeout=COMMAND_TIMEOUT)
    assert process.returncode != 0, explain(process)
    for variable in ("DATABASE_URL", "SECRET_KEY", "PORT"):
        assert variable in process.stderr, f"{variable} not named\n{explain(process)}"
    assert "Uvicorn running" not in process.stdout, explain(process)
