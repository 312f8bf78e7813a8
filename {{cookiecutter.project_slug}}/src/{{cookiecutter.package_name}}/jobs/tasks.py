"""The jobs' work, as plain functions of a database session: testable without Celery or a broker.

Every job is idempotent: messages are acknowledged only after their job ran, so one can arrive twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Item, ItemStatus

# Message name: a contract between the senders and the worker.
PROCESS_ITEM = "items.process"
# Records, in the item's transaction, that it is done.
Announce = Callable[[Session, Item], object]


def process_item(session: Session, item_id: int, announce: Announce | None = None) -> bool:
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
