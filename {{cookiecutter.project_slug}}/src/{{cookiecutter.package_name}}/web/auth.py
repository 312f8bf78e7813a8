"""Routes guarded by bearer tokens: reads need `items:read`, writes `items:write` (see web/tokens.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from ..logs import subject

if TYPE_CHECKING:
    from ..settings import AuthSettings
    from .tokens import Authenticator

READ = "items:read"
WRITE = "items:write"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Endpoint = Callable[[Request], Awaitable[Response]]


@asynccontextmanager
async def authentication(settings: AuthSettings, realm: str) -> AsyncIterator[Authenticator | None]:
    """The web process's authenticator, None with API_OPEN=true; its HTTP client closes on exit.

    A service run open never loads the JOSE library and the HTTP client (start-up: bench/PROFILE.md)."""
    if settings.issuer is None or settings.audience is None:
        yield None
        return
    import httpx2

    from .issuer import IssuerKeys
    from .tokens import Authenticator

    async with httpx2.AsyncClient() as client:
        yield Authenticator(IssuerKeys(settings.issuer, client), settings.audience, realm)


def requires(endpoint: Endpoint, *, read: str = READ, write: str = WRITE) -> Endpoint:
    """`endpoint`, callable only with a token holding `read` (GET, HEAD) or `write` (any other method)."""

    async def guarded(request: Request) -> Response:
        authenticator: Authenticator | None = request.state.resources.authenticator
        if authenticator is not None:
            needed = read if request.method in SAFE_METHODS else write
            principal = await authenticator.principal(request, needed)
            # The access log line and the jobs this request enqueues carry it.
            subject.set(principal.subject)
        return await endpoint(request)

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    return guarded
