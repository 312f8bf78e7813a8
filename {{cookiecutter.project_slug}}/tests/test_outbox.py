"""The job outbox and its relay, on the real database and the real broker (or one that is not there).

The web's side (a job recorded with its item, deleted once published) is in test_jobs.py; the relay
running in a real clock process is in test_worker.py; Redis really stopped is in the template's fault tests.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from {{ cookiecutter.package_name }}.jobs.celery_app import (
    REQUEST_ID_HEADER,
    create_celery,
    propagate_request_context,
)
from {{ cookiecutter.package_name }}.jobs.outbox import (
    FAST_PATH_GRACE,
    MAX_RETRY_DELAY,
    RELAY_BATCH,
    RelayRound,
    pending_jobs,
    record_job,
    relay_due_jobs,
    retry_delay,
)
from {{ cookiecutter.package_name }}.jobs.relay import OutboxRelay
from {{ cookiecutter.package_name }}.jobs.tasks import PROCESS_ITEM
from {{ cookiecutter.package_name }}.models import OutboxJob
from {{ cookiecutter.package_name }}.settings import Settings

from conftest import UNREACHABLE_REDIS_URL

if TYPE_CHECKING:
    from starlette.testclient import TestClient

QUEUE = "{{ cookiecutter.package_name }}"
# Seconds a second relay may take to come back with nothing, when it must not wait for the first one.
NOT_BLOCKED_WITHIN = 5.0


def record(engine: Engine, count: int, *, due_now: bool = True, request_id: str | None = None) -> list[int]:
    """`count` outbox jobs (args [0], [1], ...), due now or, as the web records them, after the grace."""
    with Session(engine) as session, session.begin():
        jobs = [record_job(PROCESS_ITEM, [number], request_id) for number in range(count)]
        session.add_all(jobs)
        session.flush()
        if due_now:
            session.execute(update(OutboxJob).values(due_at=datetime.now(UTC)))
        return [job.id for job in jobs]


def relay_round(engine: Engine, relay: OutboxRelay) -> RelayRound:
    with Session(engine) as session, session.begin():
        return relay_due_jobs(session, relay.publish)


def jobs_left(engine: Engine) -> list[OutboxJob]:
    with Session(engine) as session:
        return pending_jobs(session)


def queued_bodies(redis_url: str) -> list[tuple[dict[str, Any], list[Any]]]:
    """(headers, args) of each message in the service's queue, oldest first."""
    with redis.Redis.from_url(redis_url) as database:
        raw: list[bytes] = database.lrange(QUEUE, 0, -1)
    messages = [json.loads(message) for message in reversed(raw)]
    return [(m["headers"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages]


@pytest.fixture
def celery(settings: Settings) -> Iterator[Celery]:
    app = create_celery(settings)
    propagate_request_context()
    yield app
    app.close()


@pytest.fixture
def celery_without_broker(settings: Settings) -> Iterator[Celery]:
    app = create_celery(
        dataclasses.replace(
            settings,
            jobs=dataclasses.replace(settings.jobs, redis_url=UNREACHABLE_REDIS_URL, broker_url=None),
        )
    )
    yield app
    app.close()


def test_relay_publishes_due_jobs_oldest_first_and_deletes_them(
    engine: Engine, celery: Celery, redis_url: str
) -> None:
    record(engine, 3, request_id="from-the-request")

    assert relay_round(engine, OutboxRelay(engine, celery)) == RelayRound(published=3, postponed=0)

    assert jobs_left(engine) == []
    queued = queued_bodies(redis_url)
    assert [args for _headers, args in queued] == [[0], [1], [2]]
    # The relayed job carries the id of the request that recorded it, as a fast-path publish does.
    assert {headers[REQUEST_ID_HEADER] for headers, _args in queued} == {"from-the-request"}


def test_relay_leaves_a_new_job_to_the_web_publish_for_the_grace_period(
    engine: Engine, celery: Celery, redis_url: str
) -> None:
    record(engine, 1, due_now=False)

    assert relay_round(engine, OutboxRelay(engine, celery)).claimed == 0
    (job,) = jobs_left(engine)
    assert job.due_at > datetime.now(UTC) + FAST_PATH_GRACE - timedelta(seconds=5)
    assert queued_bodies(redis_url) == []


def test_relay_postpones_the_whole_batch_with_a_growing_delay_while_the_broker_is_down(
    engine: Engine, celery_without_broker: Celery
) -> None:
    record(engine, 3)
    relay = OutboxRelay(engine, celery_without_broker)

    first = relay_round(engine, relay)
    after_first = jobs_left(engine)
    with Session(engine) as session, session.begin():
        session.execute(update(OutboxJob).values(due_at=datetime.now(UTC)))
    relay_round(engine, relay)
    after_second = jobs_left(engine)

    assert first == RelayRound(published=0, postponed=3)
    assert [job.attempts for job in after_first] == [1, 1, 1]
    assert [job.attempts for job in after_second] == [2, 2, 2]
    # Not due again before its delay: the relay does not hammer a broker that is down.
    assert all(job.due_at > datetime.now(UTC) for job in after_second)


def test_retry_delay_doubles_from_one_second_up_to_ten() -> None:
    delays = [retry_delay(attempts).total_seconds() for attempts in range(1, 8)]

    assert delays == [1, 2, 4, 8, 10, 10, 10]
    assert retry_delay(10_000) == MAX_RETRY_DELAY


def test_a_second_relay_skips_the_jobs_the_first_holds_instead_of_waiting_or_sending_them_again(
    engine: Engine, celery: Celery, redis_url: str
) -> None:
    record(engine, 2)
    relay = OutboxRelay(engine, celery)
    with Session(engine) as first, first.begin():
        assert relay_due_jobs(first, relay.publish) == RelayRound(published=2, postponed=0)
        results: list[RelayRound] = []
        second = threading.Thread(target=lambda: results.append(relay_round(engine, relay)), daemon=True)
        second.start()
        second.join(NOT_BLOCKED_WITHIN)
        assert not second.is_alive(), "the second relay waited for the first one's row locks"

    assert results == [RelayRound(published=0, postponed=0)]
    assert len(queued_bodies(redis_url)) == 2
    assert jobs_left(engine) == []


def test_relay_takes_at_most_one_batch_per_transaction(engine: Engine, celery: Celery) -> None:
    record(engine, RELAY_BATCH + 1)
    relay = OutboxRelay(engine, celery)

    assert relay_round(engine, relay).published == RELAY_BATCH
    assert relay_round(engine, relay).published == 1
    assert jobs_left(engine) == []


def test_a_job_queued_behind_a_backlog_is_never_published_again(
    client: TestClient, engine: Engine, celery: Celery, redis_url: str
) -> None:
    # No worker runs: the three jobs wait in the broker, as behind a long backlog.
    for number in range(3):
        assert client.post("/items", json={"name": f"queued {number}"}).status_code == 201

    # However late the relay looks, the outbox holds nothing the broker already has.
    assert relay_round(engine, OutboxRelay(engine, celery)) == RelayRound(published=0, postponed=0)
    assert len(queued_bodies(redis_url)) == 3
