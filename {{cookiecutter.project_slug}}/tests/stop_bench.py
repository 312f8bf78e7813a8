"""How the web process stops under load.

Each run starts `{{ cookiecutter.project_slug }} web`,
loads it with clients that open a new connection per request (and a few keep-alive ones), sends SIGTERM
after a while and prints how every connection ended (tests/traffic.py). A reset, empty or partial answer
is what a router reports as a 502.

    .venv/bin/python tests/stop_bench.py --runs 5 --workers 2

Needs the settings `.env` (or the environment) gives; only /healthz is asked, so no schema is needed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from traffic import Load, wait_for

SERVICE = Path(sys.executable).parent / "{{ cookiecutter.project_slug }}"
PROJECT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def one_run(workers: int, fresh: int, kept: int, load_seconds: float) -> str:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": str(workers), "LOG_FORMAT": "json"}
    with subprocess.Popen([SERVICE, "web"], env=env, cwd=PROJECT, stdout=subprocess.DEVNULL) as web:
        try:
            assert wait_for(lambda: accepts(port), START_TIMEOUT), "the web process did not start"
            with Load(port, fresh, kept, max_requests=100_000, deadline=load_seconds + STOP_TIMEOUT) as load:
                time.sleep(load_seconds)
                stopped_at = time.monotonic()
                web.send_signal(signal.SIGTERM)
                exit_code = web.wait(timeout=STOP_TIMEOUT)
                took = time.monotonic() - stopped_at
            return f"{load.tally.line()} exit={exit_code} stop={took:.2f}s"
        finally:
            web.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="WEB_CONCURRENCY")
    parser.add_argument("--fresh", type=int, default=32, help="clients opening a connection per request")
    parser.add_argument("--kept", type=int, default=4, help="keep-alive clients")
    parser.add_argument("--seconds", type=float, default=1.5, help="load before SIGTERM")
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        print(
            f"run {run} workers={args.workers}: {one_run(args.workers, args.fresh, args.kept, args.seconds)}"
        )


if __name__ == "__main__":
    main()
