"""Standard Webhooks signatures (https://www.standardwebhooks.com): one `v1,` HMAC-SHA256 per secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105 - the spec's marker, not a secret
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64
NEW_KEY_BYTES = 32
VERSION = "v1,"
# The receiver's primary key is 100 characters; a Unix time in seconds needs 10 digits until 2286.
MAX_ID_LENGTH = 100
MAX_TIMESTAMP_DIGITS = 12
HOW_TO_MAKE_ONE = "make one with `{{ cookiecutter.project_slug }} events secret`"


class Unsigned(Exception):
    """The request is not a message signed with one of the secrets; the message says what is wrong."""


@dataclass(frozen=True)
class SignedMessage:
    id: str
    timestamp: int


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(NEW_KEY_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for; ValueError says what is wrong with it."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"Must start with {SECRET_PREFIX}, then base64")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Some generators leave out the padding; the spec's libraries accept it either way.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"Must be valid base64 after {SECRET_PREFIX}") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"Must be the base64 of {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {len(key)}")
    return key


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return VERSION + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secrets: Iterable[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers that sign `body`, with one signature per secret (the current one first)."""
    signatures = " ".join(signature(key_of(secret), message_id, timestamp, body) for secret in secrets)
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signatures}


def verify(received: Mapping[str, str], body: bytes, secrets: Iterable[str]) -> SignedMessage:
    """The id and timestamp of a message signed with one of `secrets`; raises Unsigned otherwise."""
    message_id = received.get(ID_HEADER, "")
    timestamp = received.get(TIMESTAMP_HEADER, "")
    offered = received.get(SIGNATURE_HEADER, "").split()
    if not message_id or not timestamp or not offered:
        raise Unsigned(f"Missing {ID_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}.")
    if len(message_id) > MAX_ID_LENGTH or not message_id.isprintable():
        raise Unsigned(f"{ID_HEADER} must be 1 to {MAX_ID_LENGTH} printable characters.")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > MAX_TIMESTAMP_DIGITS:
        raise Unsigned(f"{TIMESTAMP_HEADER} must be a Unix time in seconds.")
    # Bytes: compare_digest refuses str with non-ASCII characters, which a header may hold.
    candidates = [entry.encode() for entry in offered if entry.startswith(VERSION)]
    for secret in secrets:
        expected = signature(key_of(secret), message_id, int(timestamp), body).encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return SignedMessage(message_id, int(timestamp))
    raise Unsigned(f"No {SIGNATURE_HEADER} matches the secret.")
