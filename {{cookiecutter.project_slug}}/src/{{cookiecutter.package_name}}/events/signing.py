"""Signed events: HMAC-SHA256 of the raw body, id and timestamp included, with a secret both apps share."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

# `sha256=<hex digest of the raw body>`.
SIGNATURE_HEADER = "X-Event-Signature"
SCHEME = "sha256="


def sign(body: bytes, secret: str) -> str:
    return SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_signed(body: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """Whether `signature` is `body` signed with one of `secrets` (compared in constant time)."""
    if signature is None:
        return False
    return any(hmac.compare_digest(sign(body, secret), signature) for secret in secrets)
