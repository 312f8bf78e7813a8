"""Publishing a job recorded in the outbox right after its commit (web and worker); the web's broker probe."""

from __future__ import annotations

import asyncio
import contextvars
import logging

from celery import Celery
from sqlalchemy import Delete, Update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.concurrency import run_in_threadpool

from ..models import OutboxJob
from . import outbox
from .celery_app import probe_broker

logger = logging.getLogger(__name__)

# Far inside outbox.FAST_PATH_GRACE: the relay never sees the row of a job the broker has.
DELETE_DELAY_SECONDS = 0.1
# Bound parameters in one statement: well under any driver's limit.
MAX_DELETE_BATCH = 500
DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


def try_publish(celery: Celery, job: OutboxJob) -> bool:
    """Publish an outbox job; False (and a warning) if the broker did not take it."""
    try:
        celery.send_task(job.task, args=job.args)
    except Exception as exc:  # kombu raises several unrelated classes for one broken broker
        logger.warning("Could not enqueue %s: %s", job.task, exc.__class__.__name__, extra={"job": job.task})
        return False
    return True


def publish_recorded(celery: Celery, job: OutboxJob) -> Delete | Update:
    """Publish an outbox job; returns the statement recording the outcome (if it never runs, the relay
    takes the row over later)."""
    if try_publish(celery, job):
        return outbox.published([job.id])
    return outbox.publish_failed(job.id)


class PublishedJobs:
    """Deletes the outbox rows of published jobs together, one statement per batch, soon after."""

    def __init__(self, engine: AsyncEngine, delay: float) -> None:
        self.engine = engine
        self.delay = delay
        self.job_ids: list[int] = []
        self.timer: asyncio.TimerHandle | None = None
        self.deleting: set[asyncio.Task[None]] = set()

    def add(self, job_id: int) -> None:
        self.job_ids.append(job_id)
        if len(self.job_ids) >= MAX_DELETE_BATCH:
            self._start_delete()
        elif self.timer is None:
            # A context of its own: the batch's log lines belong to no single request.
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.delay, self._start_delete, context=contextvars.Context())

    def _start_delete(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        task = asyncio.get_running_loop().create_task(self.delete(), context=contextvars.Context())
        # The loop keeps only weak references to tasks.
        self.deleting.add(task)
        task.add_done_callback(self.deleting.discard)

    async def delete(self) -> None:
        job_ids, self.job_ids = self.job_ids, []
        if not job_ids:
            return
        try:
            async with self.engine.begin() as connection:
                await connection.execute(outbox.published(job_ids))
        except DATABASE_ERRORS as exc:
            # The relay publishes them again after the grace: a job runs twice, harmlessly.
            failure = exc.__class__.__name__
            logger.warning("Could not record the publish of %d jobs: %s", len(job_ids), failure)

    async def close(self) -> None:
        """Delete what is pending now: at shutdown, after the last request."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        await asyncio.gather(*self.deleting)
        await self.delete()


class JobQueue:
    def __init__(self, celery: Celery, engine: AsyncEngine) -> None:
        self.celery = celery
        self.engine = engine
        self.published = PublishedJobs(engine, DELETE_DELAY_SECONDS)
        # Load the transport now: left to the first request, it failed a readiness check (bench/PROFILE.md).
        with celery.connection_for_write() as connection:
            _ = connection.transport

    async def publish(self, job: OutboxJob) -> None:
        """Publish from a worker thread (it blocks), record the outcome; the request succeeds either way."""
        if await run_in_threadpool(try_publish, self.celery, job):
            self.published.add(job.id)
            return
        try:
            async with self.engine.begin() as connection:
                await connection.execute(outbox.publish_failed(job.id))
        except DATABASE_ERRORS as exc:
            logger.warning("Could not record the publish of job %d: %s", job.id, exc.__class__.__name__)

    async def close(self) -> None:
        await self.published.close()

    async def check(self, timeout: float) -> None:
        await run_in_threadpool(probe_broker, self.celery, timeout)
