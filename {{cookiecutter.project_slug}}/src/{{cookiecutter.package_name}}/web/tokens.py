"""Bearer tokens (RFC 6750) verified with the issuer's published keys; loaded only when OIDC_ISSUER is set."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from jwt import PyJWK
from jwt.exceptions import InvalidTokenError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .issuer import REFRESH_FLOOR, IssuerKeys, IssuerUnavailable

# Clocks drift: a token a few seconds early or late is still accepted.
LEEWAY_SECONDS = 30
# Signatures by a key pair only; `none` and shared-secret (HS*) tokens are refused whatever the key says.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
# Tokens verified recently: a client sends the same one until it expires.
REMEMBERED_TOKENS = 1024


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Verified:
    """A token whose signature and claims held: good while its key is still published and it is in time."""

    principal: Principal
    key_id: str
    key: PyJWK
    not_before: float
    expires: float

    def in_time(self, now: float) -> bool:
        return self.not_before - LEEWAY_SECONDS <= now <= self.expires + LEEWAY_SECONDS


class Unauthorized(HTTPException):
    def __init__(
        self, status: int, message: str, realm: str, error: str | None = None, **params: str
    ) -> None:
        challenge = f'Bearer realm="{realm}"'
        if error is not None:
            challenge += f', error="{error}"'
        for name, value in params.items():
            challenge += f', {name}="{value}"'
        super().__init__(status, message, headers={"WWW-Authenticate": challenge})


class Authenticator:
    def __init__(self, keys: IssuerKeys, audience: str, realm: str) -> None:
        self.keys = keys
        self.audience = audience
        self.realm = realm
        # Verifying a signature is most of a guarded request's own cost (bench/PROFILE.md).
        self.verified: OrderedDict[str, Verified] = OrderedDict()

    async def principal(self, request: Request, needed: str) -> Principal:
        token = self.bearer_token(request)
        principal = await self.verify(token)
        if needed not in principal.scopes:
            raise Unauthorized(
                403, f"The token lacks the scope {needed}.", self.realm, "insufficient_scope", scope=needed
            )
        return principal

    def bearer_token(self, request: Request) -> str:
        header = request.headers.get("authorization")
        if header is None:
            raise Unauthorized(401, "A bearer token is required.", self.realm)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or " " in token.strip():
            # RFC 6750, section 3.1: a malformed request is a 400, not a 401.
            raise Unauthorized(
                400, "The Authorization header must be 'Bearer <token>'.", self.realm, "invalid_request"
            )
        return token.strip()

    async def verify(self, token: str) -> Principal:
        known = self.verified.pop(token, None)
        try:
            if known is None or not await self.still_valid(known):
                known = await self.verify_signature(token)
        except IssuerUnavailable:
            raise HTTPException(
                503,
                "The identity provider is unavailable; try again later.",
                headers={"Retry-After": str(int(REFRESH_FLOOR))},
            ) from None
        except InvalidTokenError as exc:
            raise Unauthorized(401, f"Invalid token: {exc}.", self.realm, "invalid_token") from None
        # Most recently used last; the least recently used goes first.
        self.verified[token] = known
        if len(self.verified) > REMEMBERED_TOKENS:
            self.verified.popitem(last=False)
        return known.principal

    async def still_valid(self, known: Verified) -> bool:
        """In time, and its key still the one the issuer publishes under its id (rotations drop it)."""
        return known.in_time(time.time()) and await self.keys.key(known.key_id) is known.key

    async def verify_signature(self, token: str) -> Verified:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise InvalidTokenError(f"algorithm {algorithm!r} is not accepted")
        key_id = str(header.get("kid", ""))
        key = await self.keys.key(key_id)
        if key is None:
            raise InvalidTokenError("signed by a key the issuer does not publish")
        if key.algorithm_name != algorithm:
            raise InvalidTokenError(f"the key is for {key.algorithm_name}, not {algorithm}")
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=self.audience,
            issuer=self.keys.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
        principal = Principal(subject=str(claims["sub"]), scopes=scopes_of(claims))
        return Verified(principal, key_id, key, float(claims.get("nbf", 0)), float(claims["exp"]))


def scopes_of(claims: Mapping[str, object]) -> frozenset[str]:
    """OAuth's space-separated `scope` (RFC 9068), or the list some issuers put in `scp`."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    listed = claims.get("scp")
    if isinstance(listed, list):
        return frozenset(str(name) for name in listed)
    return frozenset()
