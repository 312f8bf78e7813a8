"""The baked Procfile runs as a formation under honcho, as a platform would run it (factors VI, VIII, IX).

Slow: the default bake is installed once; the release process runs, then web and worker start together.
An item created through the web process is finished by the worker, with the request's id on the worker's
log lines; SIGTERM to the whole formation then stops every process within the platform's grace period.
The same run is repeated on the embedded URLs (SQLite database, SQLAlchemy broker): no server at all.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import (
    answers_health,
    free_port,
    fresh_database,
    http,
    own_redis_database,
    poll,
    process_group,
)
from support import InstalledService, Installer, assert_succeeded, clean_environment, explain, run

pytestmark = pytest.mark.slow

# Heroku and Kubernetes send SIGKILL 30 s after SIGTERM; the whole formation must be gone before that.
PLATFORM_GRACE = 30.0
# Short, so a process with work in hand gives up quickly in the tests.
GRACEFUL_TIMEOUT = "5"
# honcho as a platform runs a formation: SIGKILL to what still runs PLATFORM_GRACE seconds after SIGTERM,
# not after honcho's own 5 s (a local convenience, which an idle worker on the embedded broker can need all
# of: that transport is polled in 2 s slices). The test then holds the processes to the platform's limit.
HONCHO_AS_A_PLATFORM = f"""
import sys
import honcho.manager
from honcho.command import main

honcho.manager.KILL_WAIT = {PLATFORM_GRACE}
sys.exit(main())
"""
JOB_TIMEOUT = 20.0
SECRET_KEY = secrets.token_urlsafe(48)


# A notice of honcho's own ("12:00:01 system   | ...") that does not start its line.
HONCHO_NOTICE_MID_LINE = re.compile(r"(?<=[^\n])(\d\d:\d\d:\d\d system +\| )")


@dataclasses.dataclass
class FormationRun:
    """What a formation was seen doing: the item it finished, its output, and how it stopped."""

    release: subprocess.CompletedProcess[str]
    item: dict[str, Any]
    request_id: str
    output: str
    returncode: int | None
    stop_seconds: float

    def lines_of(self, process: str) -> list[str]:
        """The lines honcho prefixed with `process` (`web.1`, `worker.1`), without the prefix."""
        found = []
        # honcho prints a line and its newline in two writes; its own SIGTERM notice, printed from its signal
        # handler, can land between them: `...<a process's line>12:00:01 system   | SIGTERM received`.
        output = HONCHO_NOTICE_MID_LINE.sub(r"\n\1", self.output)
        for line in output.splitlines():
            prefix, bar, text = line.partition(" | ")
            if bar and prefix.split()[-1] == process:
                found.append(text)
        return found

    def events_of(self, process: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines_of(process)]


def honcho(installed: InstalledService, *arguments: str) -> list[str]:
    # No env file: honcho would load the baked .env over the environment these tests set.
    python = str(installed.bin / "python")
    return [python, "-c", HONCHO_AS_A_PLATFORM, "start", "--no-colour", "--env", "/dev/null", *arguments]


def formation_environment(installed: InstalledService, **settings: str) -> dict[str, str]:
    """The Procfile names the bare console script, as platforms run it: the service's venv first on PATH."""
    env = clean_environment(
        SECRET_KEY=SECRET_KEY, API_OPEN="true", LOG_FORMAT="json", GRACEFUL_TIMEOUT=GRACEFUL_TIMEOUT
    )
    env["PATH"] = os.pathsep.join([str(installed.bin), env["PATH"]])
    env.update(settings)
    return env


def run_formation(
    installed: InstalledService, env: dict[str, str], workdir: Path, release_command: list[str]
) -> FormationRun:
    release = run(release_command, cwd=installed.project, env=env, timeout=120)
    assert_succeeded(release)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    request_id = f"formation-{secrets.token_hex(6)}"
    output_path = workdir / "honcho.out"
    item: dict[str, Any] = {}
    returncode: int | None = None
    stop_seconds = float("inf")
    # A process group of its own: on SIGTERM honcho signals the group of each process it started.
    command = honcho(installed, "--port", str(port), "web", "worker")
    with process_group(command, installed.project, env, output_path) as formation:
        assert answers_health(base_url), f"web did not answer /healthz:\n{output_path.read_text()}"
        created = http(
            "POST", f"{base_url}/items", {"name": "formation"}, headers={"X-Request-ID": request_id}
        )
        assert created.status == 201, created.body
        location = created.headers["location"]

        def finished() -> dict[str, Any] | None:
            current: dict[str, Any] = http("GET", f"{base_url}{location}", timeout=2).json()
            return current if current["status"] == "done" else None

        # Not done in time: the tests that read `item` fail with the formation's output.
        item = poll(finished, JOB_TIMEOUT) or {}
        stopping = time.monotonic()
        formation.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            returncode = formation.wait(timeout=PLATFORM_GRACE)
            stop_seconds = time.monotonic() - stopping
    return FormationRun(
        release, item, request_id, output_path.read_text(errors="replace"), returncode, stop_seconds
    )


@pytest.fixture(scope="module")
def installed(install: Installer) -> InstalledService:
    return install("default")


@pytest.fixture(scope="module")
def on_servers(
    installed: InstalledService, backing_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FormationRun]:
    """The formation on the real PostgreSQL and Redis, each run with its own database and Redis keyspace."""
    workdir = tmp_path_factory.mktemp("formation-servers")
    with (
        fresh_database(installed, backing_services["DATABASE_URL"], workdir) as database_url,
        own_redis_database(installed, backing_services["REDIS_URL"], workdir) as redis_url,
    ):
        env = formation_environment(installed, DATABASE_URL=database_url, REDIS_URL=redis_url)
        yield run_formation(installed, env, workdir, honcho(installed, "release"))


def embedded_environment(installed: InstalledService, workdir: Path) -> dict[str, str]:
    return formation_environment(
        installed,
        DATABASE_URL=f"sqlite:///{workdir / 'app.sqlite3'}",
        BROKER_URL=f"sqla+sqlite:///{workdir / 'broker.sqlite3'}",
        REDIS_URL="",
    )


@pytest.fixture(scope="module")
def embedded(installed: InstalledService, tmp_path_factory: pytest.TempPathFactory) -> FormationRun:
    """The formation with nothing but Python: the database and the job queue are local SQLite files.

    Released as `make demo` releases it, with `migrate` alone: the Procfile's `release` refuses local files.
    """
    workdir = tmp_path_factory.mktemp("formation-embedded")
    env = embedded_environment(installed, workdir)
    return run_formation(installed, env, workdir, [str(installed.script), "migrate"])


FORMATIONS = ["on_servers", "embedded"]


@pytest.fixture(params=FORMATIONS)
def formation(request: pytest.FixtureRequest) -> FormationRun:
    run_: FormationRun = request.getfixturevalue(request.param)
    return run_


def test_procfile_declares_release_web_worker_and_clock(installed: InstalledService) -> None:
    lines = (installed.project / "Procfile").read_text().splitlines()
    slug = installed.bake.slug
    assert lines == [
        f"release: {slug} release",
        f"web: {slug} web",
        f"worker: {slug} worker",
        f"clock: {slug} clock",
    ]


def test_release_process_refuses_local_files_that_other_hosts_cannot_share(
    installed: InstalledService, tmp_path: Path
) -> None:
    env = embedded_environment(installed, tmp_path)
    release = run(honcho(installed, "release"), cwd=installed.project, env=env, timeout=120)

    assert release.returncode != 0, explain(release)
    assert "DATABASE_URL (factor VI)" in release.stdout, explain(release)
    assert "BROKER_URL (factor VI)" in release.stdout, explain(release)
    assert list(tmp_path.glob("*.sqlite3")) == []


def test_release_process_migrates_and_exits_zero(formation: FormationRun) -> None:
    assert formation.release.returncode == 0
    assert "Database schema is at head" in formation.release.stdout


def test_item_created_through_web_is_finished_by_the_worker(formation: FormationRun) -> None:
    assert formation.item.get("status") == "done", formation.output
    assert formation.item["digest"] is not None


def test_request_id_of_the_web_request_is_on_the_workers_log_lines(formation: FormationRun) -> None:
    worker_events = formation.events_of("worker.1")
    traced = [event for event in worker_events if event.get("request_id") == formation.request_id]
    assert traced, f"no worker line carries {formation.request_id}:\n{formation.output}"
    assert any("done" in event["message"] for event in traced)


def test_every_line_of_web_and_worker_is_one_json_object(formation: FormationRun) -> None:
    for process in ("web.1", "worker.1"):
        lines = formation.lines_of(process)
        assert lines, f"{process} wrote nothing:\n{formation.output}"
        for line in lines:
            event = json.loads(line)
            assert isinstance(event, dict), line
            assert {"time", "level", "logger", "message"} <= set(event), line


def test_sigterm_stops_the_whole_formation_within_the_grace_period_without_a_kill(
    formation: FormationRun,
) -> None:
    assert formation.returncode is not None, f"still running {PLATFORM_GRACE:g} s after SIGTERM"
    assert formation.stop_seconds < PLATFORM_GRACE
    assert "SIGKILL" not in formation.output, formation.output
    web_messages = [event["message"] for event in formation.events_of("web.1")]
    assert "Application shutdown complete." in web_messages
    worker_messages = [event["message"] for event in formation.events_of("worker.1")]
    assert "worker: Warm shutdown (MainProcess)" in worker_messages, formation.output
