"""Publishing a job recorded in the outbox right after its commit (web and worker); the web's broker probe."""

from __future__ import annotations

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


def publish_recorded(celery: Celery, job: OutboxJob) -> Delete | Update:
    """Publish an outbox job; returns the statement recording the outcome (if it never runs, the relay
    takes the row over later)."""
    try:
        celery.send_task(job.task, args=job.args)
    except Exception as exc:  # kombu raises several unrelated classes for one broken broker
        logger.warning("Could not enqueue %s: %s", job.task, exc.__class__.__name__, extra={"job": job.task})
        return outbox.publish_failed(job.id)
    return outbox.published(job.id)


class JobQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        # Load the transport now: left to the first request, it failed a readiness check (bench/PROFILE.md).
        with celery.connection_for_write() as connection:
            _ = connection.transport

    async def publish(self, job: OutboxJob, engine: AsyncEngine) -> None:
        """Publish from a worker thread (it blocks), record the outcome; the request succeeds either way."""
        outcome = await run_in_threadpool(publish_recorded, self.celery, job)
        try:
            async with engine.begin() as connection:
                await connection.execute(outcome)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            logger.warning("Could not record the publish of job %d: %s", job.id, exc.__class__.__name__)

    async def check(self, timeout: float) -> None:
        await run_in_threadpool(probe_broker, self.celery, timeout)
