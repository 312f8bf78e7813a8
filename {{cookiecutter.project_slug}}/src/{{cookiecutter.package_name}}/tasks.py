"""The jobs' work, as plain functions of a database session: testable without Celery or a broker.

Every job is idempotent. The worker acknowledges a message only after its job ran (see worker.py), so a
job can be delivered twice (a worker lost mid-job, a clock that re-enqueued it); running it twice must
leave the same result as running it once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .models import Item, ItemStatus

# Message names: the contract between the web process (which sends them) and the worker (which runs them).
PROCESS_ITEM = "items.process"
REQUEUE_PENDING_ITEMS = "items.requeue_pending"

# One sweep re-enqueues at most this many items; the next sweep takes the rest.
SWEEP_BATCH = 500


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


def claim_stale_pending_items(session: Session, pending_for: timedelta) -> list[int]:
    """Ids of items pending longer than `pending_for`, each claimed by touching its `updated_at`.

    Claiming in the same UPDATE means a second clock sweeping at the same moment finds nothing to claim,
    and an item whose job is merely queued behind a backlog is enqueued again at most once per period.
    """
    cutoff = datetime.now(UTC) - pending_for
    is_stale = (Item.status == ItemStatus.PENDING) & (Item.updated_at < cutoff)
    batch = select(Item.id).where(is_stale).order_by(Item.id).limit(SWEEP_BATCH)
    # `is_stale` again in the UPDATE: PostgreSQL re-checks it on each row after waiting for another sweep's
    # lock, so a row that sweep just claimed is skipped here.
    claim = update(Item).where(Item.id.in_(batch), is_stale).values(updated_at=func.now()).returning(Item.id)
    return sorted(session.scalars(claim).all())
