"""Factors VIII and IX: the worker and clock process types, and how a worker stops without losing a job.

`run_worker(settings)` is `<slug> worker`: it consumes the messages that the web process and the clock
publish through the shared Celery app (jobs/celery_app.py). `run_clock(settings)` is `<slug> clock`.

Shutdown (factor IX): platforms send SIGTERM, then SIGKILL 30 s later, often to every process of the
container at once. On SIGTERM the worker stops taking messages and makes a *warm shutdown*: it exits as
soon as the jobs in hand are done (2-3 s after the last one: Celery's own closing steps). A timer started
by the same SIGTERM escalates to Celery's *cold shutdown* at `GRACEFUL_TIMEOUT`: jobs still running then
are cancelled and, because messages are acknowledged only after their job ran, go back to the queue for
the next worker. Nothing waits for SIGKILL, and nothing is lost. (Celery's own soft shutdown is not used:
it sleeps the whole timeout once any job is in hand, even one that finishes in milliseconds; celery#9505.)

`<slug> worker` sets `REMAP_SIGTERM=SIGQUIT` (see cli.py) for the pool processes: they ignore the
SIGTERM a platform sends to the whole container, so a job in hand finishes instead of dying with it, and
Celery cancels a job with SIGQUIT instead.
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
from sqlalchemy import Delete, Engine, Update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from ..database import create_sync_database_engine
from ..events import outgoing as events
from ..logs import configure_logging
from ..models import OutboxJob
from ..settings import Settings
from ..telemetry import log_filters
from . import outbox, tasks
from .celery_app import create_celery, propagate_request_ids
from .relay import OutboxRelay

logger = logging.getLogger(__name__)

# A job that fails because the database is unreachable is retried after 1, 2, 4... s, at most this long
# apart, and never given up: it is idempotent, and the alternative is an item left pending for good.
DATABASE_RETRY_MAX_SECONDS = 10
# Seconds the clock gives its outbox relay to finish a round when it stops.
RELAY_STOP_TIMEOUT = 5.0
# File descriptor of the process's stdout, whatever Python's sys.stdout has been replaced with.
STDOUT = 1
# Signals by which a platform (or a person at a terminal) asks a worker to stop.
STOP_SIGNALS = frozenset({"SIGTERM", "SIGQUIT", "SIGINT"})
# A stopping pool process waits this many 0.1 s turns for the main process to read its last result.
# billiard's 300 (30 s) can outlast the platform's kill: in a warm shutdown Celery may drop from its books
# a job the pool process had not yet confirmed taking, so nobody reads that job's result, and the main
# process waits for the pool process in turn. (The job, never acknowledged, goes back to the queue, and its
# second run finds its work done.) A result being read takes milliseconds.
RESULT_READ_TURNS = 10


def register_jobs(app: Celery, engine: Engine, settings: Settings) -> events.Delivery:
    """Bind the jobs in jobs/tasks.py to Celery message names, each in its own database transaction.

    A job that raises is acknowledged and forgotten by Celery, so one that fails because the database is
    unreachable (OperationalError, InterfaceError) is published again, with a growing delay, instead.
    """

    retried_while_database_is_down = {
        "autoretry_for": (OperationalError, InterfaceError),
        "retry_backoff": True,
        "retry_backoff_max": DATABASE_RETRY_MAX_SECONDS,
        "max_retries": None,
    }
    announce = settings.events_url is not None

    def process_item(item_id: int) -> None:
        with Session(engine, expire_on_commit=False) as session:
            with session.begin():
                done = tasks.process_item(session, item_id, announce)
                # The jobs this transaction recorded (the item's event): published after the commit.
                recorded = [row for row in session.new if isinstance(row, OutboxJob)]
            for job in recorded:
                publish_recorded(app, session, job)
        outcome = "done" if done else "already done, or gone"
        logger.info("Item %d: %s", item_id, outcome, extra={"item_id": item_id})

    def handle_event(event_id: str) -> None:
        with Session(engine) as session, session.begin():
            handled = tasks.handle_event(session, event_id)
        outcome = "handled" if handled else "already handled, or gone"
        logger.info("Received event %s: %s", event_id, outcome, extra={"event_id": event_id})

    delivery = events.Delivery(engine, settings)
    app.task(name=tasks.PROCESS_ITEM, **retried_while_database_is_down)(process_item)
    app.task(name=tasks.HANDLE_EVENT, **retried_while_database_is_down)(handle_event)
    app.task(name=events.DELIVER_EVENT, **retried_while_database_is_down)(delivery.deliver)
    return delivery


def publish_recorded(app: Celery, session: Session, job: OutboxJob) -> None:
    """The worker's fast path for a job it recorded in the outbox, like the web's (see jobs/publish.py):
    published, its row is deleted; not published, it is made due for the clock's relay at once."""
    outcome: Delete | Update
    try:
        app.send_task(job.task, args=job.args)
    except Exception as exc:  # kombu raises several unrelated classes for one broken broker
        logger.warning("Could not enqueue %s: %s", job.task, exc.__class__.__name__, extra={"job": job.task})
        outcome = outbox.publish_failed(job.id)
    else:
        outcome = outbox.published(job.id)
    # If even this fails, the row stays and the relay takes it over after outbox.FAST_PATH_GRACE.
    with session.begin():
        session.execute(outcome)


def use_service_logging(settings: Settings) -> None:
    """With a receiver on `setup_logging`, Celery configures no logging of its own: one stream, one format."""

    def configure(**_: Any) -> None:
        configure_logging(settings.log_level, settings.log_format, settings.release_id, log_filters(settings))

    signals.setup_logging.connect(configure, weak=False, dispatch_uid="use_service_logging")


def announce_in_log_format() -> None:
    """Celery's signal handlers print notices ("worker: Cold shutdown") as bare text on stdout.

    Replace that printer so each notice is an event in the service's log format, like every other line.
    It formats with the root handler's formatter and writes with one `os.write`, taking no logging lock,
    because it runs inside a signal handler.
    """
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
    """Make SIGTERM a warm shutdown now and a cold one `grace_seconds` later; returns the deadline timer.

    Warm: Celery stops consuming, waits for the jobs in hand and exits once they are done. Cold, at the
    deadline: Celery's SIGQUIT handler cancels what still runs, and each cancelled job's message goes back
    to the queue. The timer is a daemon thread that only sends a signal, so the cold shutdown itself runs
    where Celery expects it, in its signal handler in the main thread.
    """
    main_process = os.getpid()

    def cancel_what_still_runs() -> None:
        # Jobs all done, Celery only closing: a cold shutdown nested in those steps could deadlock.
        if not celery.worker.state.active_requests:
            return
        logger.warning("Jobs still running %g s after SIGTERM go back to the queue", grace_seconds)
        os.kill(main_process, signal.SIGQUIT)

    deadline = threading.Timer(grace_seconds, cancel_what_still_runs)
    # A worker that finished its jobs in time exits without waiting for the timer.
    deadline.daemon = True

    def start_deadline(_: Any) -> None:
        # A second SIGTERM (some supervisors repeat it) keeps the first deadline.
        if deadline.ident is None:
            deadline.start()

    # The installer behind Celery's own SIGTERM and SIGQUIT handlers: the same notice ("worker: Warm
    # shutdown"), the same `worker_shutting_down` signal, the same flag that ends the consumer loop.
    celery.apps.worker._shutdown_handler(worker, sig="SIGTERM", how="Warm", callback=start_deadline)
    return deadline


def worker_class(app: Celery, grace_seconds: float) -> Any:
    """The app's Worker class, with the SIGTERM handler above in place of Celery's own.

    Celery installs its signal handlers when the worker starts, in `install_platform_tweaks`; replacing
    the SIGTERM one right there leaves no moment in which a SIGTERM would take Celery's path instead.
    """

    class Worker(app.Worker):  # type: ignore[misc]
        deadline: threading.Timer | None = None

        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            self.deadline = stop_when_idle_or_at_deadline(worker, grace_seconds)

    return Worker


def run_worker(settings: Settings) -> int:
    """`<slug> worker`: consume jobs until stopped; returns the exit code."""
    billiard.pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_LIMIT = RESULT_READ_TURNS
    engine = create_sync_database_engine(settings)
    app = create_celery(settings)
    delivery = register_jobs(app, engine, settings)
    use_service_logging(settings)
    announce_in_log_format()
    propagate_request_ids()
    # Pool processes are forked from this one: database connections must not cross processes.
    signals.worker_process_init.connect(lambda **_: engine.dispose(close=False), weak=False)
    # Each pool process opened its own HTTP connections (events/outgoing.py); close them as it stops.
    signals.worker_process_shutdown.connect(lambda **_: delivery.close(), weak=False)
    start_worker_telemetry(settings, app, engine)
    worker = worker_class(app, float(settings.graceful_timeout))(
        concurrency=settings.worker_concurrency,
        loglevel=logging.getLevelName(settings.log_level),
        # No banner: stdout carries log events only.
        quiet=True,
        # Workers here need no knowledge of each other: skipping mingle and gossip starts faster and
        # keeps broker chatter down.
        without_mingle=True,
        without_gossip=True,
    )
    stop_requests: list[str] = []
    signals.worker_shutting_down.connect(lambda sig, **_: stop_requests.append(sig), weak=False)
    worker.start()
    if worker.deadline is not None:
        worker.deadline.cancel()
    delivery.close()
    engine.dispose()
    # Celery reports a cold shutdown as a failure; a stop the platform asked for is a clean exit.
    if stop_requests and stop_requests[0] in STOP_SIGNALS:
        return 0
    return int(worker.exitcode or 0)


def start_worker_telemetry(settings: Settings, app: Celery, engine: Engine) -> None:
    """Whatever telemetry the settings turn on, before the pool processes are forked (they inherit it)."""
    if settings.tracing:
        from ..telemetry.tracing import (
            FLUSH_SECONDS,
            flush_spans_when_worker_stops,
            start_tracing,
            trace_statements,
        )

        start_tracing(settings)
        trace_statements(engine)
        flush_spans_when_worker_stops(FLUSH_SECONDS)
    if settings.metrics:
        from ..telemetry.metrics import count_jobs, count_pool_connections, queue_depth, serve_metrics

        # First: it clears the directory the metrics below write to.
        serve_metrics(settings, queue_depth(settings, app.conf.task_default_queue))
        count_jobs()
        count_pool_connections(engine)
    if settings.sentry_dsn:
        from ..telemetry.error_reports import flush_reports

        signals.worker_process_shutdown.connect(lambda **_: flush_reports(), weak=False)


def run_clock(settings: Settings) -> None:
    """`<slug> clock`: publish the periodic jobs, and relay the outbox's (see jobs/relay.py). Run exactly one;
    a second is harmless."""
    app = create_celery(settings)
    use_service_logging(settings)
    propagate_request_ids()
    if settings.tracing:
        from ..telemetry.tracing import start_tracing

        start_tracing(settings)
    # Beat's SIGTERM handler raises SystemExit wherever it lands. Load the parts Celery imports lazily
    # now, so that it can never land inside an import and turn a clean stop into a crash.
    with app.connection_for_write() as connection:
        _ = app.amqp.Producer, connection.transport
    engine = create_sync_database_engine(settings)
    relay = OutboxRelay(engine, app)
    relay.start()
    try:
        app.Beat(loglevel=logging.getLevelName(settings.log_level), quiet=True).run()
    finally:
        relay.stop(RELAY_STOP_TIMEOUT)
        engine.dispose()
