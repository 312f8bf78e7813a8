"""Add the job outbox, and drop the index of the age-based sweep it replaces.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_outbox")),
    )
    op.create_index("ix_job_outbox_due_at", "job_outbox", ["due_at"])
    # Items whose job was never published are now known from the outbox, not guessed from their age.
    op.drop_index("ix_items_status_updated_at", table_name="items")


def downgrade() -> None:
    op.create_index("ix_items_status_updated_at", "items", ["status", "updated_at"])
    op.drop_index("ix_job_outbox_due_at", table_name="job_outbox")
    op.drop_table("job_outbox")
