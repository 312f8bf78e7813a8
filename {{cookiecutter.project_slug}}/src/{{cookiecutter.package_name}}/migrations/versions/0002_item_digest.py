"""Add the job's result (digest) and an index for the clock's sweep of pending items.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("items", sa.Column("digest", sa.String(length=64), nullable=True))
    op.create_index("ix_items_status_updated_at", "items", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_items_status_updated_at", table_name="items")
    op.drop_column("items", "digest")
