"""The jobs' work, as plain functions of a database connection: testable without Celery or a broker.

Every job is idempotent: messages are acknowledged only after their job ran, so one can arrive twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from sqlalchemy import Connection, bindparam, select, update

from ..models import Item, ItemStatus, OutboxJob

# Message name: a contract between the senders and the worker.
PROCESS_ITEM = "items.process"
# Records, in the item's transaction, that it is done; returns its job, to publish after the commit.
Announce = Callable[[Connection, Item], OutboxJob]

# Core statements on a Connection: a Session's load and flush cost more than the job's queries.
ITEMS = Item.metadata.tables[Item.__tablename__]
# Two deliveries of one job take turns; the second sees `done`.
LOCK_ITEM = select(ITEMS.c.name, ITEMS.c.status).where(ITEMS.c.id == bindparam("item_id")).with_for_update()
FINISH_ITEM = (
    update(ITEMS)
    .where(ITEMS.c.id == bindparam("item_id"))
    .values(digest=bindparam("digest"), status=ItemStatus.DONE)
)


def process_item(connection: Connection, item_id: int, announce: Announce | None = None) -> bool:
    """Compute the item's digest and mark it done. False if there was nothing to do (unknown or done).

    `announce` records, in the same transaction, that the item is done (events/outgoing.py, when on)."""
    item = connection.execute(LOCK_ITEM, {"item_id": item_id}).one_or_none()
    if item is None or item.status is ItemStatus.DONE:
        return False
    digest = hashlib.sha256(item.name.encode()).hexdigest()
    connection.execute(FINISH_ITEM, {"item_id": item_id, "digest": digest})
    if announce is not None:
        announce(connection, Item(id=item_id, name=item.name, status=ItemStatus.DONE, digest=digest))
    return True
