"""Factors VIII and IX: the worker and clock process types, and how a worker stops without losing a job.

`create_celery(settings)` builds the one Celery app every process uses: the web process only publishes
messages to it, `<slug> worker` consumes them, `<slug> clock` publishes the periodic ones. Job state lives
in the service's database, so there is no result backend.

Shutdown: platforms send SIGTERM, then SIGKILL 30 s later, often to every process of the container at
once. `<slug> worker` sets `REMAP_SIGTERM=SIGQUIT` (see cli.py), which makes Celery's pool children ignore
SIGTERM and turns it into a *soft shutdown*: jobs in hand get `GRACEFUL_TIMEOUT` seconds to finish, then
any still running are cancelled and, because messages are acknowledged only after their job ran, go back
to the queue for the next worker. Nothing waits for SIGKILL, and nothing is lost.
"""

from __future__ import annotations

import logging
import os
import ssl
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import celery.apps.worker
from celery import Celery, signals
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from . import tasks
from .database import create_sync_database_engine
from .logs import configure_logging, request_id
from .settings import Settings

logger = logging.getLogger(__name__)

# The message header that carries the id of the web request (or clock tick) that enqueued a job.
REQUEST_ID_HEADER = "request_id"
# How often the clock looks for items whose job was never enqueued (or was lost).
SWEEP_EVERY_SECONDS = 60.0
# File descriptor of the process's stdout, whatever Python's sys.stdout has been replaced with.
STDOUT = 1
# Signals by which a platform (or a person at a terminal) asks a worker to stop.
STOP_SIGNALS = frozenset({"SIGTERM", "SIGQUIT", "SIGINT"})


def create_celery(settings: Settings) -> Celery:
    """The Celery app, configured from settings alone: a producer for the web, a consumer for the worker."""
    app = Celery(__package__, broker=settings.job_broker_url, set_as_current=False)
    app.conf.update(
        # Named after the service, so services sharing one Redis never take each other's jobs.
        task_default_queue=__package__,
        # Acknowledge a message only after its job has run: a job in hand when a worker dies is redelivered.
        task_acks_late=True,
        # ...including when the pool process running it is killed (out of memory, SIGKILL).
        task_reject_on_worker_lost=True,
        # Reserve one message per pool process: a worker that stops holds back as little work as possible.
        worker_prefetch_multiplier=1,
        # Kill a job that runs past the limit, so a stuck job cannot hold a pool process forever.
        task_time_limit=settings.job_time_limit,
        broker_transport_options=broker_options(settings),
        broker_use_ssl=broker_tls(settings.job_broker_url),
        # JSON only: a pickled message from a compromised broker would run code in the worker.
        task_serializer="json",
        accept_content=["json"],
        # No result backend: the item's status in the database is the job's result.
        task_ignore_result=True,
        # Logs go through the service's single stdout handler (logs.py), in the service's format.
        worker_hijack_root_logger=False,
        # SIGTERM (remapped by `<slug> worker`): jobs in hand get this long, inside the platform's 30 s.
        worker_soft_shutdown_timeout=float(settings.graceful_timeout),
        # A worker that starts before the broker is up keeps retrying instead of exiting.
        broker_connection_retry_on_startup=True,
        # A web request waits about a second at most for a broken broker; the clock enqueues the job later.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Time zone of the clock's schedule; UTC avoids surprises at daylight-saving changes.
        timezone="UTC",
        beat_schedule={
            "requeue-pending-items": {"task": tasks.REQUEUE_PENDING_ITEMS, "schedule": SWEEP_EVERY_SECONDS},
        },
        # The clock keeps its schedule in memory, not in a file: processes are stateless (factor VI).
        beat_scheduler="celery.beat:Scheduler",
    )
    return app


def broker_options(settings: Settings) -> dict[str, Any]:
    """Transport options for Redis; the SQLAlchemy broker of a zero-server run takes none."""
    if settings.job_broker_url.startswith("sqla+"):
        # It hands every option to create_engine(), which rejects the Redis ones below.
        return {}
    return {
        # Redis hands an unacknowledged message to another worker after this long; it must exceed the
        # longest job, or a job still running would run twice at once.
        "visibility_timeout": settings.job_time_limit * 2,
        # A broker that does not answer fails a publish within seconds instead of hanging a request.
        "socket_connect_timeout": 5,
        "socket_timeout": 10,
    }


def broker_tls(broker_url: str) -> dict[str, Any] | None:
    """TLS for a `rediss://` broker given as a platform hands it out.

    Heroku's Redis add-on serves TLS with a self-signed certificate and a URL without `ssl_cert_reqs`,
    which Celery otherwise refuses: encrypt without verifying the certificate, unless the URL itself
    asks for verification (`?ssl_cert_reqs=required`).
    """
    parts = urlsplit(broker_url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_NONE}


def register_jobs(app: Celery, engine: Engine, settings: Settings) -> None:
    """Bind the jobs in tasks.py to Celery message names, each in its own database transaction."""
    pending_for = timedelta(seconds=settings.requeue_pending_after)

    def process_item(item_id: int) -> None:
        with Session(engine) as session, session.begin():
            done = tasks.process_item(session, item_id)
        outcome = "done" if done else "already done, or gone"
        logger.info("Item %d: %s", item_id, outcome, extra={"item_id": item_id})

    def requeue_pending_items() -> None:
        with Session(engine) as session, session.begin():
            item_ids = tasks.claim_stale_pending_items(session, pending_for)
        for item_id in item_ids:
            app.send_task(tasks.PROCESS_ITEM, args=[item_id])
        if item_ids:
            logger.warning("Re-enqueued %d pending items", len(item_ids), extra={"item_ids": item_ids})

    app.task(name=tasks.PROCESS_ITEM)(process_item)
    app.task(name=tasks.REQUEUE_PENDING_ITEMS)(requeue_pending_items)


def propagate_request_ids() -> None:
    """Carry the request id from the process that enqueues a job to the log lines of the job itself."""

    def attach_request_id(headers: dict[str, Any], **_: Any) -> None:
        rid = request_id.get()
        if rid is not None:
            headers.setdefault(REQUEST_ID_HEADER, rid)

    def adopt_request_id(task_id: str, task: Any, **_: Any) -> None:
        # A job enqueued outside any request (by the clock, say) is traced by its own id.
        request_id.set(getattr(task.request, REQUEST_ID_HEADER, None) or task_id)

    def forget_request_id(**_: Any) -> None:
        request_id.set(None)

    # Celery's signals are process-wide; `dispatch_uid` keeps a second call from connecting twice.
    signals.before_task_publish.connect(attach_request_id, weak=False, dispatch_uid="attach_request_id")
    signals.task_prerun.connect(adopt_request_id, weak=False, dispatch_uid="adopt_request_id")
    signals.task_postrun.connect(forget_request_id, weak=False, dispatch_uid="forget_request_id")


def use_service_logging(settings: Settings) -> None:
    """With a receiver on `setup_logging`, Celery configures no logging of its own: one stream, one format."""

    def configure(**_: Any) -> None:
        configure_logging(settings.log_level, settings.log_format, settings.release_id, settings.tracing)

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


def run_worker(settings: Settings) -> int:
    """`<slug> worker`: consume jobs until stopped; returns the exit code."""
    engine = create_sync_database_engine(settings)
    app = create_celery(settings)
    register_jobs(app, engine, settings)
    use_service_logging(settings)
    announce_in_log_format()
    propagate_request_ids()
    # Pool processes are forked from this one: database connections must not cross processes.
    signals.worker_process_init.connect(lambda **_: engine.dispose(close=False), weak=False)
    start_worker_telemetry(settings, app, engine)
    worker = app.Worker(
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
    engine.dispose()
    # Celery reports a soft (cold) shutdown as a failure; a stop the platform asked for is a clean exit.
    if stop_requests and stop_requests[0] in STOP_SIGNALS:
        return 0
    return int(worker.exitcode or 0)


def start_worker_telemetry(settings: Settings, app: Celery, engine: Engine) -> None:
    """Whatever telemetry the settings turn on, before the pool processes are forked (they inherit it)."""
    if settings.tracing:
        from .tracing import FLUSH_SECONDS, flush_spans_when_worker_stops, start_tracing, trace_statements

        start_tracing(settings)
        trace_statements(engine)
        flush_spans_when_worker_stops(FLUSH_SECONDS)
    if settings.metrics:
        from .metrics import count_jobs, count_pool_connections, queue_depth, serve_metrics

        # First: it clears the directory the metrics below write to.
        serve_metrics(settings, queue_depth(settings, app.conf.task_default_queue))
        count_jobs()
        count_pool_connections(engine)
    if settings.sentry_dsn:
        from .error_reports import flush_reports

        signals.worker_process_shutdown.connect(lambda **_: flush_reports(), weak=False)


def run_clock(settings: Settings) -> None:
    """`<slug> clock`: publish the periodic jobs. Run exactly one; a second is harmless (see tasks.py)."""
    app = create_celery(settings)
    use_service_logging(settings)
    propagate_request_ids()
    if settings.tracing:
        from .tracing import start_tracing

        start_tracing(settings)
    # Beat's SIGTERM handler raises SystemExit wherever it lands. Load the parts Celery imports lazily
    # now, so that it can never land inside an import and turn a clean stop into a crash.
    with app.connection_for_write() as connection:
        _ = app.amqp.Producer, connection.transport
    app.Beat(loglevel=logging.getLevelName(settings.log_level), quiet=True).run()
