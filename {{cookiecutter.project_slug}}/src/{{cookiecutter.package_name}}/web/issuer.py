"""Factor IV: the identity provider is attached by URL; its signing keys are discovered from that alone."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx2
from jwt import PyJWK
from jwt.exceptions import PyJWKError

logger = logging.getLogger(__name__)

# Forged key ids cannot make the service ask the issuer more often than this.
REFRESH_FLOOR = 5.0
# Keys the issuer has withdrawn stop being accepted within this.
MAX_AGE = 3600.0
# A request waits on a fetch at most this long; then it is a 503.
FETCH_TIMEOUT = httpx2.Timeout(3.0)
# Signing keys only: never a shared secret (`oct`), never an encryption key.
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class IssuerUnavailable(Exception):
    """No key for this token is cached, and the issuer cannot be asked."""


class IssuerKeys:
    def __init__(self, issuer: str, client: httpx2.AsyncClient) -> None:
        self.issuer = issuer
        self.client = client
        self.keys: dict[str, PyJWK] = {}
        self.jwks_uri: str | None = None
        self.fetched_at = -float("inf")
        self.tried_at = -float("inf")
        self.failing = False
        self.lock = asyncio.Lock()

    async def key(self, key_id: str) -> PyJWK | None:
        """The key named `key_id`, None if unpublished; IssuerUnavailable if uncached and unreachable."""
        if key_id not in self.keys or self.stale():
            try:
                await self.refresh()
            except IssuerUnavailable:
                # An outage must not log everyone out: a cached key still verifies.
                if key_id not in self.keys:
                    raise
        return self.keys.get(key_id)

    def stale(self) -> bool:
        return time.monotonic() - self.fetched_at > MAX_AGE

    async def refresh(self) -> None:
        # One fetch at a time; requests that waited for it find its result.
        async with self.lock:
            if time.monotonic() - self.tried_at < REFRESH_FLOOR:
                if self.failing:
                    raise IssuerUnavailable("the last fetch failed moments ago")
                return
            self.tried_at = time.monotonic()
            try:
                keys = await self.fetch()
            except (httpx2.HTTPError, ValueError, KeyError, TypeError) as exc:
                self.failing = True
                logger.warning("Could not fetch the issuer's keys: %s", exc.__class__.__name__)
                raise IssuerUnavailable(exc.__class__.__name__) from exc
            self.keys, self.failing, self.fetched_at = keys, False, self.tried_at

    async def fetch(self) -> dict[str, PyJWK]:
        if self.jwks_uri is None:
            self.jwks_uri = await self.discover()
        try:
            document = await self.get_json(self.jwks_uri)
        except httpx2.HTTPError:
            self.jwks_uri = None  # the issuer may have moved its keys: discover again next time
            raise
        return signing_keys(document["keys"])

    async def discover(self) -> str:
        metadata = await self.get_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        # OpenID Connect Discovery 1.0, section 4.3: anything else may be an impostor's document.
        if metadata["issuer"] != self.issuer:
            raise ValueError(f"the metadata names another issuer: {metadata['issuer']!r}")
        return str(metadata["jwks_uri"])

    async def get_json(self, url: str) -> Any:
        response = await self.client.get(url, timeout=FETCH_TIMEOUT)
        response.raise_for_status()
        return response.json()


def signing_keys(jwks: list[dict[str, Any]]) -> dict[str, PyJWK]:
    keys = {}
    for jwk in jwks:
        if jwk.get("kty") not in SIGNING_KEY_TYPES or jwk.get("use", "sig") != "sig" or "kid" not in jwk:
            continue
        try:
            keys[str(jwk["kid"])] = PyJWK(jwk)
        except PyJWKError as exc:
            logger.warning("Skipped the issuer's key %s: %s", jwk["kid"], exc)
    return keys
