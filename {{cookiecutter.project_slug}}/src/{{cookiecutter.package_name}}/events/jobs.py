"""The events' jobs, which the worker runner registers: deliveries to EVENTS_URL and received events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from celery import Celery, signals
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..jobs.celery_app import RETRIED_WHILE_DATABASE_IS_DOWN
from ..jobs.tasks import Announce
from .models import ReceivedEvent
from .settings import EventSettings

logger = logging.getLogger(__name__)

# Message name: a contract between POST /events and the worker.
HANDLE_EVENT = "events.handle"


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


def serve_in_worker(app: Celery, engine: Engine, settings: EventSettings) -> Announce | None:
    """Register both jobs; returns what announces a done item, or None while detached."""
    # Here, not at the top: the web imports HANDLE_EVENT without the delivery's HTTP client.
    from . import outgoing

    def handle(event_id: str) -> None:
        with Session(engine) as session, session.begin():
            handled = handle_event(session, event_id)
        outcome = "handled" if handled else "already handled, or gone"
        logger.info("Received event %s: %s", event_id, outcome, extra={"event_id": event_id})

    delivery = outgoing.Delivery(engine, settings)
    app.task(name=HANDLE_EVENT, **RETRIED_WHILE_DATABASE_IS_DOWN)(handle)
    app.task(name=outgoing.DELIVER_EVENT, **RETRIED_WHILE_DATABASE_IS_DOWN)(delivery.deliver)
    # Each pool process, then the main one, closes its HTTP connections.
    signals.worker_process_shutdown.connect(lambda **_: delivery.close(), weak=False)
    signals.worker_shutdown.connect(lambda **_: delivery.close(), weak=False)
    return outgoing.record_item_done if settings.url is not None else None
