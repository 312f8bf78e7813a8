"""The events speak Standard Webhooks: the spec's reference library (`standardwebhooks`) on the other side.

Both ways: a receiver written only against the library, in a process of its own, accepts what the real
worker sends; and POST /events accepts what the library signs. The service's own signing code never
checks itself here.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.events.models import (
    DeliveryStatus,
    EventDelivery,
    ReceivedEvent,
)
from {{ cookiecutter.package_name }}.events.signing import key_of, new_secret
from {{ cookiecutter.package_name }}.jobs.celery_app import create_celery
from {{ cookiecutter.package_name }}.jobs.tasks import PROCESS_ITEM
from {{ cookiecutter.package_name }}.settings import ConfigurationError, Settings, load_settings
from {{ cookiecutter.package_name }}.web.app import create_app

from conftest import add_items
from processes import STARTUP_TIMEOUT, running_worker, wait_until

if TYPE_CHECKING:
    from starlette.testclient import TestClient

SECRET = new_secret()
PREVIOUS_SECRET = new_secret()
SPEC_RECEIVER = Path(__file__).with_name("spec_receiver.py")
# From the item's job to the receiver's answer; an idle worker takes well under a second.
DELIVERY_TIMEOUT = 30.0


@dataclasses.dataclass
class SpecReceiver:
    process: subprocess.Popen[bytes]
    output: Path

    def lines(self) -> list[dict[str, Any]]:
        complete, _, _ = self.output.read_text().rpartition("\n")
        return [json.loads(line) for line in complete.splitlines()]

    @property
    def url(self) -> str:
        port = wait_until(lambda: next(iter(self.lines()), None), STARTUP_TIMEOUT, "the receiver's port")
        return f"http://127.0.0.1:{port['port']}/webhooks"

    def requests(self) -> list[dict[str, Any]]:
        assert self.process.poll() is None, self.output.read_text()
        return self.lines()[1:]


@pytest.fixture
def spec_receiver(tmp_path: Path) -> Iterator[SpecReceiver]:
    """The other app, knowing the current secret as "current" and the previous one as "previous"."""
    output = tmp_path / "spec-receiver.jsonl"
    secrets = [f"current={SECRET}", f"previous={PREVIOUS_SECRET}"]
    with output.open("wb") as stdout:
        process = subprocess.Popen([sys.executable, str(SPEC_RECEIVER), *secrets], stdout=stdout)
    try:
        yield SpecReceiver(process, output)
    finally:
        process.kill()
        process.wait(timeout=10)


def delivered_event(engine: Engine) -> EventDelivery | None:
    with Session(engine) as session:
        delivered = select(EventDelivery).where(EventDelivery.status == DeliveryStatus.DELIVERED)
        return session.scalars(delivered).one_or_none()


def test_a_receiver_built_on_the_spec_library_accepts_what_the_worker_sends_with_either_secret(
    spec_receiver: SpecReceiver,
    settings: Settings,
    engine: Engine,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    attached = {
        **service_env,
        "EVENTS_URL": spec_receiver.url,
        "EVENTS_SECRET": SECRET,
        "EVENTS_SECRET_PREVIOUS": PREVIOUS_SECRET,
    }
    [item_id] = add_items(engine, 1)
    producer = create_celery(settings)
    try:
        with running_worker(attached, tmp_path):
            producer.send_task(PROCESS_ITEM, args=[item_id])
            [received] = wait_until(
                lambda: spec_receiver.requests() or None, DELIVERY_TIMEOUT, "the event at the receiver"
            )
            delivered = wait_until(lambda: delivered_event(engine), DELIVERY_TIMEOUT, "the delivery recorded")
    finally:
        producer.close()

    assert received["verified_by"] == ["current", "previous"], "a signature per secret, each per the spec"
    assert received["id"] == delivered.id
    payload = received["payload"]
    assert (payload["type"], payload["data"]["id"]) == ("item.done", item_id)
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo == UTC
    assert (delivered.attempts, delivered.last_status) == (1, 200)


def library_signed(secret: str, message_id: str, body: bytes) -> dict[str, str]:
    """The three headers, as a sender using only the reference library would write them."""
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, now, body)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp()))}
    return {**headers, "webhook-signature": signature, "content-type": "application/json"}


@pytest.fixture
def receiving(settings: Settings, truncate_items: Any) -> Iterator[TestClient]:
    from starlette.testclient import TestClient

    truncate_items()
    events = dataclasses.replace(settings.events, secret=SECRET, secret_previous=PREVIOUS_SECRET)
    with TestClient(create_app(dataclasses.replace(settings, events=events))) as client:
        yield client


@pytest.mark.parametrize("secret", [SECRET, PREVIOUS_SECRET], ids=["current", "previous"])
def test_post_events_accepts_an_event_the_spec_library_signed_once_by_its_webhook_id(
    receiving: TestClient, engine: Engine, secret: str
) -> None:
    message_id = f"msg_{uuid.uuid4().hex}"
    document = {"type": "item.done", "timestamp": "2026-11-29T12:00:00.344522Z", "data": {"id": 7}}
    body = json.dumps(document).encode()

    first = receiving.post("/events", content=body, headers=library_signed(secret, message_id, body))
    again = receiving.post("/events", content=body, headers=library_signed(secret, message_id, body))

    assert (first.status_code, first.json()) == (202, {"id": message_id, "status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"id": message_id, "status": "duplicate"})
    with Session(engine) as session:
        [event] = session.scalars(select(ReceivedEvent)).all()
    assert (event.id, event.type, event.data) == (message_id, "item.done", {"id": 7})


def test_the_events_secret_command_prints_a_fresh_secret_the_spec_library_takes() -> None:
    printed = [CliRunner().invoke(main, ["events", "secret"]) for _ in range(2)]

    assert [result.exit_code for result in printed] == [0, 0]
    first, second = (result.output.strip() for result in printed)
    assert first != second
    assert first.startswith("whsec_")
    assert len(key_of(first)) == 32
    signature = Webhook(first).sign("msg_1", datetime.now(UTC), b"{}")
    assert Webhook(first).verify(b"{}", library_headers("msg_1", signature)) == {}


def library_headers(message_id: str, signature: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }


@pytest.mark.parametrize(
    "secret",
    [
        "s" * 40,  # the form before Standard Webhooks: no prefix
        "whsec_" + base64.b64encode(b"k" * 23).decode(),
        "whsec_" + base64.b64encode(b"k" * 65).decode(),
        "whsec_not base64!",
    ],
)
@pytest.mark.parametrize("name", ["EVENTS_SECRET", "EVENTS_SECRET_PREVIOUS"])
def test_a_secret_not_in_the_whsec_form_is_named_with_how_to_make_one(
    required: pytest.MonkeyPatch, name: str, secret: str
) -> None:
    required.setenv(name, secret)

    with pytest.raises(ConfigurationError) as error:
        load_settings()

    assert set(error.value.problems) == {name}
    assert "{{ cookiecutter.project_slug }} events secret" in str(error.value)
    assert secret not in str(error.value)


def test_unpadded_base64_is_accepted_as_the_spec_library_accepts_it(required: pytest.MonkeyPatch) -> None:
    key = b"k" * 32
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    required.setenv("EVENTS_SECRET", unpadded)

    assert load_settings().events.secret == unpadded
    assert key_of(unpadded) == key
