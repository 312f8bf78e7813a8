"""The jobs' work, as plain functions of a database session: testable without Celery or a broker.

Every job is idempotent: messages are acknowledged only after their job ran, so one can arrive twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Item, ItemStatus, ReceivedEvent

# Message names: a contract between the senders and the worker.
PROCESS_ITEM = "items.process"
HANDLE_EVENT = "events.handle"


def process_item(
    session: Session, item_id: int, announce: Callable[[Session, Item], object] | None = None
) -> bool:
    """Compute the item's digest and mark it done. False if there was nothing to do (unknown or done).

    `announce` records, in the same transaction, that the item is done (events/outgoing.py, when on)."""
    # Two deliveries of one job take turns; the second sees `done`.
    statement = select(Item).where(Item.id == item_id).with_for_update()
    item = session.execute(statement).scalar_one_or_none()
    if item is None or item.status is ItemStatus.DONE:
        return False
    item.digest = hashlib.sha256(item.name.encode()).hexdigest()
    item.status = ItemStatus.DONE
    if announce is not None:
        announce(session, item)
    return True


def handle_event(session: Session, event_id: str) -> bool:
    """Act on an event another app sent (events/incoming.py). False if already handled.

    A real service would do its work here, to commit together with the mark.
    """
    statement = select(ReceivedEvent).where(ReceivedEvent.id == event_id).with_for_update()
    event = session.execute(statement).scalar_one_or_none()
    if event is None or event.handled_at is not None:
        return False
    event.handled_at = datetime.now(UTC)
    return True
