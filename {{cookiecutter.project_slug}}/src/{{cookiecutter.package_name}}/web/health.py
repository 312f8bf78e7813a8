"""Liveness and readiness, kept apart so a slow database never gets a healthy process restarted.

- `/healthz` (liveness): the process can serve HTTP. Touches nothing else.
- `/readyz` (readiness): the process can do useful work: the database answers with the schema this code
  expects, the job broker answers, and no stop has been requested. A load balancer should stop routing
  here while this says 503.
"""

from __future__ import annotations

import asyncio
import functools
import json

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .resources import Resources

# A readiness probe that hangs is worse than one that fails: answer within a probe's usual timeout.
CHECK_TIMEOUT_SECONDS = 2.0
# Bodies that never change while the process runs are encoded once, not per request.
ALIVE = b'{"status":"ok"}'


async def healthz(request: Request) -> Response:
    return Response(ALIVE, media_type="application/json")


async def version(request: Request) -> Response:
    """The release this process runs (factor V), so anyone can check what a deploy put live."""
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
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            revisions = await _schema_revisions(resources)
    except Exception as exc:  # any failure to ask is "not ready", never a 500
        problems["database"] = f"unreachable ({exc.__class__.__name__})"
    else:
        if (schema_problem := resources.schema.problem_with(revisions)) is not None:
            problems["schema"] = schema_problem
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await resources.jobs.check()
    except Exception as exc:
        problems["broker"] = f"unreachable ({exc.__class__.__name__})"

    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


async def _schema_revisions(resources: Resources) -> frozenset[str]:
    async with resources.engine.connect() as connection:
        has_table = await connection.run_sync(
            lambda sync_connection: sync_connection.dialect.has_table(sync_connection, "alembic_version")
        )
        if not has_table:
            return frozenset()
        rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return frozenset(row[0] for row in rows)
