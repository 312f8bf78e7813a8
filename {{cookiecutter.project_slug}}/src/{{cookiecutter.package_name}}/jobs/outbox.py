"""The job outbox: a job is recorded in the transaction of the change it is for, so none is ever lost.

The web publishes it after the commit; the clock's relay (jobs/relay.py) publishes what the web could not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    ScalarSelect,
    Update,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from ..models import OutboxJob

# The web's own publish takes a second at most; then the relay takes over.
FAST_PATH_GRACE = timedelta(seconds=10)
# The maximum bounds how long after the broker's return a waiting job is published.
FIRST_RETRY_DELAY = timedelta(seconds=1)
MAX_RETRY_DELAY = timedelta(seconds=10)
RELAY_BATCH = 100

# Raises if the broker did not take the job.
Publish = Callable[[OutboxJob], None]


def now() -> datetime:
    return datetime.now(UTC)


def record_job(
    task: str, args: Sequence[Any], request_id: str | None, delay: timedelta = FAST_PATH_GRACE
) -> OutboxJob:
    """A new row for the session of the change it is for; due after `delay` (the web's publish first)."""
    return OutboxJob(task=task, args=list(args), request_id=request_id, attempts=0, due_at=now() + delay)


# For a Core connection: execute it with `job_row(job)`.
INSERT_JOB = insert(OutboxJob).returning(OutboxJob.id)


def job_inserted_with(argument: ColumnElement[Any]) -> ScalarSelect[Any]:
    """The id of a job inserted in the same statement as its change (PostgreSQL): `argument`, a column
    of the change's INSERT ... RETURNING in a WITH clause, is its one argument. Execute with job_row()."""
    jobs = OutboxJob.__table__.c
    row = select(
        bindparam("task", type_=jobs.task.type),
        func.json_build_array(argument),
        bindparam("request_id", type_=jobs.request_id.type),
        bindparam("attempts", type_=jobs.attempts.type),
        bindparam("due_at", type_=jobs.due_at.type),
    )
    columns = ["task", "args", "request_id", "attempts", "due_at"]
    inserted = insert(OutboxJob).from_select(columns, row).returning(OutboxJob.id).cte("new_job")
    return select(inserted.c.id).scalar_subquery()


def job_row(job: OutboxJob) -> dict[str, Any]:
    return {
        "task": job.task,
        "args": job.args,
        "request_id": job.request_id,
        "attempts": job.attempts,
        "due_at": job.due_at,
    }


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4, 8, 10, 10... s after each failed publish."""
    return min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * (1 << min(attempts - 1, 30)))


def published(job_ids: Sequence[int]) -> Delete:
    return delete(OutboxJob).where(OutboxJob.id.in_(job_ids))


def publish_failed(job_id: int) -> Update:
    """The relay retries at once, then backs off."""
    failed = update(OutboxJob).where(OutboxJob.id == job_id)
    return failed.values(attempts=OutboxJob.attempts + 1, due_at=now())


@dataclasses.dataclass(frozen=True)
class RelayRound:
    published: int
    postponed: int

    @property
    def claimed(self) -> int:
        return self.published + self.postponed


def relay_due_jobs(session: Session, publish: Publish, limit: int = RELAY_BATCH) -> RelayRound:
    """Publish the due jobs, oldest first, deleting each the broker took.

    At the first failure the rest is postponed. The rows stay locked until the transaction ends.
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
    return list(session.scalars(select(OutboxJob).order_by(OutboxJob.id)))
