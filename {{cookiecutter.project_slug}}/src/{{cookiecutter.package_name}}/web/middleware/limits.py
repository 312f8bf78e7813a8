"""Request bodies larger than MAX_BODY_BYTES are refused (413) before more than that is read."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from ..responses import error_response

# The rest is discarded by the connection's lingering close (web/connections.py), within its bounds.
CLOSE = {"Connection": "close"}


class BodyLimit:
    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.message = f"The request body is larger than {max_body_bytes} bytes."

    def refusal(self, scope: Scope) -> Response | None:
        """The 413 for a declared length over the limit, before any of the body is read."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return error_response(413, self.message, headers=CLOSE)
        return None

    def receive(self, scope: Scope, receive: Receive) -> Receive:
        """`receive`, counting a chunked body: the server delivers exactly a declared length."""
        if any(name == b"transfer-encoding" for name, _ in scope["headers"]):
            return self.counting(receive)
        return receive

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
