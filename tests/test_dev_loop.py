"""`make dev`: the Procfile's processes under honcho, the web reloaded on a code change, logs for a person.

Slow: the default bake, installed once. `make dev` runs on a database and a Redis keyspace of its own; a
route's answer is edited in the bake's source and the new answer is served with nothing restarted by hand.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from processes import answers_health, free_port, fresh_database, http, own_redis_database, poll, process_group
from support import InstalledService, Installer, assert_succeeded, clean_environment, run

pytestmark = pytest.mark.slow

# /healthz's body, a constant of web/health.py.
ALIVE = """ALIVE = b'{"status":"ok"}'"""
EDITED = """ALIVE = b'{"status":"edited"}'"""
# A reload on a loaded machine: the change seen, a new server process started, the app imported.
RELOAD_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# honcho's prefix, then the console format: `12:00:01 web.1 | 2026-12-02 12:00:01,234 INFO    uvicorn.error`.
CONSOLE_LINE = re.compile(
    r"^\S+ (web|worker|clock)\.1 +\| \d{4}-\d\d-\d\d [\d:,]+ (INFO|WARNING) +\S+ ", re.MULTILINE
)


@pytest.fixture(scope="module")
def installed(install: Installer) -> InstalledService:
    return install("default")


def test_make_dev_serves_an_edited_route_without_a_restart_by_hand_and_logs_for_a_person(
    installed: InstalledService, backing_services: dict[str, str], tmp_path: Path
) -> None:
    health = next((installed.project / "src").glob("*/web/health.py"))
    original = health.read_text()
    assert ALIVE in original
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with (
        fresh_database(installed, backing_services["DATABASE_URL"], tmp_path) as database_url,
        own_redis_database(installed, backing_services["REDIS_URL"], tmp_path) as redis_url,
    ):
        env = clean_environment(
            DATABASE_URL=database_url, REDIS_URL=redis_url, PORT=base_url.rsplit(":", 1)[1]
        )
        env.pop("LOG_FORMAT", None)
        assert_succeeded(run([installed.script, "migrate"], cwd=installed.project, env=env, timeout=120))
        with process_group(["make", "dev"], installed.project, env, tmp_path / "dev.out") as dev:
            try:
                assert answers_health(base_url), (tmp_path / "dev.out").read_text()
                before = http("GET", f"{base_url}/healthz").json()
                health.write_text(original.replace(ALIVE, EDITED))
                edited = poll(
                    lambda: http("GET", f"{base_url}/healthz", timeout=2).json()["status"] == "edited",
                    RELOAD_TIMEOUT,
                )
            finally:
                health.write_text(original)
            # Ctrl-C: SIGINT to the foreground group (make, honcho); honcho stops what it started.
            os.killpg(dev.pid, signal.SIGINT)
            dev.wait(timeout=STOP_TIMEOUT)
    output = (tmp_path / "dev.out").read_text(errors="replace")

    assert before == {"status": "ok"}
    assert edited, output
    assert {match[1] for match in CONSOLE_LINE.finditer(output)} == {"web", "worker", "clock"}, output
    assert poll(lambda: not answering(base_url), STOP_TIMEOUT), f"the web outlived `make dev`\n{output}"


def answering(base_url: str) -> bool:
    try:
        http("GET", f"{base_url}/healthz", timeout=2)
    except OSError:
        return False
    return True
