"""`make bench`: this service's own endpoints under load, so a change that costs speed shows up as a number.

It creates a database of its own on the server of `DATABASE_URL` (dropped at the end), migrates and seeds
it, starts the web process as production runs it (one uvicorn worker, JSON logs, every middleware) and
drives each endpoint with wrk (https://github.com/wg/wrk; `apt-get install wrk`, `brew install wrk`) from
127.0.0.1. It prints requests per second and p50/p99 latency per endpoint (the median of the rounds),
the time from start to the first /healthz 200 and the web process's peak memory.
Compare runs on the same machine only: the figures say as much about the machine as about the code.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.database import sync_url
from {{ cookiecutter.package_name }}.settings import ConfigurationError, load_settings

SERVICE = Path(sys.executable).parent / "{{ cookiecutter.project_slug }}"
SEED_ITEMS = 10_000
# wrk calls `done` once at the end: print the figures as one JSON line. With an argument N, each request
# asks for a random /items/<1..N>.
WRK_SCRIPT = """
local item_count = nil
init = function(args) item_count = tonumber(args[1]) end
if wrk.path == "/items/" then
  request = function() return wrk.format(nil, "/items/" .. math.random(1, item_count)) end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %f, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
ENDPOINTS = ("/healthz", "/version", "/items/")
# Seconds the web process may take to answer, or to exit after SIGTERM.
START_TIMEOUT = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per endpoint; the median is shown")
    parser.add_argument("--seconds", type=int, default=10, help="length of one round")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("make bench needs wrk: `apt-get install wrk` or `brew install wrk`")
    try:
        settings = load_settings()
    except ConfigurationError as error:
        sys.exit(str(error))

    # libpq's own URL form, which psycopg takes and the service's normaliser accepts.
    server = sync_url(settings.database.url).set(drivername="postgresql")
    with own_database(server) as database_url:
        env = {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json", "RELEASE_ID": "bench"}
        subprocess.run([SERVICE, "migrate"], env=env, check=True, capture_output=True, timeout=300)
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO items (name, status) SELECT 'item ' || n, 'done' FROM generate_series(1, %s) n",
                (SEED_ITEMS,),
            )
        starts = [start_seconds(env) for _ in range(3)]
        port = free_port()
        with web(env, port) as process:
            rounds = {path: [wrk(port, path, args) for _ in range(args.rounds)] for path in ENDPOINTS}
            peak_mib = peak_rss_mib(process.pid)

    print(f"wrk -c{args.connections}, {args.rounds} rounds of {args.seconds} s each, medians")
    print("| endpoint | req/s | p50 ms | p99 ms | errors |")
    print("|---|--:|--:|--:|--:|")
    for path, results in rounds.items():
        shown = "/items/{id}" if path == "/items/" else path
        print(
            f"| `GET {shown}` | {statistics.median(r['requests'] / r['seconds'] for r in results):,.0f} "
            f"| {statistics.median(r['p50_us'] for r in results) / 1000:.1f} "
            f"| {statistics.median(r['p99_us'] for r in results) / 1000:.1f} "
            f"| {sum(r['errors'] for r in results)} |"
        )
    print(f"| start to first `/healthz` 200 | {statistics.median(starts) * 1000:,.0f} ms | | | |")
    print(f"| peak RSS of the web process | {peak_mib:,.0f} MiB | | | |")


@contextlib.contextmanager
def own_database(server: URL) -> Iterator[str]:
    """A new database on the server of `server`, dropped afterwards; yields its URL."""
    name = f"bench_{secrets.token_hex(6)}"
    # The maintenance database every PostgreSQL server has: the configured one may not exist yet.
    admin_url = server.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextlib.contextmanager
def web(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The web process on `port`, its log lines discarded, answering /healthz."""
    process = subprocess.Popen(
        [SERVICE, "web"], env={**env, "PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy(port):
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the web process did not answer /healthz (exit status {process.poll()})")
            time.sleep(0.005)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=START_TIMEOUT)


def start_seconds(env: dict[str, str]) -> float:
    started = time.monotonic()
    with web(env, free_port()):
        return time.monotonic() - started


def wrk(port: int, path: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        command = [
            *("wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "5s"),
            *("-s", script.name, f"http://127.0.0.1:{port}{path}", "--", str(SEED_ITEMS)),
        ]
        timeout = args.seconds + 60
        finished = subprocess.run(command, capture_output=True, text=True, check=True, timeout=timeout)
    report: dict[str, float] = json.loads(finished.stdout.strip().splitlines()[-1])
    return report


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return float("nan")  # no /proc (macOS): the figure is Linux-only
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


if __name__ == "__main__":
    main()
