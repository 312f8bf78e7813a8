"""Incoming events (events/incoming.py): POST /events verifies a Standard Webhook, records each webhook-id
once, and leaves the work to the worker.

Through the app in process, on the real PostgreSQL and Redis; the worker's side (tasks.handle_event) on a
real session.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from {{ cookiecutter.package_name }}.events import signing
from {{ cookiecutter.package_name }}.events.jobs import HANDLE_EVENT, handle_event
from {{ cookiecutter.package_name }}.events.models import ReceivedEvent
from {{ cookiecutter.package_name }}.events.signing import new_secret
from {{ cookiecutter.package_name }}.settings import (
    Settings,
)
from {{ cookiecutter.package_name }}.web.app import (
    create_app,
)

if TYPE_CHECKING:
    from starlette.testclient import TestClient

# When the event happened, in the spec's payload: ISO 8601, UTC.
NOW = "2026-11-29T12:00:00.000000Z"

SECRET = new_secret()
PREVIOUS_SECRET = new_secret()
# The queue is named after the package (see jobs/worker.py).
QUEUE = "{{ cookiecutter.package_name }}"


@pytest.fixture
def receiving(settings: Settings, truncate_items: Any) -> Iterator[TestClient]:
    from starlette.testclient import TestClient

    truncate_items()
    rotating = dataclasses.replace(
        settings,
        events=dataclasses.replace(settings.events, secret=SECRET, secret_previous=PREVIOUS_SECRET),
    )
    with TestClient(create_app(rotating)) as client:
        yield client


def event_body(**document: Any) -> bytes:
    return json.dumps(
        {"type": "item.done", "timestamp": NOW, "data": {"id": 1, "name": "one"}, **document}
    ).encode()


def signed_event(
    event_id: str = "evt-1", timestamp: float | None = None, secret: str = SECRET, body: bytes | None = None
) -> tuple[bytes, dict[str, str]]:
    body = event_body() if body is None else body
    at = int(time.time() if timestamp is None else timestamp)
    return body, {"Content-Type": "application/json", **signing.headers([secret], event_id, at, body)}


def queued_tasks(redis_url: str) -> list[tuple[str, str]]:
    """(name, arguments) of the messages waiting in the service's queue."""
    with redis.Redis.from_url(redis_url) as database:
        raw: list[bytes] = database.lrange(QUEUE, 0, -1)
    headers = [json.loads(message)["headers"] for message in raw]
    return [(header["task"], header["argsrepr"]) for header in headers]


def received_events(engine: Engine) -> list[ReceivedEvent]:
    with Session(engine) as session:
        return list(session.scalars(select(ReceivedEvent)))


def test_a_new_signed_event_is_recorded_and_its_job_queued_for_the_worker(
    receiving: TestClient, engine: Engine, redis_url: str
) -> None:
    body, headers = signed_event()

    answer = receiving.post("/events", content=body, headers=headers)

    assert answer.status_code == 202
    assert answer.json() == {"id": "evt-1", "status": "accepted"}
    [event] = received_events(engine)
    assert (event.id, event.type, event.handled_at) == ("evt-1", "item.done", None)
    assert queued_tasks(redis_url) == [(HANDLE_EVENT, "['evt-1']")]


def test_a_second_delivery_of_an_event_is_a_200_that_changes_nothing(
    receiving: TestClient, engine: Engine
) -> None:
    body, headers = signed_event()
    assert receiving.post("/events", content=body, headers=headers).status_code == 202
    recorded = [(e.id, e.received_at) for e in received_events(engine)]
    body, headers = signed_event(timestamp=time.time() + 1)

    answer = receiving.post("/events", content=body, headers=headers)

    assert answer.status_code == 200
    assert answer.json() == {"id": "evt-1", "status": "duplicate"}
    assert [(e.id, e.received_at) for e in received_events(engine)] == recorded


def test_an_event_signed_with_the_previous_secret_is_accepted(receiving: TestClient, engine: Engine) -> None:
    body, headers = signed_event(secret=PREVIOUS_SECRET)

    assert receiving.post("/events", content=body, headers=headers).status_code == 202


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("webhook-signature", None),
        ("webhook-signature", "v1," + "A" * 43 + "="),
        ("webhook-signature", "v1a," + "A" * 86 + "=="),
        ("webhook-signature", "sha256=" + "0" * 64),
        ("webhook-id", None),
        ("webhook-id", "evt-2"),
        ("webhook-id", "x" * 101),
        ("webhook-timestamp", None),
        ("webhook-timestamp", "soon"),
        ("webhook-timestamp", "1e3"),
    ],
)
def test_missing_malformed_or_forged_headers_are_a_401_that_changes_nothing(
    receiving: TestClient, engine: Engine, header: str, value: str | None
) -> None:
    body, headers = signed_event()
    del headers[header]
    if value is not None:
        headers[header] = value

    answer = receiving.post("/events", content=body, headers=headers)

    assert answer.status_code == 401
    assert answer.json()["error"]["status"] == 401
    assert received_events(engine) == []


@pytest.mark.parametrize(
    ("signed_id", "skew", "signed_body"),
    [("evt-2", 0, None), ("evt-1", -1, None), ("evt-1", 0, event_body(type="item.gone"))],
    ids=["another id", "another timestamp", "another body"],
)
def test_a_signature_of_another_id_timestamp_or_body_is_a_401(
    receiving: TestClient, engine: Engine, signed_id: str, skew: int, signed_body: bytes | None
) -> None:
    body, headers = signed_event()
    timestamp = int(headers["webhook-timestamp"]) + skew
    key = signing.key_of(SECRET)
    headers["webhook-signature"] = signing.signature(key, signed_id, timestamp, signed_body or body)

    assert receiving.post("/events", content=body, headers=headers).status_code == 401
    assert received_events(engine) == []


def test_an_event_signed_with_another_secret_is_a_401(receiving: TestClient, engine: Engine) -> None:
    body, headers = signed_event(secret=new_secret())

    assert receiving.post("/events", content=body, headers=headers).status_code == 401
    assert received_events(engine) == []


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_a_stale_or_future_timestamp_is_a_400_that_changes_nothing(
    receiving: TestClient, engine: Engine, skew: int
) -> None:
    body, headers = signed_event(timestamp=time.time() + skew)

    answer = receiving.post("/events", content=body, headers=headers)

    assert answer.status_code == 400
    assert "webhook-timestamp" in answer.json()["error"]["message"]
    assert received_events(engine) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"type": "item.done"}',
        event_body(type=1),
        event_body(type=""),
        event_body(timestamp=1764417600),
        event_body(timestamp="2026-11-29T12:00:00"),
        event_body(timestamp="yesterday"),
        event_body(data=[1]),
    ],
)
def test_a_signed_body_that_is_not_an_event_is_a_422(
    receiving: TestClient, engine: Engine, body: bytes
) -> None:
    body, headers = signed_event(body=body)

    answer = receiving.post("/events", content=body, headers=headers)

    assert answer.status_code == 422
    assert received_events(engine) == []


def test_without_a_secret_every_incoming_event_is_a_401(client: TestClient, engine: Engine) -> None:
    body, headers = signed_event()

    assert client.post("/events", content=body, headers=headers).status_code == 401
    assert received_events(engine) == []


def test_the_worker_handles_a_received_event_once(receiving: TestClient, engine: Engine) -> None:
    body, headers = signed_event()
    assert receiving.post("/events", content=body, headers=headers).status_code == 202

    with Session(engine) as session, session.begin():
        assert handle_event(session, "evt-1") is True
    with Session(engine) as session, session.begin():
        assert handle_event(session, "evt-1") is False

    [event] = received_events(engine)
    assert event.handled_at is not None
