"""Factor IX at the socket: a stopping web process answers every connection its kernel accepted.

A router reports a connection reset after accept, or closed with no answer, as a 502; a refused connection
(or a SYN never answered) it simply retries elsewhere. So under load, SIGTERM may refuse new clients but
must answer every client whose connection was established, and idle keep-alive connections end with a FIN.
With one uvicorn process and with two workers behind uvicorn's supervisor (WEB_CONCURRENCY).
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from processes import read_response, running_web, wait_until
from traffic import ANSWERED, FAILURES, Load

# Small enough for a busy 2-core machine to serve while running other tests, large enough for a queue.
FRESH_CLIENTS = 12
KEPT_CLIENTS = 4
MAX_REQUESTS = 5_000
# Answers before SIGTERM: the load has reached the server (and every worker has started).
WARM_UP_ANSWERS = 300
LOAD_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
ANSWER_TIMEOUT = 10.0

WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])


def stopped_cleanly(exit_code: int) -> bool:
    # One process re-raises the SIGTERM it caught once drained; the supervisor exits 0.
    return exit_code in (0, -signal.SIGTERM)


@WORKERS
def test_sigterm_under_load_answers_every_connection_the_kernel_accepted(
    workers: int, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "WEB_CONCURRENCY": str(workers)}
    with running_web(env, tmp_path) as web:
        with Load(web.port, FRESH_CLIENTS, KEPT_CLIENTS, MAX_REQUESTS, LOAD_TIMEOUT) as load:
            wait_until(lambda: load.tally[ANSWERED] >= WARM_UP_ANSWERS, LOAD_TIMEOUT, "answers under load")
            exit_code = web.stop(timeout=STOP_TIMEOUT)
        print(f"workers={workers}: {load.tally.line()}")

    assert stopped_cleanly(exit_code)
    assert {outcome: load.tally[outcome] for outcome in FAILURES} == dict.fromkeys(FAILURES, 0), (
        load.tally.line()
    )
    assert web.stderr == ""


def keep_alive_request(port: int) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def read_to_end(connection: socket.socket) -> bytes:
    """What the server sends until its FIN; a reset fails the test."""
    connection.settimeout(ANSWER_TIMEOUT)
    received = b""
    for _ in range(1000):
        data = connection.recv(65536)
        if not data:
            return received
        received += data
    pytest.fail(f"no end to {received!r}")


@WORKERS
def test_idle_keep_alive_connection_gets_a_fin_at_sigterm_not_a_reset(
    workers: int, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "WEB_CONCURRENCY": str(workers)}
    with running_web(env, tmp_path) as web:
        with socket.create_connection(("127.0.0.1", web.port), timeout=ANSWER_TIMEOUT) as connection:
            connection.sendall(keep_alive_request(web.port))
            status, headers, _ = read_response(connection)
            assert (status, headers.get("connection")) == (200, None)
            web.process.send_signal(signal.SIGTERM)
            # Raises ConnectionResetError on a reset: the clean end is EOF, with nothing more sent.
            rest = read_to_end(connection)
        exit_code = web.process.wait(timeout=STOP_TIMEOUT)

    assert rest == b""
    assert stopped_cleanly(exit_code)


def is_stop_requested(event: dict[str, Any]) -> bool:
    return str(event["message"]).startswith("Stop requested")


@WORKERS
def test_request_on_an_idle_connection_of_a_stopping_process_is_answered_then_closed_cleanly(
    workers: int, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "WEB_CONCURRENCY": str(workers)}
    with running_web(env, tmp_path) as web:
        with socket.create_connection(("127.0.0.1", web.port), timeout=ANSWER_TIMEOUT) as connection:
            connection.sendall(keep_alive_request(web.port))
            assert read_response(connection)[0] == 200
            web.process.send_signal(signal.SIGTERM)
            web.wait_for_event(is_stop_requested, STOP_TIMEOUT)
            # The client reuses its idle connection as the process stops: the request is in flight.
            connection.sendall(keep_alive_request(web.port))
            status, headers, body = read_response(connection)
            rest = read_to_end(connection)
        exit_code = web.process.wait(timeout=STOP_TIMEOUT)

    assert (status, body) == (200, b'{"status":"ok"}')
    # Its next request goes to another process.
    assert headers["connection"] == "close"
    assert rest == b""
    assert stopped_cleanly(exit_code)
