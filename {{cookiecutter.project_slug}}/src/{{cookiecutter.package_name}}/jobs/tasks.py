"""The jobs' work, as plain functions of a database session: testable without Celery or a broker.

Every job is idempotent. The worker acknowledges a message only after its job ran (see jobs/worker.py), so a
job can be delivered twice (a worker lost mid-job, a process that died between publishing a job and
recording that in the outbox); running it twice must leave the same result as running it once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..events import outgoing as events
from ..models import Item, ItemStatus, ReceivedEvent

# Message names: the contract between the web process (which sends them) and the worker (which runs them).
PROCESS_ITEM = "items.process"
HANDLE_EVENT = "events.handle"


def process_item(session: Session, item_id: int, announce: bool = False) -> bool:
    """Compute the item's digest and mark it done. False if there was nothing to do (unknown or done).

    With `announce` (EVENTS_URL set), the `item.done` event is recorded in the same transaction.
    """
    # The row lock makes two deliveries of one job running at once take turns; the second then sees `done`.
    statement = select(Item).where(Item.id == item_id).with_for_update()
    item = session.execute(statement).scalar_one_or_none()
    if item is None or item.status is ItemStatus.DONE:
        return False
    item.digest = hashlib.sha256(item.name.encode()).hexdigest()
    item.status = ItemStatus.DONE
    if announce:
        events.record_item_done(session, item)
    return True


def handle_event(session: Session, event_id: str) -> bool:
    """Act on an event another app sent (events/incoming.py recorded it). False if already handled.

    The example's action is to mark it handled; a real service would update its own data here, in the
    same transaction, so the mark and the work commit together.
    """
    statement = select(ReceivedEvent).where(ReceivedEvent.id == event_id).with_for_update()
    event = session.execute(statement).scalar_one_or_none()
    if event is None or event.handled_at is not None:
        return False
    event.handled_at = datetime.now(UTC)
    return True
