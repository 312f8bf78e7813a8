"""The service's tables. Alembic compares these with the migrations; `alembic check` fails on any drift."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Enum, Index, Integer, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Later migrations can alter named constraints; unnamed ones differ per database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ItemStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[ItemStatus] = mapped_column(
        # A VARCHAR and a CHECK: a new status needs no ALTER TYPE.
        Enum(
            ItemStatus,
            native_enum=False,
            length=16,
            create_constraint=True,
            name="status",
            values_callable=lambda statuses: [status.value for status in statuses],
        ),
        default=ItemStatus.PENDING,
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The job's result.
    digest: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class OutboxJob(Base):
    """A job recorded with the change it is for, kept until the broker has it (jobs/outbox.py)."""

    __tablename__ = "job_outbox"
    # The relay asks for the jobs that are due.
    __table_args__ = (Index("ix_job_outbox_due_at", "due_at"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    args: Mapped[list[Any]] = mapped_column(JSON)
    # A relayed job's log lines still carry it.
    request_id: Mapped[str | None] = mapped_column(String(128))
    # Failed publishes so far: the relay's backoff.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
