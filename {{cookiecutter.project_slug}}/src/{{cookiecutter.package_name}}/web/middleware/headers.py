"""Security headers on every response, errors included, added in one cheap step per response.

The service serves JSON, never pages, so the policy is the strictest one: nothing may frame it, embed it
or guess its content type. HSTS is sent only on requests that arrived over HTTPS: uvicorn sets the scheme
from X-Forwarded-Proto, and only for the proxies in FORWARDED_ALLOW_IPS, so a client cannot fake it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # Browsers must not reinterpret a JSON body as HTML or script.
    (b"x-content-type-options", b"nosniff"),
    # A link followed from a response leaks no URL (ids, cursors) to another site.
    (b"referrer-policy", b"no-referrer"),
    # No site may frame a response (clickjacking): the modern header, and the legacy one for old browsers.
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
)
# One year, the value browsers' preload lists ask for; sent only over HTTPS, where it means something.
STRICT_TRANSPORT_SECURITY = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
SECURITY_HEADERS_OVER_HTTPS = (*SECURITY_HEADERS, STRICT_TRANSPORT_SECURITY)


def security_headers(scheme: str) -> tuple[tuple[bytes, bytes], ...]:
    """The headers for a response to a request that arrived with `scheme` (http or https)."""
    return SECURITY_HEADERS_OVER_HTTPS if scheme == "https" else SECURITY_HEADERS


class SecurityHeadersMiddleware:
    """Appends `security_headers()` to every HTTP response that passes through it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["scheme"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
