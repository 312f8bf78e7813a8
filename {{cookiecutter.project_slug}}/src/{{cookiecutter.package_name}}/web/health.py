"""Liveness and readiness, kept apart so a slow database never gets a healthy process restarted."""

from __future__ import annotations

import asyncio
import functools
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..schema import current_revisions
from .resources import Resources

# A readiness probe that hangs is worse than one that fails: answer within a probe's usual timeout.
CHECK_TIMEOUT_SECONDS = 2.0
# Encoded once, not per request.
ALIVE = b'{"status":"ok"}'


async def healthz(request: Request) -> Response:
    return Response(ALIVE, media_type="application/json")


async def version(request: Request) -> Response:
    """Factor V: anyone can check what a deploy put live."""
    resources: Resources = request.state.resources
    return Response(release_body(resources.release_id), media_type="application/json")


@functools.cache
def release_body(release_id: str) -> bytes:
    return json.dumps({"release": release_id}, separators=(",", ":")).encode()


async def readyz(request: Request) -> JSONResponse:
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
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})
