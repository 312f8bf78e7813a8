"""A bare Celery task round trip on the same Redis: the ceiling for the service's jobs.

The task only counts itself in Redis. The app shares the service's delivery guarantees (acknowledge after
the task ran, one message reserved per pool process, JSON, no result backend), because the service will not
trade them for speed; what remains between the two is the service's own work per job (an HTTP request, a
database insert, a locked update).

Worker: `python -m celery -A bench.reference.bare_celery worker -c 2`, with BENCH_BROKER_URL set.
"""

from __future__ import annotations

import os
from functools import cache

import redis
from celery import Celery

QUEUE = "bench_bare"
TASK = "bench.count"


def guaranteed_app(name: str, queue: str, broker_url: str) -> Celery:
    """A bare Celery app with the service's delivery guarantees, publishing to and consuming `queue`."""
    app = Celery(name, broker=broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )
    return app


def create_app(broker_url: str) -> Celery:
    app = guaranteed_app("bench_bare", QUEUE, broker_url)
    app.task(name=TASK)(count)
    return app


@cache
def counter() -> redis.Redis:
    # Made on first use, so each pool process (forked from the worker) opens its own connection.
    return redis.Redis.from_url(os.environ["BENCH_BROKER_URL"])


def count(key: str) -> None:
    counter().incr(key)


# The worker's `-A` finds the app here; nothing is connected until a task is sent or received.
app = create_app(os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"))
