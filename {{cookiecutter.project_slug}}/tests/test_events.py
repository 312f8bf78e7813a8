"""Outgoing events (events/outgoing.py): Standard Webhooks, retried with backoff, then left for an operator.

Deliveries go to a small HTTP server on 127.0.0.1 that answers what each test scripts. The incoming side
is in test_incoming_events.py, the spec's reference library on both sides in test_standard_webhooks.py;
the template's slow tier runs two whole services against each other
(tests/test_events.py at the template's root).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from {{ cookiecutter.package_name }}.events import outgoing as events
from {{ cookiecutter.package_name }}.events import signing
from {{ cookiecutter.package_name }}.events.models import DeliveryStatus, EventDelivery
from {{ cookiecutter.package_name }}.events.settings import EventSettings
from {{ cookiecutter.package_name }}.events.signing import new_secret
from {{ cookiecutter.package_name }}.jobs.tasks import (
    process_item,
)
from {{ cookiecutter.package_name }}.models import (
    OutboxJob,
)
from {{ cookiecutter.package_name }}.settings import (
    ConfigurationError,
    Settings,
    load_settings,
)

from conftest import add_items, problems_of
from processes import (
    EventReceiver,
    event_receiver,
)

SECRET = new_secret()
PREVIOUS_SECRET = new_secret()
# Nothing listens on port 1: a connection is refused at once, as by a receiver that is down.
REFUSING_URL = "http://127.0.0.1:1/events"


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    with event_receiver() as server:
        yield server


def attached(settings: Settings, url: str, **changes: Any) -> EventSettings:
    return dataclasses.replace(settings.events, url=url, secret=SECRET, **changes)


def done_item_with_event(engine: Engine) -> str:
    """An item processed with events attached; returns its event's id."""
    [item_id] = add_items(engine, 1)
    with engine.begin() as connection:
        assert process_item(connection, item_id, announce=events.record_item_done)
    with Session(engine) as session:
        return session.scalars(select(EventDelivery.id)).one()


def event_of(engine: Engine, event_id: str) -> EventDelivery:
    with Session(engine) as session:
        event = session.get(EventDelivery, event_id)
        assert event is not None
        return event


def delivery_jobs(engine: Engine) -> list[OutboxJob]:
    with Session(engine) as session:
        statement = select(OutboxJob).where(OutboxJob.task == events.DELIVER_EVENT).order_by(OutboxJob.id)
        return list(session.scalars(statement))


def test_item_done_records_its_event_and_delivery_job_in_the_same_transaction(engine: Engine) -> None:
    [item_id] = add_items(engine, 1)
    with engine.connect() as connection:
        transaction = connection.begin()
        process_item(connection, item_id, announce=events.record_item_done)
        transaction.rollback()  # the item's transaction fails: no event either
    assert delivery_jobs(engine) == []

    event_id = done_item_with_event(engine)

    event = event_of(engine, event_id)
    assert (event.type, event.status, event.attempts) == ("item.done", DeliveryStatus.PENDING, 0)
    assert event.data["status"] == "done"
    [job] = delivery_jobs(engine)
    assert job.args == [event_id]


def test_a_detached_service_records_no_event(engine: Engine) -> None:
    [item_id] = add_items(engine, 1)
    with engine.begin() as connection:
        assert process_item(connection, item_id, announce=None)

    assert delivery_jobs(engine) == []
    with Session(engine) as session:
        assert session.scalars(select(EventDelivery)).all() == []


def test_a_delivered_event_is_a_standard_webhook_with_its_id_and_a_fresh_timestamp(
    engine: Engine, settings: Settings, receiver: EventReceiver
) -> None:
    event_id = done_item_with_event(engine)
    delivery = events.Delivery(engine, attached(settings, receiver.url))

    assert delivery.deliver(event_id) is events.Verdict.DELIVERED
    delivery.close()

    [received] = receiver.received
    assert signing.verify(received.headers, received.body, [SECRET]) == signing.SignedMessage(
        event_id, int(received.headers["webhook-timestamp"])
    )
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60
    assert received.headers["webhook-signature"].count("v1,") == 1, "one secret, one signature"
    document = json.loads(received.body)
    assert set(document) == {"type", "timestamp", "data"}
    assert document["type"] == "item.done"
    assert document["timestamp"].endswith("Z")
    event = event_of(engine, event_id)
    assert datetime.fromisoformat(document["timestamp"]) == event.created_at, "when the event happened"
    assert (event.status, event.attempts, event.last_status) == (DeliveryStatus.DELIVERED, 1, 200)
    assert delivery.deliver(event_id) is None, "a delivered event is never sent again"
    assert len(receiver.received) == 1


def test_each_attempt_has_the_same_id_and_body_and_in_a_rotation_one_signature_per_secret(
    engine: Engine, settings: Settings, receiver: EventReceiver
) -> None:
    event_id = done_item_with_event(engine)
    receiver.answers.append((503, {}))
    delivery = events.Delivery(engine, attached(settings, receiver.url, secret_previous=PREVIOUS_SECRET))

    verdicts = [delivery.deliver(event_id), delivery.deliver(event_id)]
    delivery.close()

    assert verdicts == [events.Verdict.RETRY, events.Verdict.DELIVERED]
    first, second = receiver.received
    assert first.id == second.id == event_id
    assert first.body == second.body
    for received in (first, second):
        current, previous = received.headers["webhook-signature"].split(" ")
        for signature, secret in [(current, SECRET), (previous, PREVIOUS_SECRET)]:
            alone = {**received.headers, "webhook-signature": signature}
            assert signing.verify(alone, received.body, [secret]).id == event_id


@pytest.mark.parametrize("answer", [500, 503, 429, 408, None])
def test_network_errors_5xx_and_429_are_retried_later(
    engine: Engine, settings: Settings, receiver: EventReceiver, answer: int | None
) -> None:
    event_id = done_item_with_event(engine)
    url = REFUSING_URL if answer is None else receiver.url
    receiver.answers.append((answer or 200, {}))
    delivery = events.Delivery(engine, attached(settings, url))
    before = datetime.now(UTC)

    assert delivery.deliver(event_id) is events.Verdict.RETRY
    delivery.close()

    event = event_of(engine, event_id)
    assert (event.status, event.attempts, event.last_status) == (DeliveryStatus.PENDING, 1, answer)
    assert (event.last_error is not None) == (answer is None)
    retry = delivery_jobs(engine)[-1]
    assert retry.args == [event_id]
    assert before + timedelta(seconds=0.5) <= retry.due_at <= datetime.now(UTC) + timedelta(seconds=1)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_fail_the_event_at_once_without_a_retry(
    engine: Engine, settings: Settings, receiver: EventReceiver, status: int
) -> None:
    event_id = done_item_with_event(engine)
    receiver.answers.append((status, {}))
    delivery = events.Delivery(engine, attached(settings, receiver.url))
    jobs_before = len(delivery_jobs(engine))

    assert delivery.deliver(event_id) is events.Verdict.REFUSED
    delivery.close()

    event = event_of(engine, event_id)
    assert (event.status, event.attempts, event.last_status) == (DeliveryStatus.FAILED, 1, status)
    assert len(delivery_jobs(engine)) == jobs_before, "no retry scheduled"


def test_retry_after_from_the_receiver_is_honoured(
    engine: Engine, settings: Settings, receiver: EventReceiver
) -> None:
    event_id = done_item_with_event(engine)
    receiver.answers.append((429, {"Retry-After": "120"}))
    delivery = events.Delivery(engine, attached(settings, receiver.url))
    before = datetime.now(UTC)

    assert delivery.deliver(event_id) is events.Verdict.RETRY
    delivery.close()

    retry = delivery_jobs(engine)[-1]
    assert retry.due_at >= before + timedelta(seconds=120)


def test_the_last_allowed_attempt_fails_the_event(engine: Engine, settings: Settings) -> None:
    event_id = done_item_with_event(engine)
    delivery = events.Delivery(engine, attached(settings, REFUSING_URL, max_attempts=2))

    verdicts = [delivery.deliver(event_id), delivery.deliver(event_id), delivery.deliver(event_id)]
    delivery.close()

    assert verdicts == [events.Verdict.RETRY, events.Verdict.REFUSED, None]
    event = event_of(engine, event_id)
    assert (event.status, event.attempts) == (DeliveryStatus.FAILED, 2)


def test_redrive_gives_a_failed_event_fresh_attempts(
    engine: Engine, settings: Settings, receiver: EventReceiver
) -> None:
    event_id = done_item_with_event(engine)
    receiver.answers.append((400, {}))
    delivery = events.Delivery(engine, attached(settings, receiver.url))
    assert delivery.deliver(event_id) is events.Verdict.REFUSED

    with Session(engine) as session, session.begin():
        assert events.redrive(session, None) == [event_id]
    assert event_of(engine, event_id).status is DeliveryStatus.PENDING
    assert delivery_jobs(engine)[-1].due_at <= datetime.now(UTC)
    assert delivery.deliver(event_id) is events.Verdict.DELIVERED
    delivery.close()

    assert event_of(engine, event_id).status is DeliveryStatus.DELIVERED
    with Session(engine) as session, session.begin():
        assert events.redrive(session, [event_id]) == [], "a delivered event is not re-driven"


def test_backoff_doubles_with_jitter_up_to_ten_minutes() -> None:
    rng = random.Random(13)  # noqa: S311 - jitter, not cryptography
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 512.0), (11, 600.0), (40, 600.0)]:
        delays = [events.retry_delay(attempts, None, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1, "jittered"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    at = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)

    assert events.parse_retry_after("30", at) == 30.0
    assert events.parse_retry_after("Sun, 29 Nov 2026 12:01:00 GMT", at) == 60.0
    assert events.parse_retry_after("soon", at) is None
    assert events.parse_retry_after(None, at) is None


def test_events_are_detached_unless_events_url_is_set(required: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert settings.events.url is None
    assert settings.events.secrets == ()
    assert settings.events.max_attempts == 12


def test_events_url_without_a_secret_names_events_secret(required: pytest.MonkeyPatch) -> None:
    required.setenv("EVENTS_URL", "https://other.example.com/events")

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert problems_of(error) == {"EVENTS_SECRET"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EVENTS_URL", "ftp://other.example.com/events"),
        ("EVENTS_URL", "/events"),
        ("EVENTS_SECRET", "too-short"),
        ("EVENTS_SECRET_PREVIOUS", "too-short"),
        ("EVENTS_MAX_ATTEMPTS", "0"),
    ],
)
def test_invalid_events_settings_are_named(required: pytest.MonkeyPatch, name: str, value: str) -> None:
    required.setenv(name, value)

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert name in problems_of(error)


def test_event_secrets_are_masked_and_the_current_one_comes_first(required: pytest.MonkeyPatch) -> None:
    current, previous = new_secret(), new_secret()
    required.setenv("EVENTS_URL", "https://user:url-hunter2@other.example.com/events")
    required.setenv("EVENTS_SECRET", current)
    required.setenv("EVENTS_SECRET_PREVIOUS", previous)

    settings = load_settings()
    displayed = dict(settings.displayed())

    assert settings.events.secrets == (current, previous)
    assert displayed["EVENTS_SECRET"] == displayed["EVENTS_SECRET_PREVIOUS"] == "********"
    assert displayed["EVENTS_URL"] == "https://user:***@other.example.com/events"
    shown = "\n".join(displayed.values()) + repr(settings)
    for secret in (current, previous, "url-hunter2"):
        assert secret not in shown
