"""Outgoing events: another app attached by URL (EVENTS_URL) hears when an item is done, reliably.

1. `record_item_done` adds an `EventDelivery` row and an outbox job to deliver it, in the transaction that
   marks the item done (see jobs/tasks.py): if the item is done, its event will be delivered, whatever fails.
2. The clock's relay publishes the job; the worker runs `Delivery.deliver`: one signed POST with timeouts.
3. Its outcome decides what follows (`judge`): 2xx is delivered; a network error, 5xx or 429 is retried
   (a new outbox job, due after an exponential backoff with jitter, or after the receiver's Retry-After);
   any other 4xx will not get better by itself, so it is failed at once, as is the last allowed attempt.
4. A failed event waits for an operator: `<slug> events list --status failed`, then, once the receiver
   is fixed, `<slug> events redrive ID...` (factor XII), which gives it a fresh set of attempts.

Each attempt carries the same event id, so a receiver that got an event but whose answer was lost
deduplicates the retry. Each attempt is signed afresh with the time it was sent (see events/signing.py).

HTTP client: httpx2 (a maintained httpx line; Starlette's TestClient already uses it, so the service
depends on one HTTP stack, not two). It sets connect and read timeouts separately, pools connections
with hard limits, and one `Client` per worker process is created on first use (after the fork) and
closed when the process stops.
"""

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
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from ..jobs import outbox
from ..models import DeliveryStatus, EventDelivery, Item, OutboxJob
from ..settings import Settings
from . import signing

logger = logging.getLogger(__name__)

# Message name of the job that makes one delivery attempt.
DELIVER_EVENT = "events.deliver"
ITEM_DONE = "item.done"
# A receiver that does not accept a connection within 5 s is down; one that takes over 10 s to answer
# is treated as down too (the event is retried), so a stuck receiver cannot hold a worker's pool process.
TIMEOUT = httpx2.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0)
# A pool process makes one delivery at a time; a couple of kept-alive connections serve its retries.
LIMITS = httpx2.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=30.0)
# Backoff between attempts: 1, 2, 4 ... s, at most 10 minutes, each with jitter (below).
FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 600.0
# A receiver's Retry-After is honoured up to this long.
MAX_RETRY_AFTER = 3600.0
# Statuses that say "try again later"; every other 4xx says the request itself is wrong.
RETRIED_STATUSES = frozenset({408, 425, 429})


def now() -> datetime:
    return datetime.now(UTC)


def record_item_done(session: Session, item: Item) -> OutboxJob:
    """Record the `item.done` event and the job delivering it, in `session`'s transaction.

    The worker publishes the job after its commit, as the web does its jobs (see jobs/outbox.py); the
    clock's relay takes over if that publish fails.
    """
    data = {"id": item.id, "name": item.name, "status": item.status.value, "digest": item.digest}
    event = EventDelivery(id=str(uuid.uuid4()), type=ITEM_DONE, data=data, attempts=0)
    session.add(event)
    job = outbox.record_job(DELIVER_EVENT, [event.id], None)
    session.add(job)
    return job


def body(event: EventDelivery, sent_at: datetime) -> bytes:
    """The bytes POSTed (and signed): the event's id, type and data, and the time of this attempt."""
    document = {"id": event.id, "type": event.type, "timestamp": int(sent_at.timestamp()), "data": event.data}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


@dataclass(frozen=True)
class Attempt:
    """How one POST ended: an HTTP status, or the network error that stopped it."""

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
    """Seconds before the next attempt, after `attempts` attempts.

    "Equal jitter": half the exponential delay, plus a random part of the other half, so the retries of
    many events that failed together (a receiver's outage) spread out instead of arriving at once.
    """
    ceiling = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * float(1 << min(attempts - 1, 30)))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, at: datetime) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - at).total_seconds())


def post(client: httpx2.Client, url: str, secret: str, event: EventDelivery) -> Attempt:
    """One signed POST of `event`; never raises for the receiver's or the network's failures."""
    sent_at = now()
    content = body(event, sent_at)
    headers = {"Content-Type": "application/json", signing.SIGNATURE_HEADER: signing.sign(content, secret)}
    try:
        response = client.post(url, content=content, headers=headers)
    except httpx2.HTTPError as exc:  # refused, reset, timed out, TLS failure...
        return Attempt(status=None, error=exc.__class__.__name__)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), sent_at)
    return Attempt(status=response.status_code, retry_after=retry_after)


class Delivery:
    """The worker's side: delivers events with one HTTP client per process."""

    def __init__(self, engine: Engine, settings: Settings, rng: random.Random | None = None) -> None:
        self.engine = engine
        self.settings = settings
        # Jitter spreads retries out; nothing secret depends on it, so no cryptographic generator.
        self.rng = rng or random.Random()  # noqa: S311  # nosec B311
        self._client: httpx2.Client | None = None

    @property
    def client(self) -> httpx2.Client:
        # Created on first use, in the process that uses it: connections never cross a fork.
        if self._client is None:
            self._client = httpx2.Client(timeout=TIMEOUT, limits=LIMITS, follow_redirects=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def deliver(self, event_id: str) -> Verdict | None:
        """Make one attempt, record it, and schedule the next if one is due. None if nothing to do."""
        url, secret = self.settings.events_url, self.settings.events_secret
        with Session(self.engine) as session:
            event = session.get(EventDelivery, event_id)
            if event is None or event.status is not DeliveryStatus.PENDING:
                return None
            if url is None or secret is None:
                # Detached since the event was recorded: it stays pending, for a re-drive once attached.
                logger.warning("Event %s not sent: detached", event_id, extra={"event_id": event_id})
                return None
            session.expunge(event)
        attempt = post(self.client, url, secret, event)
        return self.record(event, attempt)

    def record(self, event: EventDelivery, attempt: Attempt) -> Verdict | None:
        attempts = event.attempts + 1
        verdict = attempt.verdict
        if verdict is Verdict.RETRY and attempts >= self.settings.events_max_attempts:
            verdict = Verdict.REFUSED
        status = {
            Verdict.DELIVERED: DeliveryStatus.DELIVERED,
            Verdict.RETRY: DeliveryStatus.PENDING,
            Verdict.REFUSED: DeliveryStatus.FAILED,
        }[verdict]
        outcome = {"attempts": attempts, "status": status, "last_status": attempt.status}
        with Session(self.engine) as session, session.begin():
            # Only if no other delivery of the same job recorded an attempt meanwhile (a redelivered job).
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
    """Give failed events (those in `event_ids`, or all) a fresh set of attempts; returns their ids.

    Pending events named in `event_ids` are re-driven too (say, events recorded while detached).
    """
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
