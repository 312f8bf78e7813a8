"""Factors VIII and IX: the worker and clock process types, and how a worker stops without losing a job.

On SIGTERM a worker finishes the jobs in hand; at GRACEFUL_TIMEOUT, before SIGKILL, it requeues the rest.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import billiard.pool
import celery.apps.worker
import celery.worker.state
from celery import Celery, signals
from sqlalchemy import Connection, Engine

from .. import telemetry  # drop: telemetry
from ..database import create_sync_database_engine
from ..events import jobs as events  # drop: events
from ..logs import configure_logging
from ..models import Item, OutboxJob
from ..settings import Settings
from . import tasks
from .celery_app import (
    RETRIED_WHILE_DATABASE_IS_DOWN,
    create_celery,
    declare_embedded_queue,
    propagate_request_context,
)
from .publish import publish_recorded
from .relay import OutboxRelay
from .tasks import Announce

logger = logging.getLogger(__name__)

RELAY_STOP_TIMEOUT = 5.0
# The file descriptor, whatever sys.stdout has been replaced with.
STDOUT = 1
STOP_SIGNALS = frozenset({"SIGTERM", "SIGQUIT", "SIGINT"})
# 0.1 s turns; billiard's 300 can outlast the platform's kill in a warm shutdown.
RESULT_READ_TURNS = 10


def register_jobs(app: Celery, engine: Engine, announce: Announce | None = None) -> None:
    """Bind jobs/tasks.py to message names; `announce` records that an item is done (events, when on)."""

    def process_item(item_id: int) -> None:
        recorded: list[OutboxJob] = []
        with engine.begin() as connection:
            done = tasks.process_item(
                connection, item_id, None if announce is None else kept(announce, recorded)
            )
        for job in recorded:
            recording = publish_recorded(app, job)
            # If this fails, the relay takes the row over later.
            with engine.begin() as connection:
                connection.execute(recording)
        outcome = "done" if done else "already done, or gone"
        logger.info("Item %d: %s", item_id, outcome, extra={"item_id": item_id})

    app.task(name=tasks.PROCESS_ITEM, **RETRIED_WHILE_DATABASE_IS_DOWN)(process_item)


def kept(announce: Announce, recorded: list[OutboxJob]) -> Announce:
    """`announce`, keeping the jobs it records, to publish them after the commit."""

    def announce_and_keep(connection: Connection, item: Item) -> OutboxJob:
        job = announce(connection, item)
        recorded.append(job)
        return job

    return announce_and_keep


def use_service_logging(settings: Settings) -> None:
    """A receiver on `setup_logging` keeps Celery from configuring logging of its own."""

    def configure(**_: Any) -> None:
        configure_logging(settings.logs.level, settings.logs.format, settings.release_id)

    signals.setup_logging.connect(configure, weak=False, dispatch_uid="use_service_logging")


def announce_in_log_format() -> None:
    """Celery prints shutdown notices as bare text: log them, with one `os.write` (in a signal handler)."""
    formatter = logging.getLogger().handlers[0].formatter or logging.Formatter()

    def say(message: str, stream: Any = None) -> None:
        record = logging.makeLogRecord(
            {
                "name": "celery.apps.worker",
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": message.strip(),
            }
        )
        os.write(STDOUT, (formatter.format(record) + "\n").encode())

    celery.apps.worker.safe_say = say


def stop_when_idle_or_at_deadline(worker: Any, grace_seconds: float) -> threading.Timer:
    """Warm shutdown now, cold at the deadline (Celery's soft one would sleep it out: celery#9505)."""
    main_process = os.getpid()

    def cancel_what_still_runs() -> None:
        # Jobs all done, Celery only closing: a cold shutdown nested in those steps could deadlock.
        if not celery.worker.state.active_requests:
            return
        logger.warning("Jobs still running %g s after SIGTERM go back to the queue", grace_seconds)
        os.kill(main_process, signal.SIGQUIT)

    deadline = threading.Timer(grace_seconds, cancel_what_still_runs)
    deadline.daemon = True

    def start_deadline(_: Any) -> None:
        # A second SIGTERM (some supervisors repeat it) keeps the first deadline.
        if deadline.ident is None:
            deadline.start()

    # Celery's own installer: the usual notice, signal and stop flag.
    celery.apps.worker._shutdown_handler(worker, sig="SIGTERM", how="Warm", callback=start_deadline)
    return deadline


def worker_class(app: Celery, grace_seconds: float) -> Any:
    """Installs the handler above right after Celery's own: no gap."""

    class Worker(app.Worker):  # type: ignore[misc]
        deadline: threading.Timer | None = None

        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            self.deadline = stop_when_idle_or_at_deadline(worker, grace_seconds)

    return Worker


def run_worker(settings: Settings) -> int:
    """`{{ cookiecutter.project_slug }} worker`: run jobs until stopped; returns the exit code."""
    billiard.pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_LIMIT = RESULT_READ_TURNS
    engine = create_sync_database_engine(settings)
    app = create_celery(settings)
    declare_embedded_queue(app, settings)
    register_jobs(
        app,
        engine,
        announce=events.serve_in_worker(app, engine, settings.events),  # drop: events
    )
    use_service_logging(settings)
    announce_in_log_format()
    propagate_request_context()
    # Connections must not cross a fork.
    signals.worker_process_init.connect(lambda **_: engine.dispose(close=False), weak=False)
    telemetry.start_worker(settings, app, engine)  # drop: telemetry
    worker = worker_class(app, float(settings.graceful_timeout))(
        concurrency=settings.jobs.concurrency,
        loglevel=logging.getLevelName(settings.logs.level),
        # No banner: stdout carries log events only.
        quiet=True,
        # Workers need no knowledge of each other: a faster start, less broker chatter.
        without_mingle=True,
        without_gossip=True,
    )
    stop_requests: list[str] = []
    signals.worker_shutting_down.connect(lambda sig, **_: stop_requests.append(sig), weak=False)
    worker.start()
    if worker.deadline is not None:
        worker.deadline.cancel()
    engine.dispose()
    # A stop the platform asked for is a clean exit, even a cold one.
    if stop_requests and stop_requests[0] in STOP_SIGNALS:
        return 0
    return int(worker.exitcode or 0)


def run_clock(settings: Settings) -> None:
    """`{{ cookiecutter.project_slug }} clock`: periodic jobs and the outbox relay (jobs/relay.py).

    Run one; a second is harmless.
    """
    app = create_celery(settings)
    use_service_logging(settings)
    propagate_request_context()
    telemetry.start_tracing(settings)  # drop: telemetry
    # Beat's SIGTERM handler raises SystemExit anywhere: import Celery's lazy parts now, not mid-import.
    with app.connection_for_write() as connection:
        _ = app.amqp.Producer, connection.transport
    engine = create_sync_database_engine(settings)
    relay = OutboxRelay(engine, app)
    relay.start()
    try:
        app.Beat(loglevel=logging.getLevelName(settings.logs.level), quiet=True).run()
    finally:
        relay.stop(RELAY_STOP_TIMEOUT)
        engine.dispose()
