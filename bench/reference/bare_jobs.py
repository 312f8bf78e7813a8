"""Bare Starlette and bare Celery doing the service's job work: the fair reference for jobs.

`POST /items` inserts the row (one autocommitted statement on an asyncpg pool) and publishes the task from
a worker thread, as the service does; the task locks the row, computes the digest and updates the row in
one transaction on psycopg, the work of the service's `items.process`. Same delivery guarantees as the
service (acks late, prefetch 1, JSON, no results). What is left between the two is what the service adds:
the outbox row and its delete, the publish record, the event check, request-id propagation.

Web: `uvicorn bench.reference.bare_jobs:web`; worker: `celery -A bench.reference.bare_jobs worker -c 2`;
both with BENCH_DSN and BENCH_BROKER_URL set.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import asyncpg
import psycopg
from celery import Celery
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .bare_celery import guaranteed_app

QUEUE = "bench_jobs"
TASK = "bench.process_item"
# The service's web writes through a pool of DB_POOL_SIZE = 10 connections by default.
POOL_SIZE = 10
INSERT_ITEM = "INSERT INTO items (name, status) VALUES ($1, 'pending') RETURNING id"
LOCK_ITEM = "SELECT name, status FROM items WHERE id = %s FOR UPDATE"
FINISH_ITEM = "UPDATE items SET digest = %s, status = 'done', updated_at = now() WHERE id = %s"


def create_app(broker_url: str) -> Celery:
    app = guaranteed_app("bench_jobs", QUEUE, broker_url)
    app.task(name=TASK)(process_item)
    return app


@cache
def database() -> psycopg.Connection[Any]:
    # Made on first use, so each pool process (forked from the worker) opens its own connection.
    return psycopg.connect(os.environ["BENCH_DSN"])


def process_item(item_id: int) -> None:
    connection = database()
    with connection.transaction():
        row = connection.execute(LOCK_ITEM, (item_id,)).fetchone()
        if row is None or row[1] == "done":
            return
        digest = hashlib.sha256(row[0].encode()).hexdigest()
        connection.execute(FINISH_ITEM, (digest, item_id))


# The worker's `-A` finds the app here; nothing is connected until a task is sent or received.
app = create_app(os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"))


@asynccontextmanager
async def lifespan(web: Starlette) -> AsyncIterator[dict[str, Any]]:
    pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


async def create_item(request: Request) -> JSONResponse:
    name = (await request.json())["name"]
    async with request.state.pool.acquire() as connection:
        item_id = await connection.fetchval(INSERT_ITEM, name)
    # After the insert, so the worker finds the row.
    await run_in_threadpool(app.send_task, TASK, args=[item_id])
    return JSONResponse({"id": item_id}, status_code=201)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


web = Starlette(
    routes=[Route("/items", create_item, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])],
    lifespan=lifespan,
)
