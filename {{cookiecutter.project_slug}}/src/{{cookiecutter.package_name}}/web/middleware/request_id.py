"""Pure ASGI middleware: a request id on every request, and one access-log line per request.

Not Starlette's BaseHTTPMiddleware, which costs throughput and tail latency (bench/PROFILE.md).
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...logs import request_id, subject

access_log = logging.getLogger(f"{__name__.partition('.')[0]}.web.access")

REQUEST_ID_HEADER = "x-request-id"
RAW_REQUEST_ID_HEADER = REQUEST_ID_HEADER.encode()
# Short and printable: a caller's id cannot forge or break log lines.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, quiet_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        # Logging each probe would drown the stream.
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = next((value for name, value in scope["headers"] if name == RAW_REQUEST_ID_HEADER), b"")
        rid = incoming.decode("latin-1")
        if not VALID_REQUEST_ID.fullmatch(rid):
            # 128 random bits (a UUID4 has 122), cheaper than uuid4().
            rid = os.urandom(16).hex()
        token = request_id.set(rid)
        # The auth guard names the caller, if the route has one (web/auth.py).
        subject.set(None)
        started = time.perf_counter()
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (RAW_REQUEST_ID_HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            if scope["path"] not in self.quiet_paths:
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
        # Only on success: the 500 handler and the server's traceback, run after this, need the id.
        request_id.reset(token)
