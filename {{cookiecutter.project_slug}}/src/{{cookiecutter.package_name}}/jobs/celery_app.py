"""Factor IV: the job queue is a backing service, reached through the one Celery app every process shares.

`create_celery(settings)` configures it from settings alone. The web process and the clock only publish
messages with it; `<slug> worker` (jobs/worker.py) consumes them. Kept apart from the worker's runner, so
that a process that only publishes never imports the worker's machinery (bench/PROFILE.md has its cost).
Job state lives in the service's database, so there is no result backend.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery, signals

from ..logs import request_id
from .reconnect import PromptlyReconnecting

if TYPE_CHECKING:
    from ..settings import Settings

# The message header that carries the id of the web request (or clock tick) that enqueued a job.
REQUEST_ID_HEADER = "request_id"


# The service's package name: jobs queued before a release that moved this module are still found.
SERVICE = __name__.partition(".")[0]


def create_celery(settings: Settings) -> Celery:
    """The Celery app, configured from settings alone: a producer for the web, a consumer for the worker."""
    app = Celery(SERVICE, broker=settings.job_broker_url, set_as_current=False)
    app.conf.update(
        # Named after the service, so services sharing one Redis never take each other's jobs.
        task_default_queue=SERVICE,
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
        # A worker that starts before the broker is up keeps retrying instead of exiting.
        broker_connection_retry_on_startup=True,
        # ...and so does one whose broker goes away later, however long it stays away (Celery's default
        # gives up after 100 attempts, and a worker that exited consumes nothing when the broker returns).
        broker_connection_max_retries=None,
        # A web request waits about a second at most for a broken broker; the outbox relay publishes later.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Time zone of the clock's schedule; UTC avoids surprises at daylight-saving changes.
        timezone="UTC",
        # Periodic jobs go here. Jobs whose publish failed need no sweep: the outbox relay publishes them.
        beat_schedule={},
        # The clock keeps its schedule in memory, not in a file: processes are stateless (factor VI).
        beat_scheduler="celery.beat:Scheduler",
    )
    # Every broker connection Celery makes (consumer, producers) retries a lost broker every few seconds.
    app.amqp.Connection = PromptlyReconnecting
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
        # Look for such jobs (left unacknowledged by a worker that died) every 10 s. kombu's default scans
        # on only every 10th of its 10 s ticks, so a lost job could wait 100 s more to be redelivered.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
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
