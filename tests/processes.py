"""Helpers for tests that run a baked service's real processes: ports, HTTP, databases, Redis keyspaces."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from subprocess import DEVNULL, STDOUT, Popen
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from support import InstalledService, assert_succeeded, run

# A password that needs percent-escapes in a URL. Local PostgreSQL trusts 127.0.0.1 and ignores it; what
# is tested is that the service decodes the URL, not the password.
AWKWARD_PASSWORD = "p@ss%w0rd"
T = TypeVar("T")
# Seconds a baked web process may take to answer /healthz (bake and install come before it in `make demo`).
HEALTH_TIMEOUT = 240.0


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Straight to 127.0.0.1, whatever http_proxy variables the machine has.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    method: str, url: str, payload: Any = None, *, timeout: float = 10, headers: dict[str, str] | None = None
) -> Response:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with DIRECT.open(request, timeout=timeout) as answer:
            return Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def poll(condition: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T | None:
    """`condition()`'s first truthy result, polled until `timeout`; bounded in count too. Connection errors
    and unparsable answers count as "not yet"."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        with contextlib.suppress(OSError, ValueError, KeyError):
            result = condition()
            if result:
                return result
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    return None


@contextlib.contextmanager
def process_group(
    command: Sequence[str | Path], cwd: Path, env: dict[str, str], output: Path
) -> Iterator[Popen[bytes]]:
    """Run `command` as the leader of a new process group (like a terminal's foreground job), its stdout and
    stderr in `output`; whatever of the group still runs at the end is killed."""
    with output.open("wb") as stream:
        process = Popen(
            command, cwd=cwd, env=env, stdin=DEVNULL, stdout=stream, stderr=STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def settled_readiness(base_url: str) -> Response:
    """/readyz's first answer in which no check merely ran out of time (each has 2 s; on a loaded machine a
    first connection can take longer). A platform's probe asks again, and so does this; any other answer,
    ready or not, is final. The last answer if none settles within HEALTH_TIMEOUT."""

    def ask() -> Response:
        return http("GET", f"{base_url}/readyz", timeout=10)

    def settled() -> Response | None:
        answer = ask()
        problems = answer.json().get("problems", {})
        return None if "unreachable (TimeoutError)" in problems.values() else answer

    return poll(settled, HEALTH_TIMEOUT) or ask()


def answers_health(base_url: str) -> bool:
    """Whether /healthz says 200 (connection errors count as no)."""
    return poll(lambda: http("GET", f"{base_url}/healthz", timeout=1).status == 200, HEALTH_TIMEOUT) is True


DATABASE_ADMIN = """
import sys
import psycopg
from psycopg import sql

url, action, name = sys.argv[1:]
with psycopg.connect(url, autocommit=True) as connection:
    if action == "create":
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    else:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
"""


@contextlib.contextmanager
def fresh_database(installed: InstalledService, server_url: str, workdir: Path) -> Iterator[str]:
    """A new, empty database on the server of `server_url`; yields its platform-style URL, then drops it."""
    name = f"tf_acceptance_{uuid.uuid4().hex[:12]}"
    python = installed.bin / "python"
    assert_succeeded(run([python, "-c", DATABASE_ADMIN, server_url, "create", name], cwd=workdir, timeout=60))
    try:
        server = urlsplit(server_url)
        password = quote(server.password or AWKWARD_PASSWORD, safe="")
        user = server.username or "postgres"
        yield f"postgres://{user}:{password}@{server.hostname}:{server.port or 5432}/{name}"
    finally:
        assert_succeeded(
            run([python, "-c", DATABASE_ADMIN, server_url, "drop", name], cwd=workdir, timeout=60)
        )


REDIS_ADMIN = """
import sys
import redis

url, action, token = sys.argv[1:4]
claims = redis.Redis.from_url(url, db=0)
if action == "claim":
    for number in range(1, 16):
        if claims.set(f"twelvefactor-test-claim:{number}", token, nx=True, ex=3600):
            redis.Redis.from_url(url, db=number).flushdb()
            print(number)
            break
    else:
        sys.exit("every Redis database 1-15 is claimed by another test run")
else:
    number = int(sys.argv[4])
    redis.Redis.from_url(url, db=number).flushdb()
    claims.delete(f"twelvefactor-test-claim:{number}")
"""


@contextlib.contextmanager
def own_redis_database(installed: InstalledService, server_url: str, workdir: Path) -> Iterator[str]:
    """A Redis database number no other test run holds, emptied before and after; yields its URL."""
    python = installed.bin / "python"
    token = secrets.token_hex(8)
    claim = run([python, "-c", REDIS_ADMIN, server_url, "claim", token], cwd=workdir, timeout=60)
    assert_succeeded(claim)
    number = claim.stdout.strip()
    server = urlsplit(server_url)
    try:
        yield server._replace(path=f"/{number}").geturl()
    finally:
        release: list[str | Path] = [python, "-c", REDIS_ADMIN, server_url, "release", token, number]
        assert_succeeded(run(release, cwd=workdir, timeout=60))
