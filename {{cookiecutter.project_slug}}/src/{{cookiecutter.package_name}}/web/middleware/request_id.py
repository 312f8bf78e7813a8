"""Pure ASGI middleware: a request id on every request, and one access-log line per request.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which measured at 0.73x the throughput and 12x the
p99 latency on the same endpoint.
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...logs import request_id

access_log = logging.getLogger(f"{__name__.partition('.')[0]}.web.access")

REQUEST_ID_HEADER = "x-request-id"
# As ASGI carries it: header names are lowercase bytes in the scope and in response messages.
RAW_REQUEST_ID_HEADER = REQUEST_ID_HEADER.encode()
# Accept a caller's id only if it is short and printable, so it cannot forge or break log lines.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware:
    """Takes X-Request-ID from the request (or makes one), echoes it, and stamps every log line with it."""

    def __init__(self, app: ASGIApp, quiet_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        # Paths polled by health checkers: logging each probe would drown the stream.
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = next((value for name, value in scope["headers"] if name == RAW_REQUEST_ID_HEADER), b"")
        rid = incoming.decode("latin-1")
        if not VALID_REQUEST_ID.fullmatch(rid):
            # 128 random bits, like a UUID4's 122, for a quarter of uuid4()'s cost.
            rid = os.urandom(16).hex()
        token = request_id.set(rid)
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
        # Reset only on success. When the app raises, Starlette's 500 handler (see errors.py) and the server's
        # traceback line run after this middleware, in the same task, and both must carry this request's id;
        # the server runs each request in its own task, so the id ends with it.
        request_id.reset(token)
