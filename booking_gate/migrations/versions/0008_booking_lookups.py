"""Lookups that stay fast as bookings accumulate: finalised bookings are marked, and a
professional's bookings can be sought by their end.

- ``bookings.finalized``: true once the booking has its final attendance record. The
  finaliser looks only among the bookings not yet final, through a partial index,
  instead of anti-joining every booking with every record.
- ``ix_bookings_professional_ends``: a professional's confirmed bookings that end after
  a time (the free slots from now on, the overlap check of a new booking) are read from
  that time on, not from the first booking the professional ever had.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UNFINALIZED = sa.text("finalized = false")


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN: not a batch operation, which on SQLite would
    # rebuild ``bookings`` and lose its overlap triggers.
    if op.get_bind().dialect.name == "postgresql":
        # The existing rows take the column's default without being rewritten: true
        # first, then false for new rows, and only the bookings without a final record
        # (the future ones, the few still pending) are updated, not the whole history.
        op.add_column("bookings", sa.Column("finalized", sa.Boolean, nullable=False,
                                            server_default=sa.true()))
        op.alter_column("bookings", "finalized", server_default=sa.false())
        op.execute("UPDATE bookings SET finalized = false WHERE NOT EXISTS (SELECT 1 FROM "
                   "attendance_records r WHERE r.booking_id = bookings.booking_id)")
    else:
        # SQLite cannot change a column's default in place; its databases are small.
        op.add_column("bookings", sa.Column("finalized", sa.Boolean, nullable=False,
                                            server_default=sa.false()))
        op.execute("UPDATE bookings SET finalized = true WHERE booking_id IN "
                   "(SELECT booking_id FROM attendance_records)")
    op.create_index("ix_bookings_unfinalized", "bookings", ["status", "ends_at"],
                    postgresql_where=UNFINALIZED, sqlite_where=UNFINALIZED)
    op.create_index("ix_bookings_professional_ends", "bookings",
                    ["professional_id", "ends_at"])


def downgrade() -> None:
    op.drop_index("ix_bookings_professional_ends", "bookings")
    op.drop_index("ix_bookings_unfinalized", "bookings")
    op.drop_column("bookings", "finalized")
