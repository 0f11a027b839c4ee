"""The gate's tables, as SQLAlchemy Core metadata (the migrations create them).

Invariants the database itself enforces:
- two confirmed bookings of one professional never overlap (PostgreSQL: an exclusion
  constraint; SQLite: triggers), whatever the application checked before;
- an attendance event id is stored once (primary key);
- a booking holds at most one credit, tracked by ``credit_state``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps no offset, so values are normalised to UTC before storage; its text form
    (``YYYY-MM-DD HH:MM:SS.ffffff``) then sorts and compares chronologically.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

ID = String(128)

professionals = Table(
    "professionals", metadata,
    Column("professional_id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(254), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("session_minutes", Integer, nullable=False),
    Column("buffer_minutes", Integer, nullable=False),
    # The grid of bookable starts; null: session_minutes + buffer_minutes (revision 0003).
    Column("slot_minutes", Integer, nullable=True),
    Column("availability", Text, nullable=False),  # JSON list
    Column("updated_at", UTCDateTime, nullable=False),
    # Revision 0005: the notice a cancellation outside hubs needs (hub bookings: 24 h).
    Column("cancellation_notice_hours", Integer, nullable=False, server_default="24"),
    # Revision 0006: when the professional was erased (``erasures``); the row then holds
    # a pseudonym for its id and no name or email.
    Column("erased_at", UTCDateTime, nullable=True),
)

clients = Table(
    "clients", metadata,
    Column("client_id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(254), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("hub_id", ID, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # Revision 0007: "Hide my IP" (the client connects through a relay only).
    Column("hide_ip", Boolean, nullable=False, server_default=false()),
    # Revision 0006: when the client was erased, as for professionals.
    Column("erased_at", UTCDateTime, nullable=True),
)

blocks = Table(
    "blocks", metadata,
    Column("block_id", String(64), primary_key=True),
    Column("professional_id", ID, ForeignKey("professionals.professional_id"), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("reason", String(500), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_blocks_professional", "professional_id", "starts_at"),
)

bookings = Table(
    "bookings", metadata,
    Column("booking_id", ID, primary_key=True),
    Column("professional_id", ID, ForeignKey("professionals.professional_id"), nullable=False),
    Column("client_id", ID, ForeignKey("clients.client_id"), nullable=False),
    Column("hub_id", ID, nullable=True),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("funding", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("room_id", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("credit_state", String(16), nullable=False),  # none|reserved|consumed|released
    Column("cancelled_by", String(16), nullable=True),
    Column("cancelled_at", UTCDateTime, nullable=True),
    Column("cancel_late", Boolean, nullable=True),
    Column("cancel_chargeable", Boolean, nullable=True),
    Column("cancel_reason", String(500), nullable=True),
    Column("idempotency_key", String(128), nullable=True, unique=True),
    Column("ics_sequence", Integer, nullable=False, server_default="0"),
    # Revision 0005: the notice the policy asked for when it was cancelled (null: 24).
    Column("cancel_notice_hours", Integer, nullable=True),
    Index("ix_bookings_professional", "professional_id", "starts_at"),
    Index("ix_bookings_starts", "starts_at", "booking_id"),
    # Revision 0005: the bookings list by client or hub, in (starts_at, booking_id) order.
    Index("ix_bookings_client", "client_id", "starts_at", "booking_id"),
    Index("ix_bookings_hub", "hub_id", "starts_at", "booking_id"),
    # Revision 0008: true once the booking has its final attendance record (the
    # finaliser seeks only among the others), and a professional's bookings by their end.
    Column("finalized", Boolean, nullable=False, server_default=false()),
    Index("ix_bookings_unfinalized", "status", "ends_at",
          postgresql_where=text("finalized = false"), sqlite_where=text("finalized = false")),
    Index("ix_bookings_professional_ends", "professional_id", "ends_at"),
)

credit_accounts = Table(
    "credit_accounts", metadata,
    Column("client_id", ID, ForeignKey("clients.client_id"), primary_key=True),
    Column("hub_id", ID, nullable=False),
    # ``balance``: credits free to book; ``reserved``: held by confirmed bookings.
    Column("balance", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
)

credit_ledger = Table(
    "credit_ledger", metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", ID, nullable=False),
    Column("hub_id", ID, nullable=False),
    Column("booking_id", ID, nullable=True),
    Column("kind", String(16), nullable=False),  # grant|reserve|release|consume
    Column("amount", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("note", String(500), nullable=True),
    Index("ix_credit_ledger_client", "client_id", "entry_id"),
)

attendance_events = Table(
    "attendance_events", metadata,
    Column("event_id", String(128), primary_key=True),
    Column("booking_id", ID, ForeignKey("bookings.booking_id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("reason", String(64), nullable=True),
    Index("ix_attendance_events_booking", "booking_id", "at"),
)

attendance_records = Table(
    "attendance_records", metadata,
    Column("booking_id", ID, ForeignKey("bookings.booking_id"), primary_key=True),
    Column("outcome", String(32), nullable=False),
    Column("record", Text, nullable=False),  # the final record as JSON
    Column("finalized_at", UTCDateTime, nullable=False),
)

attendance_overrides = Table(
    "attendance_overrides", metadata,
    Column("override_id", Integer, primary_key=True, autoincrement=True),
    Column("booking_id", ID, ForeignKey("bookings.booking_id"), nullable=False),
    Column("from_outcome", String(32), nullable=True),
    Column("to_outcome", String(32), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("by", String(128), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_attendance_overrides_booking", "booking_id"),
)

# -- revision 0002: notifications and credit requests ------------------------------------

# Each booking's iCalendar SEQUENCE (RFC 5545 3.8.7.4) lives on the booking row
# (``bookings.ics_sequence``, added by 0002) and grows with every change.

outbox = Table(
    "outbox", metadata,
    Column("message_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # email | webhook
    Column("payload", Text, nullable=False),  # JSON: everything needed to send it
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("last_error", String(200), nullable=True),
    # Revision 0004: the gate process sending the message now, until when (a lease: a
    # process that dies mid-send leaves it to the others once the lease runs out).
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    # Revision 0005, webhook events: the stable ``webhook-id``, the type, the key of the
    # events delivered in order (one booking's), when it was given up (dead letter) and
    # the receiver's last HTTP status. ``sent_at`` is when it was delivered.
    Column("webhook_id", String(64), nullable=True),
    Column("event_type", String(64), nullable=True),
    Column("order_key", String(160), nullable=True),
    Column("failed_at", UTCDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Index("ix_outbox_due", "sent_at", "next_attempt_at"),
    Index("ix_outbox_order", "kind", "order_key", "message_id"),
    Index("ux_outbox_webhook_id", "webhook_id", unique=True),
    # Revision 0006: the retention purge of delivered messages.
    Index("ix_outbox_sent", "sent_at"),
)

# Revision 0005: the webhook receiver's state, shared by every gate process. A receiver
# that answered 410 Gone is disabled until an operator enables it again. Keyed by a hash
# of the URL (a URL may carry a secret): a new URL starts enabled.
webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("endpoint_key", String(64), primary_key=True),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("disabled_status", Integer, nullable=True),
    Column("changed_at", UTCDateTime, nullable=False),
)

credit_requests = Table(
    "credit_requests", metadata,
    Column("request_id", String(64), primary_key=True),
    Column("hub_id", ID, nullable=False),
    Column("client_id", ID, ForeignKey("clients.client_id"), nullable=False),
    Column("professional_id", ID, ForeignKey("professionals.professional_id"), nullable=False),
    Column("credits", Integer, nullable=False),
    Column("note", String(500), nullable=True),
    Column("status", String(16), nullable=False),  # pending|approved|declined
    Column("created_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("granted", Integer, nullable=True),
    Index("ix_credit_requests_hub", "hub_id", "status", "created_at"),
)

# -- revision 0007: "Hide my IP" ----------------------------------------------------------

# A hub's settings. Hubs are named by the booking system and need no row: a hub without
# one has the defaults (``clients_hide_ip`` false).
hubs = Table(
    "hubs", metadata,
    Column("hub_id", ID, primary_key=True),
    Column("clients_hide_ip", Boolean, nullable=False, server_default=false()),
    Column("updated_at", UTCDateTime, nullable=False),
)

# -- revision 0006: erasure ---------------------------------------------------------------

# The audit trail of erasures (GDPR art. 17): which pseudonym replaced an erased person's
# id, whether a client or a professional, and when by the server's clock. Nothing here
# is personal data: the pseudonym is random, not derived from the id it replaced.
erasures = Table(
    "erasures", metadata,
    Column("erasure_id", Integer, primary_key=True, autoincrement=True),
    Column("pseudonym", ID, nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # client | professional
    Column("erased_at", UTCDateTime, nullable=False),
)
