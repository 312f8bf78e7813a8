"""The events' tables: deliveries to EVENTS_URL, and events received at POST /events."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from ..models import Base


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Waits for an operator: `{{ cookiecutter.project_slug }} events redrive`.
    FAILED = "failed"


class EventDelivery(Base):
    """An event sent to the app at EVENTS_URL, and how its delivery went (events/outgoing.py)."""

    __tablename__ = "event_deliveries"
    # For `{{ cookiecutter.project_slug }} events list --status failed`.
    __table_args__ = (Index("ix_event_deliveries_status", "status"),)

    # Receivers deduplicate by it: the same for every attempt.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(
            DeliveryStatus,
            native_enum=False,
            length=16,
            create_constraint=True,
            name="status",
            values_callable=lambda statuses: [status.value for status in statuses],
        ),
        default=DeliveryStatus.PENDING,
    )
    # Since it was recorded or last re-driven.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ReceivedEvent(Base):
    """An event another app sent to POST /events, recorded once by its id."""

    __tablename__ = "received_events"

    # The sender's id: a second delivery changes nothing.
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
