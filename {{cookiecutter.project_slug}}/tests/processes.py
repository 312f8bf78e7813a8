"""Helpers that start the service's real processes (`web`, `worker`, `clock`) and watch what they write."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

CONSOLE_SCRIPT = "{{ cookiecutter.project_slug }}"
# Generous: a 2-core machine running several suites at once takes tens of seconds to import and bind.
STARTUP_TIMEOUT = 60.0
COMMAND_TIMEOUT = 30.0
# How often a wait loop looks again; every loop is bounded by a deadline and by a number of polls.
POLL_SECONDS = 0.05
# How /readyz names a check that did not answer within its time.
SLOW_CHECK = "unreachable (TimeoutError)"

T = TypeVar("T")


def wait_until(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something other than None (or False), for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL_SECONDS) + 1):
        result = condition()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    pytest.fail(f"{what}: not within {timeout} s")


def settled_readiness(get: Callable[[str], Any], timeout: float = STARTUP_TIMEOUT) -> Any:
    """`get("/readyz")`'s first answer in which no check merely ran out of time.

    Each check has 2 s (see web/health.py); on a loaded machine a first connection can take longer. A
    platform's probe simply asks again, and so does this; any other answer, ready or not, is final.
    """

    def settled() -> Any:
        response = get("/readyz")
        problems = response.json().get("problems", {})
        return None if SLOW_CHECK in problems.values() else response

    return wait_until(settled, timeout, "a /readyz answer without a timed-out check")


def console_script() -> str:
    """The installed console script: next to this interpreter in the virtualenv, or on PATH."""
    beside = Path(sys.executable).with_name(CONSOLE_SCRIPT)
    found = str(beside) if beside.exists() else shutil.which(CONSOLE_SCRIPT)
    assert found, f"the {CONSOLE_SCRIPT} console script is not installed (run `make install`)"
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def run_command(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )


def modules_loaded_by(program: str, env: dict[str, str], cwd: Path) -> set[str]:
    """The modules a fresh interpreter had loaded when `program` ended; its last output line must be
    `json.dumps(sorted(sys.modules))`."""
    ran = subprocess.run(
        [sys.executable, "-c", program], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    return set(json.loads(ran.stdout.splitlines()[-1]))


def json_events(output: str) -> list[dict[str, Any]]:
    """Every line parsed as one JSON log event; fails on any line that is not one."""
    events = []
    for line in output.splitlines():
        event = json.loads(line)
        assert isinstance(event, dict), line
        assert {"time", "level", "logger", "message"} <= set(event), line
        events.append(event)
    return events


class ServiceProcess:
    """One of the service's processes (`web`, `worker`, `clock`), its stdout and stderr captured in files."""

    def __init__(self, process: subprocess.Popen[bytes], stdout: Path, stderr: Path, port: int) -> None:
        self.process, self.port = process, port
        self.stdout_path, self.stderr_path = stdout, stderr
        self.base_url = f"http://127.0.0.1:{port}"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def events(self) -> list[dict[str, Any]]:
        """The log events written so far (a line still being written is left for the next call)."""
        complete, _, _ = self.stdout.rpartition("\n")
        return json_events(complete)

    def wait_for_event(self, matches: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first log event that `matches`, waiting up to `timeout` s; fails if the process exits first."""

        def found() -> dict[str, Any] | None:
            event = next((event for event in self.events() if matches(event)), None)
            if event is None and self.process.poll() is not None:
                pytest.fail(f"exited with {self.process.returncode}:\n{self.stdout}\n{self.stderr}")
            return event

        return wait_until(found, timeout, f"no such log event from the process:\n{self.stdout}")

    def wait_until_serving(self) -> None:
        def serving() -> bool:
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.stderr}"
            return accepts_connections(self.port)

        wait_until(serving, STARTUP_TIMEOUT, f"web not listening on port {self.port}:\n{self.stdout}")

    def stop(self, timeout: float) -> int:
        """SIGTERM, as a platform sends it, and the exit code once the process has exited."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout:g} s after SIGTERM:\n{self.stdout}\n{self.stderr}")


@contextmanager
def running(
    command: str, env: dict[str, str], cwd: Path, name: str | None = None
) -> Iterator[ServiceProcess]:
    """Start `<slug> <command>` and always kill it (and any child it forked) afterwards.

    The working directory is `cwd/workdir`, empty to begin with: no `.env`, and anything the process writes
    there shows up. Output goes to `cwd/<name>.stdout` and `cwd/<name>.stderr`.
    """
    name = name or command
    port = free_port()
    stdout, stderr = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    workdir = cwd / "workdir"
    workdir.mkdir(exist_ok=True)
    with stdout.open("ab") as out, stderr.open("ab") as err:
        process = subprocess.Popen(
            [console_script(), command],
            env={**env, "PORT": str(port)},
            cwd=workdir,
            stdout=out,
            stderr=err,
            # Its own process group, so the `finally` below reaches a worker's pool processes too.
            start_new_session=True,
        )
    try:
        yield ServiceProcess(process, stdout, stderr, port)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def running_web(env: dict[str, str], cwd: Path) -> Iterator[ServiceProcess]:
    """The web process on a free port, once it listens."""
    with running("web", env, cwd) as web:
        web.wait_until_serving()
        yield web


def is_ready(event: dict[str, Any]) -> bool:
    """Celery's "<node> ready." event: the worker consumes from here on."""
    return event["logger"] == "celery.apps.worker" and str(event["message"]).endswith(" ready.")


@contextmanager
def running_worker(env: dict[str, str], cwd: Path, name: str = "worker") -> Iterator[ServiceProcess]:
    """A worker process, once it consumes."""
    with running("worker", env, cwd, name) as worker:
        worker.wait_for_event(is_ready, STARTUP_TIMEOUT)
        yield worker


def read_head(connection: socket.socket) -> bytes:
    """Bytes up to the end of a response's head (what follows it stays in `connection`'s buffer)."""
    received = b""
    for _ in range(1000):
        if received.endswith(b"\r\n\r\n"):
            return received
        received += connection.recv(1) or pytest.fail(f"connection closed after {received!r}")
    pytest.fail(f"no end of response head in {received!r}")


def read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    status_line, *header_lines = read_head(connection).decode().strip().split("\r\n")
    headers = {
        name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)
    }
    body = b""
    for _ in range(1000):
        if len(body) >= int(headers["content-length"]):
            break
        body += connection.recv(65536) or pytest.fail(f"connection closed after {body!r}")
    return int(status_line.split()[1]), headers, body


@dataclass  # drop: events
class ReceivedEvent:
    body: bytes
    # Names in lower case, as the Standard Webhooks headers are spelled.
    headers: dict[str, str]

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class EventReceiver:  # drop: events
    """Another app, as far as events go: an HTTP server on 127.0.0.1 that answers each POST with the next
    scripted (status, headers), 200 once the script runs out, and keeps what it was sent."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.received: list[ReceivedEvent] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.received.append(ReceivedEvent(body, headers))
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/events"


@contextmanager  # drop: events
def event_receiver() -> Iterator[EventReceiver]:
    receiver = EventReceiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
