"""The web process's side of the job queue: publish a message, and never let the broker stall a request."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.concurrency import run_in_threadpool

from ..models import OutboxJob
from . import outbox

logger = logging.getLogger(__name__)

# Seconds a readiness check waits for the broker to answer.
BROKER_CHECK_TIMEOUT = 2.0


class JobQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        # Load the broker's transport and client library now, at start-up, without connecting. Left to
        # the first request, the import took about 2 s on a busy machine: the first readiness check
        # missed its deadline and said the broker was unreachable.
        with celery.connection_for_write() as connection:
            _ = connection.transport

    async def enqueue(self, name: str, *args: Any) -> bool:
        """Publish a job; False (and a warning) if the broker is unreachable.

        Publishing blocks on the network, so it runs in a worker thread (which inherits the request id).
        """
        try:
            await run_in_threadpool(self.celery.send_task, name, args=list(args))
        except Exception as exc:  # kombu raises several unrelated classes for one broken broker
            logger.warning("Could not enqueue %s: %s", name, exc.__class__.__name__, extra={"job": name})
            return False
        return True

    async def publish(self, job: OutboxJob, engine: AsyncEngine) -> bool:
        """Publish a job recorded in the outbox, and record the outcome there (see jobs/outbox.py).

        Published, its row is deleted; not published, its row is made due for the clock's relay at once.
        If even that cannot be recorded (the database went away meanwhile), the row is left as it is and the
        relay takes it over after `outbox.FAST_PATH_GRACE`. The caller's request succeeds either way.
        """
        sent = await self.enqueue(job.task, *job.args)
        outcome = outbox.published(job.id) if sent else outbox.publish_failed(job.id)
        try:
            async with engine.begin() as connection:
                await connection.execute(outcome)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            logger.warning("Could not record the publish of job %d: %s", job.id, exc.__class__.__name__)
        return sent

    async def check(self) -> None:
        """Raise if the broker does not answer within BROKER_CHECK_TIMEOUT seconds."""
        await run_in_threadpool(self._connect)

    def _connect(self) -> None:
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_CHECK_TIMEOUT)
