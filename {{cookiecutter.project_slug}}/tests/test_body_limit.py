"""A body over MAX_BODY_BYTES gets a 413 from the real server without the server reading the rest of it.

Each test sends less than it announces, then waits for the answer: had the server tried to read the whole
body before answering, it would still be waiting for bytes that never come, and the answer would not
arrive. Raw sockets, because HTTP clients refuse to leave a request unfinished.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from conftest import service_environment
from processes import STARTUP_TIMEOUT, ServiceProcess, running_web

LIMIT = 64 * 1024
# An upload as clients send it, whole, before they read: five times the default MAX_BODY_BYTES.
UPLOAD = 5 * 1024 * 1024
# Far past what the server discards after a 413 (a few bodies' worth), socket buffers included.
ENDLESS = 64 * 1024 * 1024
ANSWER_TIMEOUT = 20.0
# A body far larger than anything this test sends.
ANNOUNCED = 50 * 1024 * 1024
CHUNK = 8 * 1024


def is_access_line(status: int) -> Any:
    return lambda event: event["logger"].endswith(".access") and event.get("status") == status


@pytest.fixture(scope="module")
def web(
    database_url: URL, redis_keyspace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One real web process whose MAX_BODY_BYTES is LIMIT; each test opens connections of its own."""
    env = {**service_environment(database_url, redis_keyspace), "MAX_BODY_BYTES": str(LIMIT)}
    with running_web(env, tmp_path_factory.mktemp("web")) as web:
        yield web


@pytest.fixture
def default_web(database_url: URL, redis_keyspace: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A web process with the default MAX_BODY_BYTES (1 MiB)."""
    with running_web(service_environment(database_url, redis_keyspace), tmp_path) as web:
        yield web


@pytest.fixture
def connection(web: ServiceProcess) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", web.port), timeout=ANSWER_TIMEOUT) as connection:
        yield connection


def request_head(port: int, *headers: str) -> bytes:
    lines = [
        "POST /items HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def read_answer(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the answer; the server must close the connection after it."""
    received = b""
    connection.settimeout(ANSWER_TIMEOUT)
    while data := connection.recv(65536):  # b"" once the server has closed the connection
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)
    }
    return int(status_line.split()[1]), headers, body


def assert_json_413(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["status"] == 413
    assert str(LIMIT) in error["message"]


def test_declared_length_over_the_limit_is_413_before_any_of_the_body_is_sent(
    web: ServiceProcess, connection: socket.socket
) -> None:
    connection.sendall(request_head(web.port, f"Content-Length: {ANNOUNCED}"))
    # Not one byte of the body follows.
    answer = read_answer(connection)

    assert_json_413(*answer)


def test_chunked_body_growing_past_the_limit_is_413_while_the_client_is_still_sending(
    web: ServiceProcess, connection: socket.socket
) -> None:
    connection.sendall(request_head(web.port, "Transfer-Encoding: chunked"))
    # Just past the limit, and no final chunk: the body, as far as the server knows, goes on.
    for _ in range(LIMIT // CHUNK + 1):
        connection.sendall(chunk(b"x" * CHUNK))
    answer = read_answer(connection)

    assert_json_413(*answer)


def test_chunked_body_within_the_limit_is_read_whole(web: ServiceProcess, connection: socket.socket) -> None:
    connection.sendall(request_head(web.port, "Transfer-Encoding: chunked", "Connection: close"))
    connection.sendall(chunk(b'{"name": ') + chunk(b'"chunked"}') + chunk(b""))
    status, _, body = read_answer(connection)

    assert status == 201
    assert json.loads(body)["name"] == "chunked"


def test_client_that_hangs_up_mid_body_is_logged_as_a_4xx_not_a_server_error(web: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", web.port), timeout=ANSWER_TIMEOUT) as connection:
        connection.sendall(request_head(web.port, "Content-Length: 100") + b'{"name": ')
    # Hung up 91 bytes short: the request ends as a 400 in the access log.
    web.wait_for_event(is_access_line(400), STARTUP_TIMEOUT)
    events = web.events()

    assert not [event for event in events if event["level"] in ("ERROR", "CRITICAL")]


def test_client_that_sends_the_whole_body_before_reading_still_reads_its_413(
    default_web: ServiceProcess,
) -> None:
    # http.client (and so requests and urllib3) writes all of it first: had the server closed the
    # connection with the body unread, the kernel would have reset it and the 413 would be lost.
    client = http.client.HTTPConnection("127.0.0.1", default_web.port, timeout=ANSWER_TIMEOUT)
    try:
        client.request("POST", "/items", body=b"x" * UPLOAD, headers={"Content-Type": "application/json"})
        response = client.getresponse()
        body = response.read()
    finally:
        client.close()

    assert response.status == 413
    assert response.getheader("connection") == "close"
    assert json.loads(body)["error"]["status"] == 413


def bytes_sent_until_cut_off(connection: socket.socket) -> int | None:
    """How much of an endless body the server takes before it resets the connection; None: all of it."""
    sent = 0
    while sent < ENDLESS:
        try:
            connection.sendall(b"x" * CHUNK * 8)
        except (ConnectionResetError, BrokenPipeError):
            return sent
        sent += CHUNK * 8
    return None


def test_client_that_keeps_sending_after_its_413_is_cut_off(
    web: ServiceProcess, connection: socket.socket
) -> None:
    connection.sendall(request_head(web.port, f"Content-Length: {ENDLESS * 2}"))
    started = time.monotonic()
    sent = bytes_sent_until_cut_off(connection)

    # The server discards a bounded amount, for a bounded time, then closes.
    assert sent is not None
    assert time.monotonic() - started < ANSWER_TIMEOUT
