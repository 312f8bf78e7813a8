"""`make bench`: a default bake in its production configuration, side by side with the bare stack.

Run by the template's Makefile with the baked service's Python (it has the same Starlette, uvicorn, asyncpg
and Celery as the service), from the template's root:

    build/bench/my-service/.venv/bin/python -m bench.run --service build/bench/my-service --slug my-service

The service and its references run under the same uvicorn, one process each, on 127.0.0.1. Load rounds
alternate service and reference (and swap which goes first each round), so a neighbour's burst of CPU on a
shared machine lands on both; each figure is the median of the rounds.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from . import backing
from .context import Run
from .endpoints import web_figures
from .jobs import job_figures
from .report import comparison_table, endpoint_table
from .startup import startup_figures

VERSIONS_OF = (
    *("starlette", "uvicorn", "uvloop", "httptools", "orjson", "sqlalchemy", "asyncpg", "celery", "redis"),
    "opentelemetry-sdk",
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", type=Path, required=True, help="the baked, installed service")
    parser.add_argument("--slug", required=True, help="its console script")
    parser.add_argument("--out", type=Path, default=Path("build/bench/results.md"))
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per endpoint (median)")
    parser.add_argument("--seconds", type=float, default=10, help="length of one load round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--jobs", type=int, default=300, help="jobs per job-throughput round")
    parser.add_argument("--starts", type=int, default=3, help="cold starts per start-up figure (median)")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    # Stopped early (Ctrl-C, a test's timeout), still stop every process and drop the database: the
    # context managers below clean up on SystemExit. A background shell may have set SIGINT to ignore.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Processes run from other folders: every path absolute.
    args.service, args.out = args.service.resolve(), args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logs = args.out.parent / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    workdir = args.out.parent / "run"
    workdir.mkdir(exist_ok=True)
    load_before = os.getloadavg()

    with (
        backing.fresh_database(args.database_url) as database_url,
        backing.own_redis_database(args.redis_url) as redis_url,
    ):
        lines = measure_all(Run(args, database_url, redis_url, workdir, logs))

    header = [
        "# Benchmark: a default bake against the bare stack",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; load average before "
        f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}.",
        f"Python {platform.python_version()}, {versions()}, {wrk_version()}.",
        f"wrk -t{args.threads} -c{args.connections}, {args.rounds} alternating rounds of {args.seconds:g} s "
        f"per endpoint; medians of the rounds (ratios: median of each round's service / reference). "
        f"Start-up and memory: median of {args.starts} cold starts. Jobs: {args.jobs} per round, "
        f"{args.rounds} rounds.",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    args.out.write_text(text)
    sys.stdout.write(text)


def measure_all(run: Run) -> list[str]:
    run.say(f"migrating and seeding {run.database_url}")
    subprocess.run(
        [run.script, "migrate"],
        env=run.service_env(),
        cwd=run.workdir,
        stdout=run.log_path("migrate").open("ab"),
        stderr=subprocess.STDOUT,
        timeout=300,
        check=True,
    )
    item_count = backing.seed_items(run.database_url)
    startup = startup_figures(run)
    web = web_figures(run, item_count)
    jobs = job_figures(run)
    return [
        *endpoint_table(web.endpoints),
        "",
        *comparison_table([*startup, web.memory, *jobs]),
        "",
        "CPU µs/request: the server process's CPU time per answered request (service / reference); "
        "CPU ratio: the reference's over the service's, read like the req/s ratio but far steadier on a "
        "shared machine, because time spent waiting for a CPU is not counted. "
        "Errors: connection errors, timeouts and non-2xx/3xx answers (service / reference), all rounds. "
        "The service runs as `<slug> web` (one uvicorn worker, JSON logs to a file, every middleware) "
        "with its default settings; with tracing on, it exported its spans over OTLP/HTTP to a receiver "
        f"in the benchmark ({web.exports:,} exports, {web.export_bytes / 2**20:,.1f} MiB). The bare "
        "Celery workers share the service's delivery guarantees (acks late, prefetch 1) and concurrency.",
    ]


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def versions() -> str:
    found = []
    for name in VERSIONS_OF:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def wrk_version() -> str:
    answer = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False)
    first = (answer.stdout or answer.stderr).splitlines()[:1]
    return first[0].split(" [")[0] if first else "wrk"


if __name__ == "__main__":
    main()
