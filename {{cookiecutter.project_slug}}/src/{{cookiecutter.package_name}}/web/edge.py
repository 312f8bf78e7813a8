"""The web edge: one pure-ASGI layer before the routes, running each concern (web/middleware/) in order.

A request id, then the allowed hosts and the body limit, either of which may refuse; every response,
refusals too, carries the request id and the security headers, and all but probes get an access line.
One layer, not one per concern: each costs a call and a `send` wrapper per request (bench/PROFILE.md).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import request_id, subject
from .middleware.headers import security_headers
from .middleware.hosts import AllowedHosts
from .middleware.limits import BodyLimit
from .middleware.request_id import RAW_REQUEST_ID_HEADER, log_access, request_id_of


class Edge:
    def __init__(
        self, app: ASGIApp, *, hosts: AllowedHosts, body_limit: BodyLimit, quiet_paths: frozenset[str]
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.body_limit = body_limit
        # Logging each probe would drown the stream.
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        token = request_id.set(rid)
        # The auth guard names the caller, if the route has one (web/auth.py).
        subject.set(None)
        started = time.perf_counter()
        added = ((RAW_REQUEST_ID_HEADER, rid.encode()), *security_headers(scope["scheme"]))
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        try:
            refusal = self.hosts.refusal(scope) or self.body_limit.refusal(scope)
            if refusal is None:
                await self.app(scope, self.body_limit.receive(scope, receive), send_with_headers)
            else:
                await refusal(scope, receive, send_with_headers)
        finally:
            if scope["path"] not in self.quiet_paths:
                log_access(scope, status, started)
        # Only on success: the 500 handler and the server's traceback, run after this, need the id.
        request_id.reset(token)
