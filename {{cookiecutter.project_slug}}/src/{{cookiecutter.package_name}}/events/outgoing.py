"""Outgoing events: the app at EVENTS_URL (factor IV) hears when an item is done, retried with backoff."""

from __future__ import annotations

import enum
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.orm import Session

from ..jobs import outbox
from ..models import Item, OutboxJob
from . import signing
from .models import DeliveryStatus, EventDelivery
from .settings import EventSettings

logger = logging.getLogger(__name__)

DELIVER_EVENT = "events.deliver"
ITEM_DONE = "item.done"
# A slow receiver is down (retried later): it cannot hold a pool process.
TIMEOUT = httpx2.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0)
# One delivery at a time per pool process.
LIMITS = httpx2.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=30.0)
FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 600.0
MAX_RETRY_AFTER = 3600.0
# "Try again later"; any other 4xx says the request is wrong.
RETRIED_STATUSES = frozenset({408, 425, 429})


def now() -> datetime:
    return datetime.now(UTC)


def record_item_done(connection: Connection, item: Item) -> OutboxJob:
    """The event and its delivery job, in `connection`'s transaction."""
    data = {"id": item.id, "name": item.name, "status": item.status.value, "digest": item.digest}
    event_id = str(uuid.uuid4())
    connection.execute(insert(EventDelivery).values(id=event_id, type=ITEM_DONE, data=data, attempts=0))
    job = outbox.record_job(DELIVER_EVENT, [event_id], None)
    job.id = connection.execute(outbox.INSERT_JOB, outbox.job_row(job)).scalar_one()
    return job


def body(event: EventDelivery) -> bytes:
    """The spec's recommended payload, the same on every attempt: the id travels in the webhook-id header."""
    created = event.created_at
    # SQLite (the zero-server run) hands back its UTC CURRENT_TIMESTAMP without a zone.
    occurred = (created if created.tzinfo else created.replace(tzinfo=UTC)).astimezone(UTC)
    document = {
        "type": event.type,
        "timestamp": occurred.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": event.data,
    }
    return json.dumps(document, separators=(",", ":")).encode()


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def verdict(self) -> Verdict:
        if self.status is None or self.status >= 500 or self.status in RETRIED_STATUSES:
            return Verdict.RETRY
        if 200 <= self.status < 300:
            return Verdict.DELIVERED
        return Verdict.REFUSED


def retry_delay(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before the next attempt; "equal jitter" spreads out events that failed together."""
    ceiling = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * float(1 << min(attempts - 1, 30)))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, at: datetime) -> float | None:
    """Retry-After in seconds, given as seconds or as an HTTP date (RFC 9110)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - at).total_seconds())


def post(client: httpx2.Client, url: str, secrets: tuple[str, ...], event: EventDelivery) -> Attempt:
    """One POST signed with each secret; never raises for the receiver's or the network's failures."""
    sent_at = now()
    content = body(event)
    signed = signing.headers(secrets, event.id, int(sent_at.timestamp()), content)
    headers = {"Content-Type": "application/json", **signed}
    try:
        response = client.post(url, content=content, headers=headers)
    except httpx2.HTTPError as exc:  # refused, reset, timed out, TLS failure...
        return Attempt(status=None, error=exc.__class__.__name__)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), sent_at)
    return Attempt(status=response.status_code, retry_after=retry_after)


class Delivery:
    def __init__(self, engine: Engine, settings: EventSettings, rng: random.Random | None = None) -> None:
        self.engine = engine
        self.settings = settings
        # Nothing secret depends on jitter.
        self.rng = rng or random.Random()  # noqa: S311  # nosec B311
        self._client: httpx2.Client | None = None

    @property
    def client(self) -> httpx2.Client:
        # Created after the fork: connections never cross one.
        if self._client is None:
            self._client = httpx2.Client(timeout=TIMEOUT, limits=LIMITS, follow_redirects=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def deliver(self, event_id: str) -> Verdict | None:
        """One attempt, recorded, and the next scheduled if due; None if nothing to do."""
        url, secrets = self.settings.url, self.settings.secrets
        with Session(self.engine) as session:
            event = session.get(EventDelivery, event_id)
            if event is None or event.status is not DeliveryStatus.PENDING:
                return None
            if url is None or not self.settings.secret:
                # Detached since it was recorded: pending, for a re-drive.
                logger.warning("Event %s not sent: detached", event_id, extra={"event_id": event_id})
                return None
            session.expunge(event)
        attempt = post(self.client, url, secrets, event)
        return self.record(event, attempt)

    def record(self, event: EventDelivery, attempt: Attempt) -> Verdict | None:
        attempts = event.attempts + 1
        verdict = attempt.verdict
        if verdict is Verdict.RETRY and attempts >= self.settings.max_attempts:
            verdict = Verdict.REFUSED
        status = {
            Verdict.DELIVERED: DeliveryStatus.DELIVERED,
            Verdict.RETRY: DeliveryStatus.PENDING,
            Verdict.REFUSED: DeliveryStatus.FAILED,
        }[verdict]
        outcome = {"attempts": attempts, "status": status, "last_status": attempt.status}
        with Session(self.engine) as session, session.begin():
            # Unless a redelivered job recorded an attempt meanwhile.
            recorded = session.execute(
                update(EventDelivery)
                .where(EventDelivery.id == event.id, EventDelivery.attempts == event.attempts)
                .where(EventDelivery.status == DeliveryStatus.PENDING)
                .values(**outcome, last_error=attempt.error)
            )
            if recorded.rowcount != 1:  # type: ignore[attr-defined]
                return None
            if verdict is Verdict.RETRY:
                delay = timedelta(seconds=retry_delay(attempts, attempt.retry_after, self.rng))
                session.add(outbox.record_job(DELIVER_EVENT, [event.id], None, delay=delay))
        log_attempt(event.id, attempts, attempt, verdict)
        return verdict


def log_attempt(event_id: str, attempts: int, attempt: Attempt, verdict: Verdict) -> None:
    outcome = attempt.status if attempt.status is not None else attempt.error
    extra: dict[str, Any] = {"event_id": event_id, "attempts": attempts, "outcome": outcome}
    level = logging.WARNING if verdict is Verdict.REFUSED else logging.INFO
    logger.log(level, "Event %s attempt %d: %s, %s", event_id, attempts, outcome, verdict.value, extra=extra)


def redrive(session: Session, event_ids: list[str] | None) -> list[str]:
    """Fresh attempts for the failed events, or those named (pending ones too); returns their ids."""
    statement = select(EventDelivery).where(EventDelivery.status != DeliveryStatus.DELIVERED)
    if event_ids is None:
        statement = statement.where(EventDelivery.status == DeliveryStatus.FAILED)
    else:
        statement = statement.where(EventDelivery.id.in_(event_ids))
    events = list(session.scalars(statement.with_for_update()))
    for event in events:
        event.status = DeliveryStatus.PENDING
        event.attempts = 0
        session.add(outbox.record_job(DELIVER_EVENT, [event.id], None, delay=timedelta(0)))
    return [event.id for event in events]


def listed(session: Session, status: DeliveryStatus | None) -> list[EventDelivery]:
    statement = select(EventDelivery).order_by(EventDelivery.created_at, EventDelivery.id)
    if status is not None:
        statement = statement.where(EventDelivery.status == status)
    return list(session.scalars(statement))
