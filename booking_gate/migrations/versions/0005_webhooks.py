"""Webhooks (outbox columns, receiver state), cancellation notice, bookings list indexes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from booking_gate.db.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each add_column is a plain ALTER TABLE ... ADD COLUMN on SQLite too: no table is
    # rebuilt, so the bookings' overlap triggers stay as they are.
    with op.batch_alter_table("professionals") as batch:
        batch.add_column(sa.Column("cancellation_notice_hours", sa.Integer, nullable=False,
                                   server_default="24"))
    with op.batch_alter_table("bookings") as batch:
        batch.add_column(sa.Column("cancel_notice_hours", sa.Integer, nullable=True))
    op.create_index("ix_bookings_client", "bookings", ["client_id", "starts_at", "booking_id"])
    op.create_index("ix_bookings_hub", "bookings", ["hub_id", "starts_at", "booking_id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("webhook_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("event_type", sa.String(64), nullable=True))
        batch.add_column(sa.Column("order_key", sa.String(160), nullable=True))
        batch.add_column(sa.Column("failed_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("last_status", sa.Integer, nullable=True))
    op.create_index("ix_outbox_order", "outbox", ["kind", "order_key", "message_id"])
    op.create_index("ux_outbox_webhook_id", "outbox", ["webhook_id"], unique=True)
    op.create_table(
        "webhook_endpoints",
        sa.Column("endpoint_key", sa.String(64), primary_key=True),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
        sa.Column("disabled_status", sa.Integer, nullable=True),
        sa.Column("changed_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_endpoints")
    op.drop_index("ux_outbox_webhook_id", "outbox")
    op.drop_index("ix_outbox_order", "outbox")
    with op.batch_alter_table("outbox") as batch:
        for column in ("last_status", "failed_at", "order_key", "event_type", "webhook_id"):
            batch.drop_column(column)
    op.drop_index("ix_bookings_hub", "bookings")
    op.drop_index("ix_bookings_client", "bookings")
    with op.batch_alter_table("bookings") as batch:
        batch.drop_column("cancel_notice_hours")
    with op.batch_alter_table("professionals") as batch:
        batch.drop_column("cancellation_notice_hours")
