"""Signed events between apps: HMAC-SHA256 over the raw request body, with a secret both apps share.

The body carries the event's id and timestamp, so the signature covers them too: a receiver that checks
the signature can trust the timestamp (to refuse stale replays) and the id (to refuse duplicates).
Rotation: sign with the current secret; verify against the current and the previous one, so both apps
can change secrets one at a time without losing an event.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

# The request header carrying the signature: `sha256=<hex digest of the raw body>`.
SIGNATURE_HEADER = "X-Event-Signature"
SCHEME = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`."""
    return SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_signed(body: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """Whether `signature` is `body` signed with one of `secrets` (compared in constant time)."""
    if signature is None:
        return False
    return any(hmac.compare_digest(sign(body, secret), signature) for secret in secrets)
