"""Initial schema: people, blocks, bookings, credits, attendance.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from booking_gate.db.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(128)

_SQLITE_OVERLAP = """
CREATE TRIGGER bookings_no_overlap_{when} BEFORE {when} ON bookings
WHEN NEW.status = 'confirmed' AND EXISTS (
    SELECT 1 FROM bookings b
    WHERE b.professional_id = NEW.professional_id AND b.status = 'confirmed'
      AND b.booking_id != NEW.booking_id
      AND b.starts_at < NEW.ends_at AND b.ends_at > NEW.starts_at)
BEGIN SELECT RAISE(ABORT, 'slot_taken: bookings overlap'); END
"""


def upgrade() -> None:
    op.create_table(
        "professionals",
        sa.Column("professional_id", ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("session_minutes", sa.Integer, nullable=False),
        sa.Column("buffer_minutes", sa.Integer, nullable=False),
        sa.Column("availability", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "clients",
        sa.Column("client_id", ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("hub_id", ID, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "blocks",
        sa.Column("block_id", sa.String(64), primary_key=True),
        sa.Column("professional_id", ID, sa.ForeignKey("professionals.professional_id"),
                  nullable=False),
        sa.Column("starts_at", UTCDateTime, nullable=False),
        sa.Column("ends_at", UTCDateTime, nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_blocks_professional", "blocks", ["professional_id", "starts_at"])
    op.create_table(
        "bookings",
        sa.Column("booking_id", ID, primary_key=True),
        sa.Column("professional_id", ID, sa.ForeignKey("professionals.professional_id"),
                  nullable=False),
        sa.Column("client_id", ID, sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("hub_id", ID, nullable=True),
        sa.Column("starts_at", UTCDateTime, nullable=False),
        sa.Column("ends_at", UTCDateTime, nullable=False),
        sa.Column("funding", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("room_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("changed_at", UTCDateTime, nullable=False),
        sa.Column("credit_state", sa.String(16), nullable=False),
        sa.Column("cancelled_by", sa.String(16), nullable=True),
        sa.Column("cancelled_at", UTCDateTime, nullable=True),
        sa.Column("cancel_late", sa.Boolean, nullable=True),
        sa.Column("cancel_chargeable", sa.Boolean, nullable=True),
        sa.Column("cancel_reason", sa.String(500), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True, unique=True),
        sa.CheckConstraint("ends_at > starts_at", name="ck_bookings_range"),
    )
    op.create_index("ix_bookings_professional", "bookings", ["professional_id", "starts_at"])
    op.create_index("ix_bookings_starts", "bookings", ["starts_at", "booking_id"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist "
            "(professional_id WITH =, tstzrange(starts_at, ends_at) WITH &&) "
            "WHERE (status = 'confirmed')"
        )
    else:
        op.execute(_SQLITE_OVERLAP.format(when="INSERT"))
        op.execute(_SQLITE_OVERLAP.format(when="UPDATE"))
    op.create_table(
        "credit_accounts",
        sa.Column("client_id", ID, sa.ForeignKey("clients.client_id"), primary_key=True),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("balance", sa.Integer, nullable=False),
        sa.Column("reserved", sa.Integer, nullable=False),
    )
    op.create_table(
        "credit_ledger",
        sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", ID, nullable=False),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("booking_id", ID, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
    )
    op.create_index("ix_credit_ledger_client", "credit_ledger", ["client_id", "entry_id"])
    op.create_table(
        "attendance_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("booking_id", ID, sa.ForeignKey("bookings.booking_id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
    )
    op.create_index("ix_attendance_events_booking", "attendance_events", ["booking_id", "at"])
    op.create_table(
        "attendance_records",
        sa.Column("booking_id", ID, sa.ForeignKey("bookings.booking_id"), primary_key=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("finalized_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "attendance_overrides",
        sa.Column("override_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("booking_id", ID, sa.ForeignKey("bookings.booking_id"), nullable=False),
        sa.Column("from_outcome", sa.String(32), nullable=True),
        sa.Column("to_outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_attendance_overrides_booking", "attendance_overrides", ["booking_id"])


def downgrade() -> None:
    for table in ("attendance_overrides", "attendance_records", "attendance_events",
                  "credit_ledger", "credit_accounts", "bookings", "blocks", "clients",
                  "professionals"):
        op.drop_table(table)
