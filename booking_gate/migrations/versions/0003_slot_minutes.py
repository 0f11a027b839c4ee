"""A professional's grid of bookable starts (``slot_minutes``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null: the default grid, session_minutes + buffer_minutes (rows from before 0003).
    with op.batch_alter_table("professionals") as batch:
        batch.add_column(sa.Column("slot_minutes", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("professionals") as batch:
        batch.drop_column("slot_minutes")
