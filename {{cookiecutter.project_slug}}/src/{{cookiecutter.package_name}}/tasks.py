"""The jobs' work, as plain functions of a database session: testable without Celery or a broker.

Every job is idempotent. The worker acknowledges a message only after its job ran (see worker.py), so a
job can be delivered twice (a worker lost mid-job, a process that died between publishing a job and
recording that in the outbox); running it twice must leave the same result as running it once.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Item, ItemStatus

# Message names: the contract between the web process (which sends them) and the worker (which runs them).
PROCESS_ITEM = "items.process"


def process_item(session: Session, item_id: int) -> bool:
    """Compute the item's digest and mark it done. False if there was nothing to do (unknown or done)."""
    # The row lock makes two deliveries of one job running at once take turns; the second then sees `done`.
    statement = select(Item).where(Item.id == item_id).with_for_update()
    item = session.execute(statement).scalar_one_or_none()
    if item is None or item.status is ItemStatus.DONE:
        return False
    item.digest = hashlib.sha256(item.name.encode()).hexdigest()
    item.status = ItemStatus.DONE
    return True
