"""Two baked services attached to each other by URL, for tests/test_events.py.

A and B are the same installed bake run twice, each with its own database (on the shared PostgreSQL) and
its own private redis-server: A sends `item.done` events to B's POST /events with a shared secret.
`ScriptedReceiver` stands in for B when a test needs B to answer something B would not (a 500, a 400).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fault_support import sql
from processes import answers_health, free_port, poll, process_group
from support import InstalledService, assert_succeeded, clean_environment, run

SECRET_KEY = "events-test-secret-key-" + "k" * 32
# Standard Webhooks: whsec_ and the base64 of 24 to 64 bytes (the service refuses anything else at start).
EVENTS_SECRET = "whsec_" + base64.b64encode(b"events-test-shared-secret-" + b"e" * 6).decode()
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
            API_OPEN="true",
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


def signature(
    event_id: str, document: dict[str, Any], secret: str = EVENTS_SECRET, timestamp: float | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers that sign `document` as `processes.http` sends it (`json.dumps`),
    as a sender signs: HMAC-SHA256 of "{id}.{timestamp}.{body}" keyed with the secret's bytes."""
    at = int(time.time() if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{event_id}.{at}.".encode() + json.dumps(document).encode()
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": event_id, "webhook-timestamp": str(at), "webhook-signature": f"v1,{digest}"}


class ScriptedReceiver:
    """An HTTP server on 127.0.0.1 that answers POSTs with scripted statuses (then `after`), and keeps
    every event id (the `webhook-id` header) and body it was sent."""

    def __init__(self, statuses: list[int], after: int = 200) -> None:
        self.statuses = statuses
        self.after = after
        self.bodies: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.bodies.append(json.loads(body))
                    receiver.ids.append(self.headers.get("webhook-id", ""))
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
            return list(self.ids)


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
