"""Two baked services attached to each other by URL, for tests/test_events.py.

A and B are the same installed bake run twice, each with its own database (on the shared PostgreSQL) and
its own private redis-server: A sends `item.done` events to B's POST /events with a shared secret.
`ScriptedReceiver` stands in for B when a test needs B to answer something B would not (a 500, a 400).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fault_support import sql
from processes import answers_health, free_port, poll, process_group
from support import InstalledService, assert_succeeded, clean_environment, run

SECRET_KEY = "events-test-secret-key-" + "k" * 32
EVENTS_SECRET = "events-test-shared-secret-" + "e" * 32
STARTUP = 120.0


@dataclasses.dataclass(frozen=True)
class App:
    """One of the two services: its database, Redis database and web port (fixed, so B can restart on it)."""

    name: str
    service: InstalledService
    database_url: str
    redis_url: str
    port: int
    folder: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/events"

    def env(self, **settings: str) -> dict[str, str]:
        return clean_environment(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            SECRET_KEY=SECRET_KEY,
            EVENTS_SECRET=EVENTS_SECRET,
            LOG_FORMAT="json",
            PORT=str(self.port),
            **settings,
        )

    def command(self, *arguments: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return run([self.service.script, *arguments], cwd=self.folder, env=self.env(**settings), timeout=120)

    def query(self, statement: str) -> list[list[Any]]:
        return sql(self.service, self.database_url, statement)

    @contextlib.contextmanager
    def running(self, command: str, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
        """`<slug> <command>` with this app's settings plus `settings`; killed at the end."""
        output = self.folder / f"{command}-{free_port()}.log"
        with process_group(
            [self.service.script, command], self.folder, self.env(**settings), output
        ) as process:
            if command == "web":
                assert answers_health(self.base_url), f"{self.name} web never answered:\n{output.read_text()}"
            if command == "worker":
                ready = poll(lambda: " ready." in output.read_text(errors="replace"), STARTUP)
                assert ready, f"{self.name} worker never said it was ready:\n{output.read_text()}"
            yield process

    @contextlib.contextmanager
    def formation(self, *, clock: bool = True, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
        """web and worker, and the clock unless `clock` is false; yields the worker.

        The worker publishes a first delivery itself; the clock's relay publishes the scheduled retries
        and re-drives, so a test of those needs it."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.running("web", **settings))
            worker = stack.enter_context(self.running("worker", **settings))
            if clock:
                stack.enter_context(self.running("clock", **settings))
            yield worker

    def migrate(self) -> None:
        assert_succeeded(self.command("migrate"))

    def truncate(self) -> None:
        self.query("TRUNCATE items, job_outbox, event_deliveries, received_events RESTART IDENTITY")


def signature(document: dict[str, Any], secret: str = EVENTS_SECRET) -> dict[str, str]:
    """The header that signs `document` as `processes.http` sends it (`json.dumps`), as a sender signs."""
    digest = hmac.new(secret.encode(), json.dumps(document).encode(), hashlib.sha256).hexdigest()
    return {"X-Event-Signature": f"sha256={digest}"}


class ScriptedReceiver:
    """An HTTP server on 127.0.0.1 that answers POSTs with scripted statuses (then `after`), and keeps
    every body it was sent."""

    def __init__(self, statuses: list[int], after: int = 200) -> None:
        self.statuses = statuses
        self.after = after
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.bodies.append(json.loads(body))
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.after
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def event_ids(self) -> list[str]:
        with self.lock:
            return [str(body["id"]) for body in self.bodies]


@contextlib.contextmanager
def scripted_receiver(statuses: list[int], after: int = 200) -> Iterator[ScriptedReceiver]:
    receiver = ScriptedReceiver(statuses, after)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
