"""How each figure is taken: throughput and latency under wrk, start-up time, peak memory, processes.

Only 127.0.0.1 is ever loaded, and every measurement is bounded in time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

# wrk calls `done` once, after every thread stopped: print the figures as one JSON line we can parse.
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
# Each request asks for a random item among the seeded ones (passed as `-- <count>`).
WRK_RANDOM_ITEM = """
local item_count = 1
init = function(args) item_count = tonumber(args[1]) end
request = function() return wrk.format(nil, "/items/" .. math.random(1, item_count)) end
"""
# Seconds a process may take to answer its first request, or to exit after SIGTERM.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class Load:
    """One wrk run against one URL."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    # Connection errors, timeouts and non-2xx/3xx answers: a fast error is not throughput.
    errors: int
    # CPU time the server process spent per request answered. On a shared machine this moves far less
    # than the request rate does, because time spent waiting for a CPU is not counted.
    cpu_us_per_request: float


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def load(
    url: str,
    *,
    server: int,
    seconds: float,
    connections: int,
    threads: int,
    random_items: int | None = None,
    headers: Sequence[str] = (),
) -> Load:
    """Drive `url` (served by process `server`) with wrk for `seconds`; with `random_items`, GET
    /items/<random id up to it>; `headers` as `Name: value`."""
    script = WRK_REPORT + (WRK_RANDOM_ITEM if random_items else "")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            lua.name,
            *(option for header in headers for option in ("-H", header)),
            url,
        ]
        if random_items:
            command += ["--", str(random_items)]
        cpu_before = cpu_seconds(server)
        finished = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
        cpu = cpu_seconds(server) - cpu_before
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    return Load(
        requests_per_second=report["requests"] / (report["duration_us"] / 1e6),
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        errors=report["errors"],
        cpu_us_per_request=cpu * 1e6 / max(report["requests"], 1),
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (fields 14 and 15 of /proc/<pid>/stat)."""
    # The command name (field 2) is in parentheses and may hold spaces: split after its closing one.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of GET `path` on 127.0.0.1:`port`, or None if nothing answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def wait_for_status(port: int, path: str, process: subprocess.Popen[bytes], interval: float) -> None:
    """Return once GET `path` answers 200; fail if the process exits or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while get_status(port, path, timeout=0.5) != 200:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before answering {path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args!r} did not answer {path} within {START_TIMEOUT:.0f} s")
        time.sleep(interval)


@contextlib.contextmanager
def running(
    command: Sequence[str | Path], *, env: Mapping[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own session, its output appended to `log`; SIGTERM (then SIGKILL) at the end."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group (a worker's pool too), SIGKILL if it outlives STOP_TIMEOUT."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def start_seconds(
    command: Sequence[str | Path], *, port: int, path: str, env: Mapping[str, str], cwd: Path, log: Path
) -> float:
    """Seconds from launching `command` to its first 200 on `path`; the process is stopped afterwards."""
    started = time.monotonic()
    with running(command, env=env, cwd=cwd, log=log) as process:
        # Poll often: the figure is a few hundred milliseconds, and each poll costs the process little.
        wait_for_status(port, path, process, interval=0.005)
        return time.monotonic() - started


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")
