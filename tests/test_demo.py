"""`make demo`, the first command a newcomer runs: a baked service's web and worker with no servers at all.

Slow: it bakes, installs and runs a service exactly as the Makefile does, on `$PORT`, with the database and
the job queue in local SQLite files; then Ctrl-C (SIGINT to the process group) stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from processes import answers_health, free_port, http, poll, process_group
from support import TEMPLATE_DIR, clean_environment

pytestmark = pytest.mark.slow

JOB_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0


def test_make_demo_serves_and_finishes_a_job_with_no_servers(tmp_path: Path) -> None:
    port = free_port()
    demo_dir = tmp_path / "demo"
    output_path = tmp_path / "make-demo.out"
    # Server URLs in the environment must not matter: the demo sets its own, embedded ones.
    env = clean_environment(PORT=str(port))
    base_url = f"http://127.0.0.1:{port}"
    with process_group(["make", "demo", f"DEMO_DIR={demo_dir}"], TEMPLATE_DIR, env, output_path) as demo:
        assert answers_health(base_url), f"no /healthz on port {port}:\n{output_path.read_text()}"
        created = http("POST", f"{base_url}/items", {"name": "demo"})
        assert created.status == 201, created.body
        location = created.headers["location"]
        done = poll(lambda: http("GET", f"{base_url}{location}").json()["status"] == "done", JOB_TIMEOUT)

        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C sends
        with contextlib.suppress(subprocess.TimeoutExpired):
            demo.wait(timeout=STOP_TIMEOUT)
        stopped = demo.poll() is not None

    log = output_path.read_text(errors="replace")
    assert done, f"the item's job did not finish:\n{log}"
    assert f"http://127.0.0.1:{port}" in log, "the demo prints the URL to try"
    assert "curl" in log, "the demo prints a curl line to try"
    project = demo_dir / "my-service"
    # The job went through the embedded broker, and the data lives in local files, not in a server.
    assert (project / "demo.sqlite3").is_file()
    assert (project / "broker.sqlite3").is_file()
    # Ctrl-C stops every process. (Whether honcho also sends its SIGKILL, 5 s after its SIGTERM, is a race
    # with the worker's stop on the embedded broker, polled in 2 s slices; test_procfile.py holds the
    # formation to a platform's 30 s instead.)
    assert stopped, f"still running {STOP_TIMEOUT:g} s after Ctrl-C:\n{log}"
    assert "Application shutdown complete." in log, log
