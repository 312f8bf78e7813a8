"""Bare Starlette reading one item by primary key with raw asyncpg: the ceiling for GET /items/{id}.

It reads the same table of the same database as the service, and answers the same JSON fields, so the
difference between the two is what the service's own layers (SQLAlchemy, middleware, logging) cost.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# The service reads through a pool of DB_POOL_SIZE = 10 connections by default: the same budget here.
POOL_SIZE = 10
READ_ITEM = "SELECT id, name, status, digest, created_at, updated_at FROM items WHERE id = $1"


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


async def get_item(request: Request) -> JSONResponse:
    async with request.state.pool.acquire() as connection:
        row = await connection.fetchrow(READ_ITEM, request.path_params["item_id"])
    if row is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    return JSONResponse(
        {
            "id": row["id"],
            "name": row["name"],
            "status": row["status"],
            "digest": row["digest"],
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }
    )


app = Starlette(routes=[Route("/items/{item_id:int}", get_item, methods=["GET"])], lifespan=lifespan)
