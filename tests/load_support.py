"""A small, bounded load client for the template's fault and load tests (loopback only)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One request as a client saw it: when it was sent (monotonic), and its status or the error."""

    method: str
    path: str
    sent_at: float
    status: int | None
    error: str | None


def request(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> Outcome:
    """One request on a fresh connection (as a client behind a load balancer makes them)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent_at = time.monotonic()
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        sent_at = time.monotonic()
        response = connection.getresponse()
        response.read()
        return Outcome(method, path, sent_at, response.status, None)
    except OSError as exc:  # refused, reset, timed out, closed early (RemoteDisconnected)
        return Outcome(method, path, sent_at, None, exc.__class__.__name__)
    finally:
        connection.close()


RequestMaker = Callable[[int], Outcome]


def run_load(make: RequestMaker, *, clients: int, per_client: int, stop: threading.Event) -> list[Outcome]:
    """`clients` threads each making up to `per_client` requests (`make(n)`), until `stop` is set or a
    client meets a refused connection (the server has gone). Bounded in count."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        for sequence in range(per_client):
            if stop.is_set():
                return
            outcome = make(number * per_client + sequence)
            with lock:
                outcomes.append(outcome)
            if outcome.error == "ConnectionRefusedError":
                return

    threads = [threading.Thread(target=client, args=(number,), daemon=True) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return outcomes


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")
