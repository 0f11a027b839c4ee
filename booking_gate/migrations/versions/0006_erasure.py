"""Erasure (GDPR art. 17): erased people are marked, and each erasure is audited.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from booking_gate.db.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN on SQLite too: no table is rebuilt.
    with op.batch_alter_table("professionals") as batch:
        batch.add_column(sa.Column("erased_at", UTCDateTime, nullable=True))
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("erased_at", UTCDateTime, nullable=True))
    op.create_table(
        "erasures",
        sa.Column("erasure_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pseudonym", sa.String(128), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("erased_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_outbox_sent", "outbox", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_sent", "outbox")
    op.drop_table("erasures")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("erased_at")
    with op.batch_alter_table("professionals") as batch:
        batch.drop_column("erased_at")
