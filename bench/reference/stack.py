"""Bare Starlette with what any service on this stack loads: the floor for start-up and memory.

An async SQLAlchemy engine on asyncpg (not connected until used, as the service's) and a Celery app able to
publish, its broker transport loaded at start as any publisher's first send would load it. It answers
`/healthz` and nothing else: what the service adds beyond this is its own start-up and memory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from celery import Celery
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def asyncpg_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    engine = create_async_engine(asyncpg_url(os.environ["BENCH_DSN"]))
    celery = Celery("bench_stack", broker=os.environ["BENCH_BROKER_URL"], set_as_current=False)
    with celery.connection_for_write() as connection:
        _ = connection.transport
    try:
        yield {"engine": engine, "celery": celery}
    finally:
        celery.close()
        await engine.dispose()


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/healthz", healthz, methods=["GET"])], lifespan=lifespan)
