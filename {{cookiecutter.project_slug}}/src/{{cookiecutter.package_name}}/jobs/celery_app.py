"""Factor IV: the job queue is a backing service, reached through the one Celery app every process shares.

Apart from the worker's runner (jobs/worker.py), so a process that only publishes never imports it.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery, signals
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from ..logs import request_id, subject
from .reconnect import PromptlyReconnecting

if TYPE_CHECKING:
    from ..settings import Settings

REQUEST_ID_HEADER = "request_id"
SUBJECT_HEADER = "subject"
# Never given up: jobs are idempotent, and an item must not stay pending.
RETRIED_WHILE_DATABASE_IS_DOWN: dict[str, Any] = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 10,
    "max_retries": None,
}


# Tries at creating the embedded broker's queue: a process loses the race to at most a few others.
EMBEDDED_QUEUE_TRIES = 3

# Not __name__: jobs queued before this module moved are still found.
SERVICE = __name__.partition(".")[0]


def create_celery(settings: Settings) -> Celery:
    app = Celery(SERVICE, broker=settings.jobs.broker, set_as_current=False)
    app.conf.update(
        # Services sharing one Redis never take each other's jobs.
        task_default_queue=SERVICE,
        # A job in hand when a worker dies is redelivered.
        task_acks_late=True,
        # ...even when its pool process is killed (out of memory, SIGKILL).
        task_reject_on_worker_lost=True,
        # A worker that stops holds back as little work as possible.
        worker_prefetch_multiplier=1,
        # A stuck job cannot hold a pool process forever.
        task_time_limit=settings.jobs.time_limit,
        broker_transport_options=broker_options(settings),
        broker_use_ssl=broker_tls(settings.jobs.broker),
        # A pickled message from a compromised broker would run code in the worker.
        task_serializer="json",
        accept_content=["json"],
        # The database holds each job's result.
        task_ignore_result=True,
        # The service's handler writes Celery's logs too (logs.py).
        worker_hijack_root_logger=False,
        # A worker started before the broker keeps retrying.
        broker_connection_retry_on_startup=True,
        # ...and so does one whose broker goes away later (Celery gives up after 100 attempts).
        broker_connection_max_retries=None,
        # A request waits a second at most for a broken broker; the outbox relay publishes later.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # No surprises at daylight-saving changes.
        timezone="UTC",
        # Failed publishes need no sweep: the outbox relay has them.
        beat_schedule={},
        # In memory, not in a file: processes are stateless (factor VI).
        beat_scheduler="celery.beat:Scheduler",
    )
    # Retry a lost broker every few seconds (jobs/reconnect.py).
    app.amqp.Connection = PromptlyReconnecting
    return app


def probe_broker(app: Celery, timeout: float) -> None:
    """Raise if the broker does not answer within `timeout` seconds (`/readyz` and `check`)."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)


def declare_embedded_queue(app: Celery, settings: Settings) -> None:
    """Create the embedded broker's queue at start: kombu guards its creation within one process only."""
    if not settings.jobs.embedded_broker:
        return
    queue = app.amqp.queues[app.conf.task_default_queue]
    for attempt in range(1, EMBEDDED_QUEUE_TRIES + 1):
        try:
            with app.connection_for_write() as connection:
                queue(connection.default_channel).declare()
            return
        # The queue's row, or kombu's tables (OperationalError), made by another process meanwhile.
        except (IntegrityError, OperationalError):
            if attempt == EMBEDDED_QUEUE_TRIES:
                raise


def broker_options(settings: Settings) -> dict[str, Any]:
    if settings.jobs.embedded_broker:
        # It hands every option to create_engine(), which rejects the Redis ones below.
        return {}
    return {
        # Redis redelivers an unacknowledged message after this: past the longest job, or it runs twice.
        "visibility_timeout": settings.jobs.time_limit * 2,
        # Redeliver a dead worker's jobs within 10 s; kombu's default can wait 100 s more.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
        # A silent broker fails a publish within seconds instead of hanging a request.
        "socket_connect_timeout": 5,
        "socket_timeout": 10,
    }


def broker_tls(broker_url: str) -> dict[str, Any] | None:
    """Heroku's Redis serves a self-signed certificate and omits `ssl_cert_reqs`, which Celery refuses:
    encrypt without verifying, unless the URL asks to."""
    parts = urlsplit(broker_url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_NONE}


def propagate_request_context() -> None:
    """A job's log lines carry the id of the request that enqueued it, and who made that request."""

    def attach_request_context(headers: dict[str, Any], **_: Any) -> None:
        rid = request_id.get()
        if rid is not None:
            headers.setdefault(REQUEST_ID_HEADER, rid)
        who = subject.get()
        if who is not None:
            headers.setdefault(SUBJECT_HEADER, who)

    def adopt_request_context(task_id: str, task: Any, **_: Any) -> None:
        # Outside any request (a clock's job), the job's own id.
        request_id.set(getattr(task.request, REQUEST_ID_HEADER, None) or task_id)
        subject.set(getattr(task.request, SUBJECT_HEADER, None))

    def forget_request_context(**_: Any) -> None:
        request_id.set(None)
        subject.set(None)

    # Signals are process-wide: connect once, however often this is called.
    signals.before_task_publish.connect(attach_request_context, weak=False, dispatch_uid="attach_context")
    signals.task_prerun.connect(adopt_request_context, weak=False, dispatch_uid="adopt_context")
    signals.task_postrun.connect(forget_request_context, weak=False, dispatch_uid="forget_context")
