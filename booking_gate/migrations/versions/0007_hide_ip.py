""""Hide my IP": a client's preference and a hub's setting.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from booking_gate.db.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER TABLE ... ADD COLUMN on SQLite too: no table is rebuilt.
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("hide_ip", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "hubs",
        sa.Column("hub_id", sa.String(128), primary_key=True),
        sa.Column("clients_hide_ip", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hubs")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("hide_ip")
