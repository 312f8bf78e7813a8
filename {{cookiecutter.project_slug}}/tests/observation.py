"""Every process type at once, as a platform runs them, watched from outside and from inside.

From outside: the process tree (a process that left it daemonised), the TCP connections each process holds,
what it wrote to stdout and stderr, and what is left in its working directory. From inside: the probe in
tests/probe/ (an audit hook) records files opened for writing, programs started, libraries loaded, sockets
bound and connected, and the logging handlers records reach.

The backing services are reached through relays on ports of their own, so a process that finds a service
anywhere but through its URL setting shows up as a connection to the service's real port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from processes import (
    STARTUP_TIMEOUT,
    ServiceProcess,
    accepts_connections,
    is_ready,
    running,
    settled_readiness,
    wait_until,
)

PROBE = Path(__file__).resolve().parent / "probe"
PROBE_VARIABLE = "FACTOR_PROBE_DIR"
PROCESS_TYPES = ("web", "worker", "clock")
# Another address of the loopback range: what a router reaches is not only 127.0.0.1.
ANOTHER_LOOPBACK_ADDRESS = "127.0.0.2"
TCP_STATES_CONNECTED = frozenset({"01", "02"})  # ESTABLISHED, SYN_SENT


@dataclass(frozen=True)
class ProbeRecord:
    event: str
    args: list[Any]
    pid: int
    ppid: int


@dataclass
class Observation:
    """What the formation did, for the conformance tests to judge."""

    records: list[ProbeRecord] = field(default_factory=list)
    stdout: dict[str, str] = field(default_factory=dict)
    stderr: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    exited_before_stop: dict[str, int] = field(default_factory=dict)
    outside_the_tree: list[str] = field(default_factory=list)
    connections: dict[int, set[tuple[str, int]]] = field(default_factory=dict)
    relay_ports: set[int] = field(default_factory=set)
    web_port: int = 0
    workdir: Path = Path()
    answered_elsewhere: str = ""
    left_in_workdir: list[str] = field(default_factory=list)

    def events(self, *names: str) -> list[ProbeRecord]:
        return [record for record in self.records if record.event in names]


class Relay:
    """A TCP relay on 127.0.0.1 to a backing service: the address the service gets instead of the real one."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self.accept, daemon=True)

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            server.settimeout(None)
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self.pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for each in self.sockets:
            with suppress(OSError):
                each.close()


def relayed(url: str, stack: ExitStack) -> tuple[str, int]:
    """`url` pointed at a new relay to where it points now; and the relay's port."""
    parts = urlsplit(url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 0))
    relay.thread.start()
    stack.callback(relay.close)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{relay.port}" if credentials else f"127.0.0.1:{relay.port}"
    return urlunsplit(parts._replace(netloc=netloc)), relay.port


def probe_records(directory: Path) -> list[ProbeRecord]:
    records = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            data = json.loads(line)
            records.append(ProbeRecord(data["event"], data["args"], data["pid"], data["ppid"]))
    return records


def marked_processes(directory: Path) -> dict[int, int]:
    """{pid: parent pid} of every live process started with the probe pointed at `directory`."""
    marker = f"{PROBE_VARIABLE}={directory}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
    return found


def descends_from(pid: int, ancestors: set[int]) -> bool:
    for _ in range(64):
        if pid in ancestors:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except OSError:
            return False
        if pid <= 1:
            return False
    return False


def address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    words = b"".join(raw[index : index + 4][::-1] for index in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def tcp_connections(pid: int) -> set[tuple[tuple[str, int], tuple[str, int]]]:
    """(local, remote) of each connected TCP socket the process holds."""
    inodes = set()
    with suppress(OSError):
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                target = os.readlink(descriptor)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    connections = set()
    for table in ("tcp", "tcp6"):
        with suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes and fields[3] in TCP_STATES_CONNECTED:
                    connections.add((address(fields[1]), address(fields[2])))
    return connections


def kill_marked(directory: Path) -> None:
    """Whatever still runs of the formation, strays included."""
    for pid in marked_processes(directory):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def observed_environment(
    env: dict[str, str], probe_directory: Path, stack: ExitStack
) -> tuple[dict[str, str], set[int]]:
    """The service's environment with the probe on and the backing services behind relays."""
    database_url, database_relay = relayed(env["DATABASE_URL"], stack)
    redis_url, redis_relay = relayed(env["REDIS_URL"], stack)
    observed = {
        **env,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(PROBE),
        PROBE_VARIABLE: str(probe_directory),
        # As the image runs it (Dockerfile): no bytecode written beside the source.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return observed, {database_relay, redis_relay}


def up_or_gone(process: ServiceProcess, is_up: Callable[[], bool], probe_directory: Path) -> bool:
    """Wait until `is_up()`; stop waiting once neither the process nor anything it left behind runs."""

    def settled() -> bool:
        if is_up():
            return True
        return process.process.poll() is not None and not marked_processes(probe_directory)

    wait_until(settled, STARTUP_TIMEOUT, f"{process.stdout_path.stem} neither up nor gone")
    return bool(is_up())


def logged(process: ServiceProcess, matches: Callable[[dict[str, Any]], bool]) -> bool:
    complete, _, _ = process.stdout.rpartition("\n")
    for line in complete.splitlines():
        with suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and matches(event):
                return True
    return False


def observe_formation(env: dict[str, str], cwd: Path, graceful_timeout: float) -> Observation:
    """Start web, worker and clock in an empty, read-only working directory; make an item flow web ->
    queue -> worker -> database; look at the processes while they run; stop them with SIGTERM."""
    observation = Observation()
    probe_directory = cwd / "probe-records"
    probe_directory.mkdir()
    workdir = observation.workdir = (cwd / "workdir").resolve()
    workdir.mkdir()
    # Read-only for anyone but root; for root (as in CI here) the probe is what sees a write.
    workdir.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    with ExitStack() as stack:
        observed, observation.relay_ports = observed_environment(env, probe_directory, stack)
        stack.callback(kill_marked, probe_directory)
        processes = {name: stack.enter_context(running(name, observed, cwd)) for name in PROCESS_TYPES}
        web, worker, clock = (processes[name] for name in PROCESS_TYPES)
        observation.web_port = web.port
        up = {
            "web": up_or_gone(web, lambda: accepts_connections(web.port), probe_directory),
            "worker": up_or_gone(worker, lambda: logged(worker, is_ready), probe_directory),
            "clock": up_or_gone(
                clock, lambda: logged(clock, lambda e: e["message"] == "beat: Starting..."), probe_directory
            ),
        }
        if all(up.values()):
            exercise(observation, web.base_url)
        started = {process.process.pid for process in processes.values()}
        for pid in marked_processes(probe_directory):
            if not descends_from(pid, started):
                observation.outside_the_tree.append(
                    Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
                )
            observation.connections[pid] = {
                remote for local, remote in tcp_connections(pid) if local[1] != web.port
            }
        for name, process in processes.items():
            if process.process.poll() is not None:
                observation.exited_before_stop[name] = process.process.returncode
        for process in processes.values():
            if process.process.poll() is None:
                process.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + graceful_timeout + 15
        for name, process in processes.items():
            with suppress(Exception):
                process.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            observation.exit_codes[name] = process.process.poll()
            observation.stdout[name], observation.stderr[name] = process.stdout, process.stderr
    observation.records = probe_records(probe_directory)
    observation.left_in_workdir = sorted(str(path.relative_to(workdir)) for path in workdir.rglob("*"))
    return observation


def exercise(observation: Observation, base_url: str) -> None:
    """A request of each kind, and one item's job done by the worker."""
    with httpx2.Client(base_url=base_url, timeout=10) as http:
        assert settled_readiness(http.get).status_code == 200
        created = http.post("/items", json={"name": "observed"})
        location = created.headers["location"]
        wait_until(lambda: http.get(location).json()["status"] == "done", STARTUP_TIMEOUT, "the item's job")
        http.get("/items")
        http.get("/no/such/route")
    elsewhere = f"http://{ANOTHER_LOOPBACK_ADDRESS}:{observation.web_port}/healthz"
    try:
        observation.answered_elsewhere = httpx2.get(elsewhere, timeout=5).text
    except httpx2.HTTPError as error:
        observation.answered_elsewhere = f"{error.__class__.__name__}: {error}"
