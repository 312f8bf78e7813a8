"""The web process's side of the job queue: publish a message, and never let the broker stall a request."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from starlette.concurrency import run_in_threadpool

logger = logging.getLogger(__name__)

# Seconds a readiness check waits for the broker to answer.
BROKER_CHECK_TIMEOUT = 2.0


class JobQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    async def enqueue(self, name: str, *args: Any) -> bool:
        """Publish a job; False (and a warning) if the broker is unreachable.

        Publishing blocks on the network, so it runs in a worker thread (which inherits the request id).
        A job that could not be published is not lost: its item stays pending and the clock enqueues it.
        """
        try:
            await run_in_threadpool(self.celery.send_task, name, args=list(args))
        except Exception as exc:  # kombu raises several unrelated classes for one broken broker
            logger.warning("Could not enqueue %s: %s", name, exc.__class__.__name__, extra={"job": name})
            return False
        return True

    async def check(self) -> None:
        """Raise if the broker does not answer within BROKER_CHECK_TIMEOUT seconds."""
        await run_in_threadpool(self._connect)

    def _connect(self) -> None:
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_CHECK_TIMEOUT)
