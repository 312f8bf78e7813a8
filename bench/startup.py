"""Cold starts and memory: the service's web process against bare Starlette and against the bare stack."""

from __future__ import annotations

import statistics
from pathlib import Path

from . import measure
from .context import TEMPLATE_ROOT, Run
from .report import Comparison

# The load that fills a fresh process's buffers before its memory is read: the same for both sides.
BURST_SECONDS = 2.0


class Starts:
    """Each process is started cold `args.starts` times, taking turns with the others."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def command(self, name: str, port: int) -> tuple[list[str | Path], dict[str, str], Path, str]:
        """How to start `name` on `port`: command, environment, folder, and the path that answers 200."""
        if name == "service":
            env = self.run.service_env(PORT=str(port))
            return [self.run.script, "web"], env, self.run.workdir, "/healthz"
        if name == "stack":
            command = self.run.uvicorn("bench.reference.stack:app", port)
            return command, self.run.reference_env(), TEMPLATE_ROOT, "/healthz"
        command = self.run.uvicorn("bench.reference.hello:app", port)
        return command, self.run.reference_env(), TEMPLATE_ROOT, "/hello"

    def start_seconds(self, name: str) -> float:
        port = measure.free_port()
        command, env, cwd, path = self.command(name, port)
        log = self.run.log_path(f"{name}-starts")
        return measure.start_seconds(command, port=port, path=path, env=env, cwd=cwd, log=log)

    def memory_mib(self, name: str) -> float:
        """Peak RSS after start-up and a short burst of `/healthz` (or `/hello`) under wrk."""
        port = measure.free_port()
        command, env, cwd, path = self.command(name, port)
        with measure.running(command, env=env, cwd=cwd, log=self.run.log_path(f"{name}-memory")) as process:
            measure.wait_for_status(port, path, process, interval=0.05)
            measure.load(
                f"http://127.0.0.1:{port}{path}",
                server=process.pid,
                seconds=BURST_SECONDS,
                connections=self.run.args.connections,
                threads=self.run.args.threads,
            )
            return measure.peak_rss_mib(process.pid)


def startup_figures(run: Run) -> list[Comparison]:
    starts = Starts(run)
    seconds: dict[str, list[float]] = {"service": [], "stack": [], "hello": []}
    memory: dict[str, list[float]] = {"service": [], "stack": []}
    for _ in range(run.args.starts):
        for name in seconds:
            seconds[name].append(starts.start_seconds(name) * 1000)
        for name in memory:
            memory[name].append(starts.memory_mib(name))
    run.say(
        "starts (ms): "
        + ", ".join(f"{name} {statistics.median(values):.0f}" for name, values in seconds.items())
    )
    return [
        Comparison(
            "start to first `/healthz` 200",
            "ms",
            seconds["service"],
            "bare stack: Starlette, async engine, Celery app",
            seconds["stack"],
            ("<=", 1.3),
        ),
        Comparison(
            "start to first `/healthz` 200 (old reference)",
            "ms",
            seconds["service"],
            "bare Starlette JSON hello",
            seconds["hello"],
            None,
        ),
        Comparison(
            "RSS of a fresh web process after a 2 s burst",
            "MiB",
            memory["service"],
            "bare stack: Starlette, async engine, Celery app",
            memory["stack"],
            ("<=", 1.3),
        ),
    ]
