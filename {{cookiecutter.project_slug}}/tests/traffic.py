"""HTTP clients on raw sockets that count how each connection ended, for the stop tests and stop_bench.py.

Raw sockets, because a client library hides what matters here: whether a connection was refused (or its SYN
never answered), reset after the kernel had accepted it, or closed with no answer at all.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# A connection the server's kernel never answers (its SYN dropped) waits for this, then counts as refused.
CONNECT_TIMEOUT = 3.0
ANSWER_TIMEOUT = 10.0
PATH = "/healthz"

# How a connection, or one request on it, ended.
ANSWERED = "answered"
# ECONNREFUSED, or no SYN-ACK: the listener was closed or shut; a router retries these elsewhere.
REFUSED = "refused"
# Every outcome below is on a connection the kernel had accepted: a router reports it as a 502.
RESET = "reset"
EMPTY = "empty"
PARTIAL = "partial"
# A keep-alive connection the server ended with a FIN while it was idle: clean, the client reconnects.
CLOSED_IDLE = "closed idle"
FAILURES = (RESET, EMPTY, PARTIAL)


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            self.counts[outcome] += 1

    def __getitem__(self, outcome: str) -> int:
        with self.lock:
            return self.counts[outcome]

    def line(self) -> str:
        with self.lock:
            outcomes = (ANSWERED, REFUSED, RESET, EMPTY, PARTIAL, CLOSED_IDLE)
            return " ".join(f"{outcome.replace(' ', '_')}={self.counts[outcome]}" for outcome in outcomes)


def request(port: int, keep_alive: bool) -> bytes:
    connection = "keep-alive" if keep_alive else "close"
    return f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: {connection}\r\n\r\n".encode()


def connect(port: int) -> socket.socket | None:
    """A connection the kernel accepted, or None when it was refused or its SYN went unanswered."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    except (ConnectionRefusedError, TimeoutError):
        return None


def read_answer(connection: socket.socket) -> tuple[str, bool]:
    """The outcome of one request already sent, and whether the server said it closes the connection."""
    received = b""
    connection.settimeout(ANSWER_TIMEOUT)
    try:
        while b"\r\n\r\n" not in received:
            data = connection.recv(65536)
            if not data:
                return (PARTIAL if received else EMPTY), True
            received += data
        head, _, body = received.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            data = connection.recv(65536)
            if not data:
                return PARTIAL, True
            body += data
    except (ConnectionResetError, BrokenPipeError):
        return RESET, True
    except TimeoutError:
        return PARTIAL, True
    closes = b"\r\nconnection: close" in head.lower()
    return (ANSWERED if head.startswith(b"HTTP/1.1 200 ") else PARTIAL), closes


def ends_cleanly(connection: socket.socket) -> str | None:
    """After an answer that closes the connection: a reset instead of the FIN is a failure."""
    try:
        while connection.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return RESET
    except TimeoutError:
        return PARTIAL
    return None


def one_request(port: int, connection: socket.socket, keep_alive: bool) -> tuple[str, bool]:
    try:
        connection.sendall(request(port, keep_alive))
    except (ConnectionResetError, BrokenPipeError):
        return RESET, True
    outcome, closes = read_answer(connection)
    if outcome == ANSWERED and closes:
        outcome = ends_cleanly(connection) or outcome
    return outcome, closes


def closed_while_idle(connection: socket.socket) -> str | None:
    """Before reusing a keep-alive connection, as HTTP clients do: has the server ended it?"""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return None
    try:
        return CLOSED_IDLE if not connection.recv(65536) else PARTIAL
    except (ConnectionResetError, BrokenPipeError):
        return RESET


class Load:
    """`fresh` clients that open a new connection per request and `kept` keep-alive clients, in threads,
    until `stop()` or `max_requests` requests each; `deadline` seconds bound the whole run."""

    def __init__(self, port: int, fresh: int, kept: int, max_requests: int, deadline: float) -> None:
        self.port, self.max_requests = port, max_requests
        self.tally = Tally()
        self.done = threading.Event()
        self.ends_at = time.monotonic() + deadline
        self.threads = [threading.Thread(target=self.fresh_client, daemon=True) for _ in range(fresh)]
        self.threads += [threading.Thread(target=self.kept_client, daemon=True) for _ in range(kept)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=CONNECT_TIMEOUT + ANSWER_TIMEOUT)

    def running(self) -> bool:
        return not self.done.is_set() and time.monotonic() < self.ends_at

    def refused(self) -> None:
        self.tally.add(REFUSED)
        # The listener is shut: ask again soon, without spinning on a closed port.
        self.done.wait(0.01)

    def fresh_client(self) -> None:
        for _ in range(self.max_requests):
            if not self.running():
                return
            connection = connect(self.port)
            if connection is None:
                self.refused()
                continue
            with connection:
                self.tally.add(one_request(self.port, connection, keep_alive=False)[0])

    def kept_client(self) -> None:
        connection: socket.socket | None = None
        for _ in range(self.max_requests):
            if not self.running():
                break
            if connection is not None and (ended := closed_while_idle(connection)):
                self.tally.add(ended)
                connection.close()
                connection = None
            if connection is None:
                connection = connect(self.port)
                if connection is None:
                    self.refused()
                    continue
            outcome, closes = one_request(self.port, connection, keep_alive=True)
            self.tally.add(outcome)
            if closes:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.01) -> bool:
    """Whether `condition` came true within `timeout` s (bounded in polls too)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / poll) + 1):
        if condition():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(poll)
    return condition()
