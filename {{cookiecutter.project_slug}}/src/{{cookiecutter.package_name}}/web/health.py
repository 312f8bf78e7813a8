"""Liveness and readiness, kept apart so a slow database never gets a healthy process restarted."""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ..schema import current_revisions
from .resources import Resources
from .responses import ORJSONResponse

# A readiness probe that hangs is worse than one that fails: answer within a probe's usual timeout.
CHECK_TIMEOUT_SECONDS = 2.0
ALIVE = b'{"status":"ok"}'
JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class ConstantJSON:
    """An answer that never changes, encoded once: a bare ASGI endpoint, no Request or Response."""

    def __init__(self, body: bytes) -> None:
        self.headers = ((b"content-length", str(len(body)).encode()), JSON_CONTENT_TYPE)
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def healthz() -> ConstantJSON:
    """Liveness: the process answers, whatever its backing services do."""
    return ConstantJSON(ALIVE)


def version(release_id: str) -> ConstantJSON:
    """Factor V: anyone can check what a deploy put live."""
    return ConstantJSON(orjson.dumps({"release": release_id}))


async def readyz(request: Request) -> ORJSONResponse:
    resources: Resources = request.state.resources
    problems: dict[str, str] = {}
    if resources.draining.started:
        problems["process"] = "stopping"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), resources.engine.connect() as connection:
            revisions = await connection.run_sync(current_revisions)
    except Exception as exc:  # any failure to ask is "not ready", never a 500
        problems["database"] = f"unreachable ({exc.__class__.__name__})"
    else:
        if (schema_problem := resources.schema.problem_with(revisions)) is not None:
            problems["schema"] = schema_problem
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await resources.jobs.check(CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        problems["broker"] = f"unreachable ({exc.__class__.__name__})"

    if problems:
        return ORJSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return ORJSONResponse({"status": "ready"})
