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
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from . import backing, jobs, measure
from .report import Comparison, EndpointRounds, comparison_table, endpoint_table

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
VERSIONS_OF = ("starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy", "asyncpg", "celery", "redis")


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
    # Each process's output, from this run only: the service's JSON lines are its log sink.
    logs = args.out.parent / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    # No .env here: the service sees only what the benchmark exports.
    workdir = args.out.parent / "run"
    workdir.mkdir(exist_ok=True)
    load_before = os.getloadavg()

    with (
        backing.fresh_database(args.database_url) as database_url,
        backing.own_redis_database(args.redis_url) as redis_url,
    ):
        bench = Bench(args, database_url, redis_url, workdir, logs)
        lines = bench.run()

    header = [
        "# Benchmark: a default bake against the bare stack",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; load average before "
        f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}.",
        f"Python {platform.python_version()}, {versions()}, {wrk_version()}.",
        f"wrk -t{args.threads} -c{args.connections}, {args.rounds} alternating rounds of {args.seconds:g} s "
        f"per endpoint; medians of the rounds (ratios: median of each round's service / reference). "
        f"Start-up: median of {args.starts} starts. Jobs: {args.jobs} per round, {args.rounds} rounds.",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    args.out.write_text(text)
    sys.stdout.write(text)


class Bench:
    def __init__(
        self, args: argparse.Namespace, database_url: str, redis_url: str, workdir: Path, logs: Path
    ) -> None:
        self.args = args
        self.database_url = database_url
        self.redis_url = redis_url
        self.workdir = workdir
        self.logs = logs
        self.python = args.service / ".venv" / "bin" / "python"
        self.script = args.service / ".venv" / "bin" / args.slug

    def service_env(self, **extra: str) -> dict[str, str]:
        """The service's production configuration: defaults everywhere, JSON logs, one web process."""
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": secrets.token_urlsafe(48),
            # The bare references check no token either.
            "API_OPEN": "true",
            "LOG_FORMAT": "json",
            "RELEASE_ID": "bench",
            **extra,
        }

    def reference_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "BENCH_DSN": self.database_url,
            "BENCH_BROKER_URL": self.redis_url,
        }

    def uvicorn(self, app: str, port: int) -> list[str | Path]:
        """The reference apps under the service's uvicorn, with the same choices as `<slug> web`."""
        return [
            *(self.python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
            *("--no-access-log", "--log-level", "warning", "--no-server-header"),
        ]

    def run(self) -> list[str]:
        self.log(f"migrating and seeding {self.database_url}")
        subprocess.run(
            [self.script, "migrate"],
            env=self.service_env(),
            cwd=self.workdir,
            stdout=(self.logs / "migrate.log").open("ab"),
            stderr=subprocess.STDOUT,
            timeout=300,
            check=True,
        )
        item_count = backing.seed_items(self.database_url)

        startup = self.startup()
        endpoints = [
            EndpointRounds("GET /healthz", "bare Starlette JSON hello", 0.95, None),
            EndpointRounds("GET /version", "bare Starlette JSON hello", 0.55, None),
            EndpointRounds("GET /items/{id}", "raw asyncpg one-row read", 0.55, 1.5),
        ]
        with self.web_servers() as (service_port, hello_port, read_port):
            service = self.processes["service web"]
            targets = [
                (f"http://127.0.0.1:{service_port}/healthz", f"http://127.0.0.1:{hello_port}/hello", None),
                (f"http://127.0.0.1:{service_port}/version", f"http://127.0.0.1:{hello_port}/hello", None),
                (
                    f"http://127.0.0.1:{service_port}/items/",
                    f"http://127.0.0.1:{read_port}/items/",
                    item_count,
                ),
            ]
            for service_url, reference_url, items in targets:
                for url in (service_url, reference_url):
                    self.load(url, items, seconds=min(2.0, self.args.seconds))  # warm-up, not counted
            for number in range(self.args.rounds):
                for row, (service_url, reference_url, items) in zip(endpoints, targets, strict=True):
                    # Swap who goes first each round, so a trend in the machine's load favours neither.
                    if number % 2 == 0:
                        service_load = self.load(service_url, items)
                        reference_load = self.load(reference_url, items)
                    else:
                        reference_load = self.load(reference_url, items)
                        service_load = self.load(service_url, items)
                    row.rounds.append((service_load, reference_load))
                    self.log(
                        f"round {number + 1} {row.endpoint}: {service_load.requests_per_second:,.0f} vs "
                        f"{reference_load.requests_per_second:,.0f} req/s"
                    )
            throughput = self.job_throughput(service_port)
            # After every round and every job: the high-water mark of the whole run.
            memory = Comparison(
                "peak RSS of the web process",
                "MiB",
                [measure.peak_rss_mib(service.pid)],
                "bare Starlette JSON hello",
                [measure.peak_rss_mib(self.processes["hello"].pid)],
                None,
            )
        return [
            *endpoint_table(endpoints),
            "",
            *comparison_table([startup, memory, throughput]),
            "",
            "CPU µs/request: the server process's CPU time per answered request (service / reference); "
            "CPU ratio: the reference's over the service's, read like the req/s ratio but far steadier on a "
            "shared machine, because time spent waiting for a CPU is not counted. "
            "Errors: connection errors, timeouts and non-2xx/3xx answers (service / reference), all rounds. "
            "The service runs as `<slug> web` (one uvicorn worker, JSON logs to a file, every middleware) "
            "with its default settings; the bare Celery worker shares the service's delivery guarantees "
            "(acks late, prefetch 1) and runs with the same concurrency.",
        ]

    processes: dict[str, subprocess.Popen[bytes]]
    # The process serving each port, whose CPU time a load round reads.
    pids: dict[int, int]

    @contextmanager
    def web_servers(self) -> Iterator[tuple[int, int, int]]:
        """The service's web process and both reference apps, each answering before this yields."""
        ports = {
            "service web": measure.free_port(),
            "hello": measure.free_port(),
            "pk read": measure.free_port(),
        }
        commands: Mapping[str, tuple[list[str | Path], dict[str, str], str]] = {
            "service web": (
                [self.script, "web"],
                self.service_env(PORT=str(ports["service web"])),
                "/healthz",
            ),
            "hello": (
                self.uvicorn("bench.reference.hello:app", ports["hello"]),
                self.reference_env(),
                "/hello",
            ),
            "pk read": (
                self.uvicorn("bench.reference.pk_read:app", ports["pk read"]),
                self.reference_env(),
                "/items/1",
            ),
        }
        self.processes = {}
        self.pids = {}
        with ExitStack() as stack:
            for name, (command, env, path) in commands.items():
                cwd = TEMPLATE_ROOT if name != "service web" else self.workdir
                log = self.logs / f"{name.replace(' ', '-')}.log"
                process = stack.enter_context(measure.running(command, env=env, cwd=cwd, log=log))
                measure.wait_for_status(ports[name], path, process, interval=0.1)
                self.processes[name] = process
                self.pids[ports[name]] = process.pid
            yield ports["service web"], ports["hello"], ports["pk read"]

    def load(self, url: str, random_items: int | None, seconds: float | None = None) -> measure.Load:
        return measure.load(
            url,
            server=self.pids[urlsplit(url).port or 80],
            seconds=self.args.seconds if seconds is None else seconds,
            connections=self.args.connections,
            threads=self.args.threads,
            random_items=random_items,
        )

    def startup(self) -> Comparison:
        """Launch to first /healthz 200, service and bare Starlette alternately, each start cold."""
        service_seconds: list[float] = []
        hello_seconds: list[float] = []
        for _ in range(self.args.starts):
            port = measure.free_port()
            service_seconds.append(
                measure.start_seconds(
                    [self.script, "web"],
                    port=port,
                    path="/healthz",
                    env=self.service_env(PORT=str(port)),
                    cwd=self.workdir,
                    log=self.logs / "service-web-starts.log",
                )
            )
            port = measure.free_port()
            hello_seconds.append(
                measure.start_seconds(
                    self.uvicorn("bench.reference.hello:app", port),
                    port=port,
                    path="/hello",
                    env=self.reference_env(),
                    cwd=TEMPLATE_ROOT,
                    log=self.logs / "hello-starts.log",
                )
            )
        self.log(f"starts: service {service_seconds}, bare Starlette {hello_seconds}")
        return Comparison(
            "start to first `/healthz` 200",
            "ms",
            [seconds * 1000 for seconds in service_seconds],
            "bare Starlette",
            [seconds * 1000 for seconds in hello_seconds],
            ("<=", 2.5),
        )

    def job_throughput(self, service_port: int) -> Comparison:
        """Items per second through the service's web and worker, against bare Celery tasks per second."""
        service: list[float] = []
        bare: list[float] = []
        worker = [self.script, "worker"]
        bare_worker = [
            *(self.python, "-m", "celery", "-A", "bench.reference.bare_celery", "worker", "-c", "2"),
            *("--without-mingle", "--without-gossip", "-l", "WARNING"),
        ]
        with (
            measure.running(worker, env=self.service_env(), cwd=self.workdir, log=self.logs / "worker.log"),
            measure.running(
                bare_worker, env=self.reference_env(), cwd=TEMPLATE_ROOT, log=self.logs / "bare.log"
            ),
        ):
            # One job each first: both workers are up and connected before anything is timed.
            jobs.service_jobs_per_second(service_port, self.database_url, 1)
            jobs.bare_jobs_per_second(self.redis_url, 1, "warm-up")
            for number in range(self.args.rounds):
                service.append(jobs.service_jobs_per_second(service_port, self.database_url, self.args.jobs))
                bare.append(jobs.bare_jobs_per_second(self.redis_url, self.args.jobs, str(number)))
                self.log(f"jobs round {number + 1}: {service[-1]:,.0f} items/s vs {bare[-1]:,.0f} tasks/s")
        return Comparison(
            "jobs, `POST /items` to `done`",
            "items/s",
            service,
            "bare Celery task round trip",
            bare,
            (">=", 0.5),
            reference_unit="tasks/s",
        )

    @staticmethod
    def log(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
