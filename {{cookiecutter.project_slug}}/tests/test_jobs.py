"""Jobs: idempotent work on the real database, published after the commit, and never a 500 for the broker.

The functions in jobs/tasks.py are tested here on their own, with a session on the real PostgreSQL database;
test_worker.py runs them in a real worker process.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import redis
from celery import signals
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from {{ cookiecutter.package_name }}.events import jobs as events  # drop: events
from {{ cookiecutter.package_name }}.jobs import publish
from {{ cookiecutter.package_name }}.jobs.celery_app import (
    REQUEST_ID_HEADER,
    broker_tls,
    create_celery,
)
from {{ cookiecutter.package_name }}.jobs.outbox import pending_jobs
from {{ cookiecutter.package_name }}.jobs.reconnect import PromptlyReconnecting
from {{ cookiecutter.package_name }}.jobs.tasks import (
    PROCESS_ITEM,
    process_item,
)
from {{ cookiecutter.package_name }}.jobs.worker import register_jobs
from {{ cookiecutter.package_name }}.models import (
    Item,
    ItemStatus,
)
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.app import create_app

from conftest import (
    UNREACHABLE_REDIS_URL,
    add_items,
    get_item,
)

if TYPE_CHECKING:
    from starlette.testclient import TestClient

# The queue is named after the package, so services sharing one Redis never take each other's jobs.
QUEUE = "{{ cookiecutter.package_name }}"
JOBS_LOGGER = "{{ cookiecutter.package_name }}.jobs.publish"
OBSERVER = "test-observe-publish"
# Seconds a second transaction is given to show it is waiting for the first one's row locks.
BLOCKED_FOR = 0.5
# The web deletes published jobs' outbox rows in batches: far inside the relay's grace (outbox.py).
DELETED_WITHIN = 2.0


def in_transaction(engine: Engine, work: Callable[[Connection], Any]) -> Any:
    with engine.begin() as connection:
        return work(connection)


def run_in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start `work` in a thread; its result (or exception) lands in the returned list."""
    results: list[Any] = []

    def target() -> None:
        try:
            results.append(work())
        except Exception as exc:  # handed back to the test, which re-raises it
            results.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, results


def test_process_item_marks_it_done_with_the_sha256_of_its_name(engine: Engine) -> None:
    (item_id,) = add_items(engine, 1)

    assert in_transaction(engine, lambda connection: process_item(connection, item_id)) is True

    item = get_item(engine, item_id)
    assert item.status is ItemStatus.DONE
    assert item.digest == hashlib.sha256(b"item 0").hexdigest()


def test_process_item_twice_is_harmless(engine: Engine) -> None:
    (item_id,) = add_items(engine, 1)
    in_transaction(engine, lambda connection: process_item(connection, item_id))
    first = get_item(engine, item_id)

    assert in_transaction(engine, lambda connection: process_item(connection, item_id)) is False

    second = get_item(engine, item_id)
    assert second.status is ItemStatus.DONE
    assert (second.digest, second.updated_at) == (first.digest, first.updated_at)


def test_process_item_of_an_unknown_id_returns_false(engine: Engine) -> None:
    assert in_transaction(engine, lambda connection: process_item(connection, 12345)) is False


def test_two_deliveries_of_one_job_at_once_take_turns_and_the_second_finds_it_done(engine: Engine) -> None:
    (item_id,) = add_items(engine, 1)
    with engine.begin() as first:
        assert process_item(first, item_id) is True  # holds the row lock until this transaction ends
        second, results = run_in_thread(lambda: in_transaction(engine, lambda s: process_item(s, item_id)))
        second.join(BLOCKED_FOR)
        assert second.is_alive(), "the second delivery did not wait for the first one's row lock"
    second.join(10)

    assert results == [False]
    assert get_item(engine, item_id).digest == hashlib.sha256(b"item 0").hexdigest()


def queued_messages(redis_url: str) -> list[dict[str, Any]]:
    """The messages waiting in the service's queue, as kombu's Redis transport stores them."""
    with redis.Redis.from_url(redis_url) as database:
        raw: list[bytes] = database.lrange(QUEUE, 0, -1)
    return [json.loads(message) for message in raw]


def test_create_item_enqueues_its_job_with_the_request_id_in_a_header(
    client: TestClient, redis_url: str
) -> None:
    created = client.post("/items", json={"name": "queued"}, headers={"X-Request-ID": "enqueue-trace-1"})

    assert created.status_code == 201
    (message,) = queued_messages(redis_url)
    assert message["headers"]["task"] == PROCESS_ITEM
    assert message["headers"][REQUEST_ID_HEADER] == "enqueue-trace-1"
    assert message["content-type"] == "application/json"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([created.json()["id"]], {})


def test_create_item_records_its_job_in_the_outbox_and_deletes_it_once_the_broker_has_it(
    client: TestClient, engine: Engine, redis_url: str
) -> None:
    seen_at_publish: list[list[tuple[str, list[Any]]]] = []

    def observe(**_: Any) -> None:
        with Session(engine) as session:
            seen_at_publish.append([(job.task, job.args) for job in pending_jobs(session)])

    signals.before_task_publish.connect(observe, weak=False, dispatch_uid=OBSERVER)
    try:
        created = client.post("/items", json={"name": "outboxed"})
    finally:
        signals.before_task_publish.disconnect(dispatch_uid=OBSERVER)

    # Committed with its item, before the publish; gone soon after it, long before the relay would look.
    assert seen_at_publish == [[(PROCESS_ITEM, [created.json()["id"]])]]
    assert outbox_emptied_within(engine, DELETED_WITHIN)
    assert len(queued_messages(redis_url)) == 1


def test_a_stopping_web_deletes_the_outbox_rows_of_the_jobs_it_published(
    settings: Settings, engine: Engine, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    # Batches wait longer than the test: only the shutdown deletes them.
    monkeypatch.setattr(publish, "DELETE_DELAY_SECONDS", 3600.0)
    with TestClient(create_app(settings)) as client:
        for number in range(3):
            assert client.post("/items", json={"name": f"published {number}"}).status_code == 201
        with Session(engine) as session:
            assert len(pending_jobs(session)) == 3

    with Session(engine) as session:
        assert pending_jobs(session) == []
    assert len(queued_messages(redis_url)) == 3


def outbox_emptied_within(engine: Engine, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        with Session(engine) as session:
            if pending_jobs(session) == []:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_job_is_published_only_after_its_item_is_committed(client: TestClient, engine: Engine) -> None:
    # Celery's own publish signal, observed from a second connection: a row it can read is committed.
    seen_at_publish: dict[int, ItemStatus | None] = {}

    def observe(body: Any, **_: Any) -> None:
        args, _kwargs, _embed = body
        with Session(engine) as session:
            item = session.get(Item, args[0])
            seen_at_publish[args[0]] = None if item is None else item.status

    signals.before_task_publish.connect(observe, weak=False, dispatch_uid=OBSERVER)
    try:
        created = client.post("/items", json={"name": "committed first"})
    finally:
        signals.before_task_publish.disconnect(dispatch_uid=OBSERVER)

    assert seen_at_publish == {created.json()["id"]: ItemStatus.PENDING}


@pytest.fixture
def client_without_broker(settings: Settings, truncate_items: Callable[[], None]) -> Iterator[TestClient]:
    """The app with REDIS_URL pointing at a port nothing listens on."""
    from starlette.testclient import TestClient

    truncate_items()
    no_broker = dataclasses.replace(
        settings, jobs=dataclasses.replace(settings.jobs, redis_url=UNREACHABLE_REDIS_URL, broker_url=None)
    )
    with TestClient(create_app(no_broker)) as client:
        yield client


def test_create_item_is_201_and_stays_pending_when_the_broker_is_unreachable(
    client_without_broker: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    created = client_without_broker.post("/items", json={"name": "no broker"})

    assert created.status_code == 201
    fetched = client_without_broker.get(created.headers["location"])
    assert (fetched.json()["status"], fetched.json()["digest"]) == ("pending", None)
    (warning,) = [record for record in caplog.records if record.name == JOBS_LOGGER]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(f"Could not enqueue {PROCESS_ITEM}")


def test_a_failed_publish_is_recorded_in_the_outbox_as_due_at_once(
    client_without_broker: TestClient, engine: Engine
) -> None:
    before = datetime.now(UTC)
    created = client_without_broker.post("/items", json={"name": "relay me"}, headers={"X-Request-ID": "r-1"})

    with Session(engine) as session:
        (job,) = pending_jobs(session)
    assert (job.task, job.args, job.request_id) == (PROCESS_ITEM, [created.json()["id"]], "r-1")
    # Known to have failed, not guessed from its age: the relay may take it at once.
    assert job.attempts == 1
    assert before <= job.due_at <= datetime.now(UTC)


def test_readyz_is_503_naming_the_broker_when_it_is_unreachable(client_without_broker: TestClient) -> None:
    response = client_without_broker.get("/readyz")

    assert response.status_code == 503
    assert set(response.json()["problems"]) == {"broker"}


def test_create_celery_is_configured_to_lose_no_job(settings: Settings) -> None:
    app = create_celery(settings)
    try:
        conf = app.conf
        # Acknowledged after the job ran, also when its pool process dies; one message reserved at a time.
        assert conf.task_acks_late is True
        assert conf.task_reject_on_worker_lost is True
        assert conf.worker_prefetch_multiplier == 1
        # Redelivered only once the job has surely been killed by its time limit.
        assert conf.task_time_limit == settings.jobs.time_limit
        assert conf.broker_transport_options["visibility_timeout"] > settings.jobs.time_limit
        # A job left unacknowledged by a worker that died is looked for every 10 s, not every 100 s.
        assert conf.broker_transport_options["unacked_restore_throttle"] == 1
        # A worker keeps reconnecting to a broker that went away, however long it stays away, and often.
        assert conf.broker_connection_max_retries is None
        assert isinstance(app.connection_for_read(), PromptlyReconnecting)
        # JSON only, no result backend, the service's own logging.
        assert conf.task_serializer == "json"
        assert list(conf.accept_content) == ["json"]
        assert conf.task_ignore_result is True
        assert conf.worker_hijack_root_logger is False
        # No soft shutdown: it would sleep all of GRACEFUL_TIMEOUT with any job in hand (jobs/worker.py stops
        # the worker once its jobs are done instead, and cancels them at GRACEFUL_TIMEOUT).
        assert conf.worker_soft_shutdown_timeout == 0
        assert conf.task_default_queue == QUEUE
    finally:
        app.close()


@pytest.mark.parametrize(
    ("broker_url", "tls"),
    [
        pytest.param(
            "rediss://:secret@redis.example:6380/0", {"ssl_cert_reqs": ssl.CERT_NONE}, id="heroku-tls"
        ),
        pytest.param("rediss://redis.example:6380/0?ssl_cert_reqs=required", None, id="tls-verified-by-url"),
        pytest.param("redis://127.0.0.1:6379/0", None, id="plain"),
    ],
)
def test_rediss_url_works_as_a_platform_hands_it_out(broker_url: str, tls: dict[str, Any] | None) -> None:
    assert broker_tls(broker_url) == tls


def test_every_periodic_job_names_a_job_the_worker_runs(settings: Settings, engine: Engine) -> None:
    app = create_celery(settings)
    register_jobs(app, engine)
    events.serve_in_worker(app, engine, settings.events)  # drop: events

    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}

    assert scheduled <= set(app.tasks)
    assert PROCESS_ITEM in app.tasks
