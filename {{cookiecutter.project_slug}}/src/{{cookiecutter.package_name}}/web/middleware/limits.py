"""Request bodies larger than MAX_BODY_BYTES are refused (413) before more than that is read."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..responses import error_response

# The rest is discarded by the connection's lingering close (web/connections.py), within its bounds.
CLOSE = {"Connection": "close"}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.message = f"The request body is larger than {max_body_bytes} bytes."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and declared > self.max_body_bytes:
            await error_response(413, self.message, headers=CLOSE)(scope, receive, send)
            return
        if not chunked:
            # The server delivers exactly the declared length: nothing to count.
            await self.app(scope, receive, send)
            return
        await self.app(scope, self.counting(receive), send)

    def counting(self, receive: Receive) -> Receive:
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the endpoint's read; the error handlers turn it into the JSON 413.
                    raise HTTPException(413, self.message, headers=CLOSE)
            return message

        return receive_within_limit
