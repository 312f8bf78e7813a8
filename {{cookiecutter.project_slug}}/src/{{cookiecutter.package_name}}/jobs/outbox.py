"""The job outbox: a job is recorded in the transaction of the change it is for, so none is ever lost.

Publishing to the broker cannot be part of a database transaction. Publish before the commit and a worker
may look for a row that does not exist yet (or never will); publish after it and a broker that is down, or
a process that dies in between, loses the job. So the job is first written here, in the same transaction
as its item, and then:

1. the web process publishes it right after the commit and deletes the row (the fast path, milliseconds);
   if that publish fails the row is made due at once, so "the publish failed" is recorded, not guessed;
2. the clock's relay (jobs/relay.py) publishes every row that is due, retrying with a growing delay while the
   broker is down, and deletes each row the broker has taken.

A fresh row is not due for `FAST_PATH_GRACE`, so the relay never races the web's own publish. Rows are
claimed with `FOR UPDATE SKIP LOCKED`, so a second clock relays other rows, never the same one.

A job can still be published twice (a process dies after the publish and before the delete), which is
why every job is idempotent (see jobs/tasks.py). A job merely queued behind a backlog is never published
again: once the broker has it, its row is gone.

These are plain functions and statements, testable without Celery or a broker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Delete, Update, delete, insert, select, update
from sqlalchemy.orm import Session

from ..models import OutboxJob

# How long the relay leaves a new row to the web's own publish (which takes milliseconds, or about a
# second against a broken broker) before taking it over from a process that died first.
FAST_PATH_GRACE = timedelta(seconds=10)
# Delay before retrying a failed publish: doubles with each failure, up to the maximum. The maximum bounds
# how long after the broker's return a waiting job is published.
FIRST_RETRY_DELAY = timedelta(seconds=1)
MAX_RETRY_DELAY = timedelta(seconds=10)
# Rows one relay transaction claims (and holds locked while publishing them).
RELAY_BATCH = 100

# Publishes one job to the broker, raising if the broker did not take it.
Publish = Callable[[OutboxJob], None]


def now() -> datetime:
    return datetime.now(UTC)


def record_job(
    task: str, args: Sequence[Any], request_id: str | None, delay: timedelta = FAST_PATH_GRACE
) -> OutboxJob:
    """A new outbox row, to be added to the session of the change the job is for.

    Due after `delay`: by default after the web's own publish had its chance; a job no process publishes
    itself (a scheduled retry, say) is due when it should run, and the relay publishes it then.
    """
    return OutboxJob(task=task, args=list(args), request_id=request_id, attempts=0, due_at=now() + delay)


# Records a job without an ORM session, as the web's create handler does: execute it with `job_row(job)`.
INSERT_JOB = insert(OutboxJob).returning(OutboxJob.id)


def job_row(job: OutboxJob) -> dict[str, Any]:
    """The parameters of INSERT_JOB for `job`."""
    return {
        "task": job.task,
        "args": job.args,
        "request_id": job.request_id,
        "attempts": job.attempts,
        "due_at": job.due_at,
    }


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed publish of one job (1, 2, 4, 8, 10, 10, ... s)."""
    return min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * (1 << min(attempts - 1, 30)))


def published(job_id: int) -> Delete:
    """The statement run once the broker has the job: its row has done its work."""
    return delete(OutboxJob).where(OutboxJob.id == job_id)


def publish_failed(job_id: int) -> Update:
    """The statement run when the web's publish failed: the relay retries at once, then backs off."""
    failed = update(OutboxJob).where(OutboxJob.id == job_id)
    return failed.values(attempts=OutboxJob.attempts + 1, due_at=now())


@dataclasses.dataclass(frozen=True)
class RelayRound:
    """What one relay transaction did: jobs published, and jobs postponed because the broker failed."""

    published: int
    postponed: int

    @property
    def claimed(self) -> int:
        return self.published + self.postponed


def relay_due_jobs(session: Session, publish: Publish, limit: int = RELAY_BATCH) -> RelayRound:
    """Publish the due jobs, oldest first, deleting each the broker took.

    At the first failure the broker is taken to be down: that job and the rest of the batch are postponed
    by their backoff delay instead of each waiting out its own failed publish. The rows stay locked until
    the session's transaction ends, so run this inside one (`with session.begin():`).
    """
    due = (
        select(OutboxJob)
        .where(OutboxJob.due_at <= now())
        .order_by(OutboxJob.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    jobs = list(session.scalars(due))
    for sent, job in enumerate(jobs):
        try:
            publish(job)
        except Exception:  # kombu raises several unrelated classes for one broken broker
            postpone(jobs[sent:])
            return RelayRound(published=sent, postponed=len(jobs) - sent)
        session.delete(job)
    return RelayRound(published=len(jobs), postponed=0)


def postpone(jobs: Sequence[OutboxJob]) -> None:
    failed_at = now()
    for job in jobs:
        job.attempts += 1
        job.due_at = failed_at + retry_delay(job.attempts)


def pending_jobs(session: Session) -> list[OutboxJob]:
    """Every job the broker does not have yet, oldest first."""
    return list(session.scalars(select(OutboxJob).order_by(OutboxJob.id)))
