"""Other apps as backing services: service A sends `item.done` events to service B, attached by URL.

Slow: the default bake is installed once and run as two apps (see events_support.py), each with its own
database on the shared PostgreSQL and its own private redis-server (fault_support.py): nothing another
test run does to the shared Redis can reach them. A runs web, worker and clock; B runs web and worker.
Every wait is a polled condition with a generous bound; the times measured are printed (`pytest -s`).
"""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from events_support import EVENTS_SECRET, App, scripted_receiver, signature
from fault_support import private_redis
from processes import free_port, fresh_database, http, poll
from support import InstalledService, Installer

pytestmark = pytest.mark.slow

# Bounds for conditions that usually hold within a second or two (a delivery, a retry after B returns).
DELIVERY_BOUND = 90.0
# Well-formed, so only the signature is wrong: 24 bytes that are not the shared secret's.
FORGED_SECRET = "whsec_" + base64.b64encode(b"not-the-shared-secret-" + b"x" * 2).decode()
# How long B stays down: long enough for A to fail several attempts, backing off between them.
FAILED_ATTEMPTS_WHILE_DOWN = 3


@pytest.fixture(scope="module")
def service(install: Installer) -> InstalledService:
    return install("default")


@contextlib.contextmanager
def app(name: str, service: InstalledService, servers: dict[str, str], folder: Path) -> Iterator[App]:
    folder.mkdir()
    with (
        fresh_database(service, servers["DATABASE_URL"], folder) as database_url,
        private_redis() as redis,
    ):
        attached = App(name, service, database_url, redis.url, free_port(), folder)
        attached.migrate()
        yield attached


@pytest.fixture(scope="module")
def apps(
    service: InstalledService, backing_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[App, App]]:
    root = tmp_path_factory.mktemp("events")
    with (
        app("A", service, backing_services, root / "a") as a,
        app("B", service, backing_services, root / "b") as b,
    ):
        yield a, b


@pytest.fixture
def a(apps: tuple[App, App]) -> App:
    apps[0].truncate()
    return apps[0]


@pytest.fixture
def b(apps: tuple[App, App]) -> App:
    apps[1].truncate()
    return apps[1]


def create_item(app: App) -> int:
    created = http("POST", f"{app.base_url}/items", {"name": f"item {uuid.uuid4().hex[:8]}"}, timeout=30)
    assert created.status == 201, created.body
    return int(created.json()["id"])


def delivery_of(a: App, item_id: int) -> dict[str, Any] | None:
    """A's record of the item's event: id, status, attempts, last_status, last_error."""
    rows = a.query(
        "SELECT id, status, attempts, last_status, last_error FROM event_deliveries "
        f"WHERE (data->>'id')::bigint = {int(item_id)}"
    )
    if not rows:
        return None
    assert len(rows) == 1, f"item {item_id} has {len(rows)} events"
    return dict(zip(["id", "status", "attempts", "last_status", "last_error"], rows[0], strict=True))


def wait_for_delivery(a: App, item_id: int, status: str, bound: float = DELIVERY_BOUND) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        delivery = delivery_of(a, item_id)
        return delivery if delivery is not None and delivery["status"] == status else None

    found = poll(reached, bound)
    assert found, f"item {item_id}'s event never became {status}: {delivery_of(a, item_id)}"
    return found


def received_in_b(b: App, event_id: str) -> list[list[Any]]:
    """B's rows for the event: (handled by B's worker?)."""
    return b.query(f"SELECT handled_at IS NOT NULL FROM received_events WHERE id = '{event_id}'")


def test_an_item_done_in_a_arrives_in_b_exactly_once(a: App, b: App) -> None:
    with b.formation(clock=False), a.formation(clock=False, EVENTS_URL=b.events_url):
        began = time.monotonic()
        item_id = create_item(a)
        delivery = wait_for_delivery(a, item_id, "delivered")
        arrived = time.monotonic() - began
        assert poll(lambda: received_in_b(b, delivery["id"]) == [[True]], DELIVERY_BOUND)

    print(f"\nitem created in A to event delivered to B: {arrived:.2f} s")
    assert (delivery["attempts"], delivery["last_status"]) == (1, 202)
    assert b.query("SELECT count(*) FROM received_events") == [[1]]


def test_b_down_for_a_while_gets_the_event_exactly_once_when_it_returns_with_no_restart_of_a(
    a: App, b: App
) -> None:
    with b.running("worker"), a.formation(EVENTS_URL=b.events_url) as a_worker:
        item_id = create_item(a)
        failing = poll(
            lambda: (d := delivery_of(a, item_id)) and d["attempts"] >= FAILED_ATTEMPTS_WHILE_DOWN and d,
            DELIVERY_BOUND,
        )
        assert failing, f"A never failed {FAILED_ATTEMPTS_WHILE_DOWN} attempts: {delivery_of(a, item_id)}"
        with b.running("web"):
            returned = time.monotonic()
            delivery = wait_for_delivery(a, item_id, "delivered")
            healed = time.monotonic() - returned
            assert poll(lambda: received_in_b(b, delivery["id"]) == [[True]], DELIVERY_BOUND)
        a_restarted = a_worker.poll() is not None

    print(
        f"\nB down: {failing['attempts']} failed attempts ({failing['last_error']}); "
        f"delivered {healed:.1f} s after B returned"
    )
    assert (failing["status"], failing["last_status"]) == ("pending", None)
    assert delivery["attempts"] > failing["attempts"]
    assert not a_restarted
    assert b.query("SELECT count(*) FROM received_events") == [[1]]


def test_b_answering_500_twice_then_200_gets_it_once_after_three_recorded_attempts(a: App) -> None:
    with scripted_receiver([500, 500]) as receiver, a.formation(EVENTS_URL=receiver.url):
        item_id = create_item(a)
        delivery = wait_for_delivery(a, item_id, "delivered")

    assert (delivery["attempts"], delivery["last_status"]) == (3, 200)
    assert receiver.event_ids() == [delivery["id"]] * 3, "the same event id on every attempt"


def test_b_answering_400_is_not_retried_and_the_redrive_command_delivers_it_once_b_is_fixed(a: App) -> None:
    with scripted_receiver([400]) as receiver, a.formation(EVENTS_URL=receiver.url):
        item_id = create_item(a)
        failed = wait_for_delivery(a, item_id, "failed")
        retries_left = a.query(f"SELECT count(*) FROM job_outbox WHERE args::text LIKE '%{failed['id']}%'")
        listed = a.command("events", "list", "--status", "failed")
        redriven = a.command("events", "redrive", failed["id"])
        delivery = wait_for_delivery(a, item_id, "delivered")

    assert (failed["attempts"], failed["last_status"]) == (1, 400)
    assert retries_left == [[0]], "no retry scheduled after a 400"
    assert listed.returncode == redriven.returncode == 0
    assert f"{failed['id']}\titem.done\tfailed\t1\t400\t" in listed.stdout
    assert f"{failed['id']}\tre-driven" in redriven.stdout
    assert (delivery["attempts"], delivery["last_status"]) == (1, 200)
    assert receiver.event_ids() == [failed["id"]] * 2


def event() -> dict[str, Any]:
    """The Standard Webhooks payload: the id and the attempt's time travel in the headers."""
    return {"type": "item.done", "timestamp": "2026-11-29T12:00:00.000000Z", "data": {"id": 1}}


def test_forged_stale_and_replayed_events_get_their_documented_status_from_b_and_change_nothing(
    b: App,
) -> None:
    def post(event_id: str, timestamp: float | None = None, secret: str = EVENTS_SECRET) -> int:
        headers = signature(event_id, event(), secret, timestamp)
        return http("POST", b.events_url, event(), headers=headers).status

    with b.running("web"):
        first, replayed = post("evt-original"), post("evt-original")
        before = b.query("SELECT id, received_at FROM received_events")
        forged = post("evt-forged", secret=FORGED_SECRET)
        stale = post("evt-stale", timestamp=time.time() - 3600)
        after = b.query("SELECT id, received_at FROM received_events")

    assert (first, replayed, forged, stale) == (202, 200, 401, 400)
    assert [row[0] for row in before] == ["evt-original"]
    assert after == before


def test_detaching_by_unsetting_events_url_stops_deliveries_with_no_code_change(a: App, b: App) -> None:
    with b.formation(clock=False):
        with a.formation(clock=False, EVENTS_URL=b.events_url):
            attached = create_item(a)
            wait_for_delivery(a, attached, "delivered")
        with a.formation(clock=False):
            detached = create_item(a)
            done = poll(
                lambda: a.query(f"SELECT status FROM items WHERE id = {detached}") == [["done"]],
                DELIVERY_BOUND,
            )
        config = a.command("config")

    assert done, "A's worker never did the item"
    assert delivery_of(a, detached) is None, "no event recorded while detached"
    assert b.query("SELECT count(*) FROM received_events") == [[1]]
    assert "EVENTS_URL=\n" in config.stdout
