"""The outbox relay: publishes the jobs the web could not, for as long as it takes.

A thread of the clock, not a Celery job: it must keep working while the broker is down.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..logs import request_id
from ..models import OutboxJob
from . import outbox

logger = logging.getLogger(__name__)

# The most a due job waits, beyond its backoff, to be relayed.
POLL_SECONDS = 1.0
FAILED_ROUND_PAUSE_SECONDS = 5.0


class OutboxRelay:
    def __init__(self, engine: Engine, celery: Celery) -> None:
        self.engine = engine
        self.celery = celery
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                pause = self.relay_once()
            except Exception:  # a bug, not an outage: log it, and keep relaying the jobs that can be
                logger.exception("Outbox relay round failed")
                pause = FAILED_ROUND_PAUSE_SECONDS
            self._stopping.wait(pause)

    def relay_once(self) -> float:
        """One round; returns how long to wait before the next."""
        try:
            with Session(self.engine) as session, session.begin():
                round_ = outbox.relay_due_jobs(session, self.publish)
        except SQLAlchemyError as exc:
            logger.warning("Outbox relay: database unavailable (%s)", exc.__class__.__name__)
            return FAILED_ROUND_PAUSE_SECONDS
        if round_.published:
            logger.info("Relayed %d jobs from the outbox", round_.published, extra={"jobs": round_.published})
        if round_.postponed:
            postponed = round_.postponed
            logger.warning(
                "Broker unavailable: %d outbox jobs postponed", postponed, extra={"postponed": postponed}
            )
        # A full batch sent means more may be due right now.
        return 0.0 if round_.published == outbox.RELAY_BATCH else POLL_SECONDS

    def publish(self, job: OutboxJob) -> None:
        # The recording request's id, as on the fast path.
        token = request_id.set(job.request_id)
        try:
            self.celery.send_task(job.task, args=job.args)
        finally:
            request_id.reset(token)
