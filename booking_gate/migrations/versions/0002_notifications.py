"""Notifications outbox, credit requests, iCalendar sequence per booking.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from booking_gate.db.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(128)


def upgrade() -> None:
    with op.batch_alter_table("bookings") as batch:
        batch.add_column(sa.Column("ics_sequence", sa.Integer, nullable=False,
                                   server_default="0"))
    op.create_table(
        "outbox",
        sa.Column("message_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
    )
    op.create_index("ix_outbox_due", "outbox", ["sent_at", "next_attempt_at"])
    op.create_table(
        "credit_requests",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("client_id", ID, sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("professional_id", ID, sa.ForeignKey("professionals.professional_id"),
                  nullable=False),
        sa.Column("credits", sa.Integer, nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("granted", sa.Integer, nullable=True),
    )
    op.create_index("ix_credit_requests_hub", "credit_requests",
                    ["hub_id", "status", "created_at"])


def downgrade() -> None:
    op.drop_table("credit_requests")
    op.drop_table("outbox")
    with op.batch_alter_table("bookings") as batch:
        batch.drop_column("ics_sequence")
