"""Security headers on every response, errors included: JSON, never pages, so the strictest policy.

HSTS only over HTTPS: uvicorn takes the scheme from X-Forwarded-Proto only from FORWARDED_ALLOW_IPS.
"""

from __future__ import annotations

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # Browsers must not reinterpret a JSON body as HTML or script.
    (b"x-content-type-options", b"nosniff"),
    # A link followed from a response leaks no URL (ids, cursors) to another site.
    (b"referrer-policy", b"no-referrer"),
    # No framing (clickjacking): the modern header, and the legacy one.
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
)
# One year, as browsers' preload lists ask.
STRICT_TRANSPORT_SECURITY = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
SECURITY_HEADERS_OVER_HTTPS = (*SECURITY_HEADERS, STRICT_TRANSPORT_SECURITY)


def security_headers(scheme: str) -> tuple[tuple[bytes, bytes], ...]:
    return SECURITY_HEADERS_OVER_HTTPS if scheme == "https" else SECURITY_HEADERS
