"""The gate's storage adapter: SQLAlchemy Core over SQLite or PostgreSQL.

Thin by design: it maps rows to ``model`` records and runs each state change in one
transaction. What a change should be (late or not, consume or release) is decided by
the pure modules and passed in. Overlaps are refused by the database itself as well
as checked here, so a race between two requests cannot double-book.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, literal, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from booking_gate import webhooks
from booking_gate.db import schema as t
from booking_gate.db.engine import Reader
from booking_gate.errors import Conflict, NotFound
from booking_gate.model import (
    AttendanceEvent,
    Block,
    Booking,
    BookingId,
    BookingStatus,
    Cancellation,
    Client,
    ClientId,
    CreditAccount,
    CreditState,
    EventId,
    EventKind,
    Funding,
    HubId,
    HubSettings,
    NewBooking,
    OutboxMessage,
    Professional,
    ProfessionalId,
    Role,
    RoomId,
    Source,
)
from booking_gate.rules import format_time
from booking_gate.tokens import new_room_id
from booking_gate.webhooks import WEBHOOK, DeliveryEvent, DeliveryState

logger = logging.getLogger(__name__)


def _slot_taken() -> Conflict:
    return Conflict(
        "the professional already has a booking or a block at that time",
        code="slot_taken", field="starts_at",
    )


def _is_overlap_violation(error: IntegrityError) -> bool:
    text = str(error.orig)
    return "bookings_no_overlap" in text or "slot_taken" in text


def _booking(row: Any) -> Booking:
    cancellation = None
    if row.cancelled_at is not None:
        cancellation = Cancellation(
            by=Role(row.cancelled_by), at=row.cancelled_at, late=bool(row.cancel_late),
            chargeable=bool(row.cancel_chargeable), reason=row.cancel_reason,
            notice_hours=row.cancel_notice_hours or 24,
        )
    return Booking(
        booking_id=BookingId(row.booking_id), professional_id=ProfessionalId(row.professional_id),
        client_id=ClientId(row.client_id), hub_id=HubId(row.hub_id) if row.hub_id else None,
        starts_at=row.starts_at, ends_at=row.ends_at, funding=Funding(row.funding),
        source=Source(row.source), status=BookingStatus(row.status), room_id=RoomId(row.room_id),
        created_at=row.created_at, changed_at=row.changed_at, cancellation=cancellation,
        sequence=row.ics_sequence,
    )


# The predicate of the partial index ``ix_bookings_unfinalized``, word for word: SQLite
# uses a partial index only for a query that repeats its WHERE term.
UNFINALIZED = text("bookings.finalized = false")


def _after(cursor: tuple[datetime, str]) -> Any:
    """Bookings after ``cursor`` in (starts_at, booking_id) order, as one row value: the
    (…, starts_at, booking_id) indexes answer it directly (SQLite has row values since
    3.15)."""
    b = t.bookings.c
    return tuple_(b.starts_at, b.booking_id) > tuple_(
        literal(cursor[0], t.UTCDateTime), literal(cursor[1], t.ID))


def _professional(row: Any) -> Professional:
    return Professional(
        professional_id=ProfessionalId(row.professional_id), name=row.name, email=row.email,
        timezone=row.timezone, session_minutes=row.session_minutes,
        buffer_minutes=row.buffer_minutes, availability=tuple(json.loads(row.availability)),
        updated_at=row.updated_at, slot_minutes=row.slot_minutes,
        cancellation_notice_hours=row.cancellation_notice_hours, erased_at=row.erased_at,
    )


def _client(row: Any) -> Client:
    return Client(
        client_id=ClientId(row.client_id), name=row.name, email=row.email,
        timezone=row.timezone, hub_id=HubId(row.hub_id) if row.hub_id else None,
        updated_at=row.updated_at, hide_ip=bool(row.hide_ip), erased_at=row.erased_at,
    )


def _block(row: Any) -> Block:
    return Block(
        block_id=row.block_id, professional_id=ProfessionalId(row.professional_id),
        starts_at=row.starts_at, ends_at=row.ends_at, reason=row.reason,
        created_at=row.created_at,
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """A webhook event in the outbox, as operators see it."""

    message_id: int
    webhook_id: str
    event_type: str
    state: DeliveryState
    attempts: int
    last_status: int | None
    next_attempt_at: datetime
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return webhooks.delivery_json(
            webhook_id=self.webhook_id, event_type=self.event_type, state=self.state,
            attempts=self.attempts, last_status=self.last_status,
            next_attempt_at=self.next_attempt_at)


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """A webhook event a sender holds: the body's bytes exactly as stored."""

    message_id: int
    webhook_id: str
    body: bytes
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookCounts:
    pending: int
    failed: int
    delivered: int
    oldest_pending: datetime | None


def _delivery_state(row: Any) -> DeliveryState:
    if row.sent_at is not None:
        return DeliveryState.DELIVERED
    if row.failed_at is not None:
        return DeliveryState.FAILED
    return DeliveryState.PENDING


def _delivery(row: Any) -> Delivery:
    return Delivery(row.message_id, row.webhook_id, row.event_type, _delivery_state(row),
                    row.attempts, row.last_status, row.next_attempt_at, row.created_at)


def _in_state(state: DeliveryState) -> Any:
    o = t.outbox.c
    if state is DeliveryState.DELIVERED:
        return o.sent_at.is_not(None)
    if state is DeliveryState.FAILED:
        return and_(o.sent_at.is_(None), o.failed_at.is_not(None))
    return and_(o.sent_at.is_(None), o.failed_at.is_(None))


@dataclass(frozen=True, slots=True)
class BookingFilter:
    """What ``GET /api/v1/bookings`` narrows the list to (None: anything)."""

    professional_id: str | None = None
    client_id: str | None = None
    hub_id: str | None = None
    status: BookingStatus | None = None
    start: datetime | None = None  # starts_at >= start
    end: datetime | None = None  # starts_at < end


@dataclass(frozen=True, slots=True)
class StoredRecord:
    booking: Booking
    final: dict[str, Any] | None  # the stored final record, when there is one
    credit_state: CreditState


Notify = Callable[[Booking], Sequence[OutboxMessage]]


def _room_admissions_query() -> Any:
    """Built once (building it costs more than running it): bookings by room id, with
    the client's, the client's hub's and the booking's hub's Hide-my-IP settings."""
    client_hub, booking_hub = t.hubs.alias("client_hub"), t.hubs.alias("booking_hub")
    return (select(t.bookings, t.clients.c.hide_ip.label("client_hides"),
                   client_hub.c.clients_hide_ip.label("client_hub_hides"),
                   booking_hub.c.clients_hide_ip.label("booking_hub_hides"))
            .select_from(t.bookings
                         .outerjoin(t.clients, t.clients.c.client_id == t.bookings.c.client_id)
                         .outerjoin(client_hub, client_hub.c.hub_id == t.clients.c.hub_id)
                         .outerjoin(booking_hub, booking_hub.c.hub_id == t.bookings.c.hub_id))
            .where(t.bookings.c.room_id.in_(bindparam("room_ids", expanding=True))))


_ROOM_ADMISSIONS = _room_admissions_query()


class Store:
    def __init__(self, engine: AsyncEngine, *, webhooks: bool = False) -> None:
        self.engine = engine
        self.reader = Reader(engine)  # the hot reads' path (booking_gate/db/engine.py)
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        # Without a receiver configured, webhook events are not written at all.
        self.webhooks = webhooks

    # -- people ------------------------------------------------------------------

    async def _upsert(self, table: Any, key: str, values: dict[str, Any]) -> None:
        stmt = self._insert(table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[key], set_={k: v for k, v in values.items() if k != key}
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def put_professional(self, p: Professional) -> Professional:
        await self._upsert(t.professionals, "professional_id", {
            "professional_id": p.professional_id, "name": p.name, "email": p.email,
            "timezone": p.timezone, "session_minutes": p.session_minutes,
            "buffer_minutes": p.buffer_minutes, "availability": json.dumps(list(p.availability)),
            "updated_at": p.updated_at, "slot_minutes": p.slot_minutes,
            "cancellation_notice_hours": p.cancellation_notice_hours,
        })
        return p

    async def get_professional(self, professional_id: str) -> Professional | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.professionals).where(
                t.professionals.c.professional_id == professional_id))).first()
        return _professional(row) if row else None

    async def put_client(self, c: Client) -> Client:
        await self._upsert(t.clients, "client_id", {
            "client_id": c.client_id, "name": c.name, "email": c.email,
            "timezone": c.timezone, "hub_id": c.hub_id, "updated_at": c.updated_at,
            "hide_ip": c.hide_ip,
        })
        return c

    # -- hubs ----------------------------------------------------------------------

    async def put_hub(self, h: HubSettings) -> HubSettings:
        await self._upsert(t.hubs, "hub_id", {
            "hub_id": h.hub_id, "clients_hide_ip": h.clients_hide_ip,
            "updated_at": h.updated_at,
        })
        return h

    async def get_hub(self, hub_id: str) -> HubSettings:
        """The hub's settings; the defaults for a hub nobody configured."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(t.hubs).where(t.hubs.c.hub_id == hub_id))).first()
        if row is None:
            return HubSettings(HubId(hub_id))
        return HubSettings(HubId(row.hub_id), bool(row.clients_hide_ip), row.updated_at)

    async def get_client(self, client_id: str) -> Client | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(t.clients).where(t.clients.c.client_id == client_id))).first()
        return _client(row) if row else None

    # -- blocks ------------------------------------------------------------------

    async def _lock_professional(self, conn: AsyncConnection, professional_id: str) -> None:
        """Serialise schedule changes of one professional (PostgreSQL row lock).

        On SQLite every write transaction is already ``BEGIN IMMEDIATE``.
        """
        found = (await conn.execute(
            select(t.professionals.c.professional_id)
            .where(t.professionals.c.professional_id == professional_id)
            .with_for_update())).first()
        if found is None:
            raise NotFound(f"unknown professional '{professional_id}'", field="professional_id")

    async def add_block(self, professional_id: str, starts_at: datetime, ends_at: datetime,
                        reason: str | None, now: datetime) -> Block:
        block = Block(secrets.token_hex(8), ProfessionalId(professional_id), starts_at, ends_at,
                      reason, now)
        async with self.engine.begin() as conn:
            await self._lock_professional(conn, professional_id)
            await conn.execute(t.blocks.insert().values(
                block_id=block.block_id, professional_id=professional_id, starts_at=starts_at,
                ends_at=ends_at, reason=reason, created_at=now))
        return block

    async def delete_block(self, professional_id: str, block_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(t.blocks.delete().where(
                t.blocks.c.professional_id == professional_id, t.blocks.c.block_id == block_id))
        return bool(result.rowcount)

    async def list_blocks(self, professional_id: str, start: datetime, end: datetime
                          ) -> list[Block]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.blocks).where(
                t.blocks.c.professional_id == professional_id, t.blocks.c.starts_at < end,
                t.blocks.c.ends_at > start).order_by(t.blocks.c.starts_at))).all()
        return [_block(row) for row in rows]

    # -- bookings ----------------------------------------------------------------

    async def get_booking(self, booking_id: str) -> Booking | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(t.bookings).where(t.bookings.c.booking_id == booking_id))).first()
        return _booking(row) if row else None

    async def get_booking_by_room(self, room_id: str) -> Booking | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(t.bookings).where(t.bookings.c.room_id == room_id))).first()
        return _booking(row) if row else None

    async def room_admissions(self, room_ids: Sequence[str]) -> dict[str, tuple[Booking, bool]]:
        """The booking behind each of ``room_ids`` that exists, with whether its client
        hides their IP (set on the client, or on the client's hub or the booking's hub
        for all their clients), read in one query: what a join needs, at every join."""
        if not room_ids:
            return {}
        rows = await self.reader.all(_ROOM_ADMISSIONS, {"room_ids": list(room_ids)})
        return {row.room_id: (_booking(row), bool(row.client_hides or row.client_hub_hides
                                                  or row.booking_hub_hides))
                for row in rows}

    async def get_booking_by_key(self, key: str) -> Booking | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(t.bookings).where(t.bookings.c.idempotency_key == key))).first()
        return _booking(row) if row else None

    async def list_confirmed(self, professional_id: str, start: datetime, end: datetime
                             ) -> list[Booking]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.bookings).where(
                t.bookings.c.professional_id == professional_id,
                t.bookings.c.status == BookingStatus.CONFIRMED.value,
                t.bookings.c.starts_at < end, t.bookings.c.ends_at > start,
            ).order_by(t.bookings.c.starts_at))).all()
        return [_booking(row) for row in rows]

    async def _check_free(self, conn: AsyncConnection, professional_id: str, starts_at: datetime,
                          ends_at: datetime, exclude: str | None = None) -> None:
        overlapping = select(t.bookings.c.booking_id).where(
            t.bookings.c.professional_id == professional_id,
            t.bookings.c.status == BookingStatus.CONFIRMED.value,
            t.bookings.c.starts_at < ends_at, t.bookings.c.ends_at > starts_at)
        if exclude is not None:
            overlapping = overlapping.where(t.bookings.c.booking_id != exclude)
        blocked = select(t.blocks.c.block_id).where(
            t.blocks.c.professional_id == professional_id,
            t.blocks.c.starts_at < ends_at, t.blocks.c.ends_at > starts_at)
        if (await conn.execute(overlapping.limit(1))).first() is not None:
            raise _slot_taken()
        if (await conn.execute(blocked.limit(1))).first() is not None:
            raise _slot_taken()

    async def create_booking(self, new: NewBooking, now: datetime, notify: Notify | None = None
                             ) -> tuple[Booking, bool]:
        """Create ``new`` or return the identical existing one; ``(booking, created)``.

        ``notify`` builds the messages announcing the new booking; they are stored in the
        same transaction, so a booking is never created without them (nor they without it).
        """
        for attempt in range(2):
            try:
                return await self._create_booking(new, now, notify)
            except IntegrityError as error:
                if _is_overlap_violation(error):
                    raise _slot_taken() from None
                # A concurrent request created the same booking id or key: read it back.
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def _existing(self, conn: AsyncConnection, new: NewBooking) -> Booking | None:
        """The booking ``new`` repeats (same id, or same idempotency key), if any."""
        row = (await conn.execute(select(t.bookings).where(
            t.bookings.c.booking_id == new.booking_id))).first()
        if row is not None:
            existing = _booking(row)
            if not new.same_content(existing):
                raise Conflict(
                    f"booking '{new.booking_id}' already exists with other content",
                    code="booking_exists", field="booking_id",
                )
            return existing
        if new.idempotency_key is not None:
            row = (await conn.execute(select(t.bookings).where(
                t.bookings.c.idempotency_key == new.idempotency_key))).first()
            if row is not None:
                return _booking(row)
        return None

    async def _create_booking(self, new: NewBooking, now: datetime, notify: Notify | None
                              ) -> tuple[Booking, bool]:
        async with self.engine.begin() as conn:
            existing = await self._existing(conn, new)
            if existing is not None:
                return existing, False
            await self._lock_professional(conn, new.professional_id)
            # Again under the lock: a concurrent twin may have committed meanwhile.
            existing = await self._existing(conn, new)
            if existing is not None:
                return existing, False
            client = (await conn.execute(select(t.clients).where(
                t.clients.c.client_id == new.client_id))).first()
            if client is None or client.erased_at is not None:
                raise NotFound(f"unknown client '{new.client_id}'", field="client_id")
            await self._check_free(conn, new.professional_id, new.starts_at, new.ends_at)
            credit_state, hub_id, funding = CreditState.NONE, client.hub_id, new.funding
            if funding is Funding.SPONSORED:
                reserved_hub = await self._reserve_credit(conn, new, now,
                                                          required=not new.fallback_private)
                if reserved_hub is None:
                    funding = Funding.PRIVATE  # no credit left: the client pays
                else:
                    hub_id, credit_state = reserved_hub, CreditState.RESERVED
            room_id = new_room_id()
            await conn.execute(t.bookings.insert().values(
                booking_id=new.booking_id, professional_id=new.professional_id,
                client_id=new.client_id, hub_id=hub_id, starts_at=new.starts_at,
                ends_at=new.ends_at, funding=funding.value, source=new.source.value,
                status=BookingStatus.CONFIRMED.value, room_id=room_id, created_at=now,
                changed_at=now, credit_state=credit_state.value,
                idempotency_key=new.idempotency_key))
            row = (await conn.execute(select(t.bookings).where(
                t.bookings.c.booking_id == new.booking_id))).one()
            await self._notify(conn, notify, _booking(row), now)
        return _booking(row), True

    async def reschedule(self, booking_id: str, starts_at: datetime, ends_at: datetime,
                         now: datetime, notify: Notify | None = None) -> Booking:
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(select(t.bookings).where(
                    t.bookings.c.booking_id == booking_id))).first()
                if row is None:
                    raise NotFound(f"unknown booking '{booking_id}'", field=None)
                await self._lock_professional(conn, row.professional_id)
                await self._check_free(conn, row.professional_id, starts_at, ends_at,
                                       exclude=booking_id)
                moved = await conn.execute(update(t.bookings).where(
                    t.bookings.c.booking_id == booking_id,
                    t.bookings.c.status == BookingStatus.CONFIRMED.value,
                ).values(starts_at=starts_at, ends_at=ends_at, changed_at=now,
                         ics_sequence=t.bookings.c.ics_sequence + 1))
                if moved.rowcount != 1:
                    raise Conflict("the booking is cancelled", code="booking_cancelled",
                                   field=None)
                row = (await conn.execute(select(t.bookings).where(
                    t.bookings.c.booking_id == booking_id))).one()
                await self._notify(conn, notify, _booking(row), now)
        except IntegrityError as error:
            if _is_overlap_violation(error):
                raise _slot_taken() from None
            raise
        return _booking(row)

    async def cancel(self, booking_id: str, cancellation: Cancellation,
                     credit_effect: CreditState, notify: Notify | None = None
                     ) -> tuple[Booking, bool]:
        """Cancel a confirmed booking; ``(booking, changed)``. Idempotent."""
        async with self.engine.begin() as conn:
            professional_id = (await conn.execute(select(t.bookings.c.professional_id).where(
                t.bookings.c.booking_id == booking_id))).scalar_one_or_none()
            if professional_id is not None:
                # The lock order of create and reschedule: professional, booking, credit
                # account. Without it a cancel racing a new booking of the same client
                # deadlocks on PostgreSQL, which re-checks the booking's foreign keys (a
                # key share on the professional) when a row this transaction already
                # updated is updated again (``_settle_credit``).
                await self._lock_professional(conn, professional_id)
            result = await conn.execute(update(t.bookings).where(
                t.bookings.c.booking_id == booking_id,
                t.bookings.c.status == BookingStatus.CONFIRMED.value,
            ).values(
                status=BookingStatus.CANCELLED.value, cancelled_by=cancellation.by.value,
                cancelled_at=cancellation.at, cancel_late=cancellation.late,
                cancel_chargeable=cancellation.chargeable, cancel_reason=cancellation.reason,
                cancel_notice_hours=cancellation.notice_hours,
                ics_sequence=t.bookings.c.ics_sequence + 1,
            ))
            changed = bool(result.rowcount)
            if changed:
                await self._settle_credit(conn, booking_id, credit_effect, cancellation.at,
                                          "cancellation")
            row = (await conn.execute(select(t.bookings).where(
                t.bookings.c.booking_id == booking_id))).first()
            if changed and row is not None:
                await self._notify(conn, notify, _booking(row), cancellation.at)
        if row is None:
            raise NotFound(f"unknown booking '{booking_id}'", field=None)
        return _booking(row), changed

    # -- outbox ------------------------------------------------------------------

    async def _notify(self, conn: AsyncConnection, notify: Notify | None, booking: Booking,
                      now: datetime) -> None:
        if notify is not None:
            await self._enqueue(conn, notify(booking), now)

    async def _enqueue(self, conn: AsyncConnection, messages: Sequence[OutboxMessage],
                       now: datetime) -> None:
        if not self.webhooks:
            messages = [m for m in messages if m.kind != WEBHOOK]
        if messages:
            await conn.execute(t.outbox.insert(), [{
                "kind": m.kind, "payload": json.dumps(m.payload, default=str),
                "created_at": now, "next_attempt_at": now, "attempts": 0, "sent_at": None,
                "last_error": None, "webhook_id": m.webhook_id, "event_type": m.event_type,
                "order_key": m.order_key} for m in messages])

    @staticmethod
    def _due(kind: str, now: datetime) -> Any:
        """Unsent messages of ``kind`` whose attempt is due and that nobody holds."""
        o = t.outbox.c
        return and_(o.kind == kind, o.sent_at.is_(None), o.failed_at.is_(None),
                    o.next_attempt_at <= now,
                    or_(o.lease_until.is_(None), o.lease_until <= now))

    async def due_outbox(self, kind: str, now: datetime, limit: int = 50
                         ) -> list[tuple[int, dict[str, Any], int]]:
        """Messages ``claim_outbox`` would hand out now: (id, payload, attempts)."""
        o = t.outbox.c
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(o.message_id, o.payload, o.attempts)
                                       .where(self._due(kind, now))
                                       .order_by(o.next_attempt_at, o.message_id)
                                       .limit(limit))).all()
        return [(row.message_id, dict(json.loads(row.payload)), row.attempts) for row in rows]

    async def claim_outbox(self, kind: str, owner: str, now: datetime, lease: timedelta,
                           limit: int) -> list[tuple[int, dict[str, Any], int]]:
        """Take up to ``limit`` due messages for ``owner`` until ``now + lease``.

        Of several gate processes on one database each message goes to one: PostgreSQL
        skips rows another transaction is claiming (``FOR UPDATE SKIP LOCKED``); SQLite
        runs one write transaction at a time (``BEGIN IMMEDIATE``).
        """
        o = t.outbox.c
        pick = (select(o.message_id).where(self._due(kind, now))
                .order_by(o.next_attempt_at, o.message_id).limit(limit))
        if self.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(pick)).scalars())
            if not ids:
                return []
            await conn.execute(update(t.outbox).where(o.message_id.in_(ids)).values(
                lease_owner=owner, lease_until=now + lease))
            rows = (await conn.execute(select(o.message_id, o.payload, o.attempts).where(
                o.message_id.in_(ids)).order_by(o.next_attempt_at, o.message_id))).all()
        return [(row.message_id, dict(json.loads(row.payload)), row.attempts) for row in rows]

    async def unsent_outbox(self, kind: str) -> int:
        """How many messages of ``kind`` are not sent yet, held by a sender or not."""
        o = t.outbox.c
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.outbox).where(
                o.kind == kind, o.sent_at.is_(None)))).scalar_one())

    async def next_outbox_attempt(self, kind: str) -> datetime | None:
        """When the earliest unsent message of ``kind`` is due, if any."""
        o = t.outbox.c
        async with self.engine.connect() as conn:
            due: datetime | None = (await conn.execute(select(func.min(o.next_attempt_at))
                                                       .where(o.kind == kind,
                                                              o.sent_at.is_(None),
                                                              o.failed_at.is_(None)))
                                    ).scalar_one()
        return due

    async def mark_sent(self, message_id: int, now: datetime, owner: str | None = None
                        ) -> bool:
        """Record the message as sent; False if ``owner`` no longer held it."""
        o = t.outbox.c
        held = o.message_id == message_id
        if owner is not None:
            held = and_(held, o.lease_owner == owner)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.outbox).where(held).values(
                sent_at=now, attempts=o.attempts + 1, lease_owner=None, lease_until=None))
        return bool(result.rowcount)

    async def mark_failed(self, message_id: int, error: str, retry_at: datetime,
                          owner: str | None = None) -> None:
        o = t.outbox.c
        held = o.message_id == message_id
        if owner is not None:
            held = and_(held, o.lease_owner == owner)
        async with self.engine.begin() as conn:
            await conn.execute(update(t.outbox).where(held).values(
                last_error=error[:200], next_attempt_at=retry_at, attempts=o.attempts + 1,
                lease_owner=None, lease_until=None))

    async def release_outbox(self, owner: str) -> int:
        """Give back every message ``owner`` holds unsent (on shutdown), for the others."""
        o = t.outbox.c
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.outbox).where(
                o.lease_owner == owner, o.sent_at.is_(None)).values(
                lease_owner=None, lease_until=None))
        return int(result.rowcount)

    # -- webhooks ----------------------------------------------------------------

    async def claim_webhooks(self, owner: str, now: datetime, lease: timedelta, limit: int
                             ) -> list[ClaimedEvent]:
        """Take up to ``limit`` due webhook events for ``owner`` until ``now + lease``.

        Only the first undelivered event of each ``order_key`` is due: a later event of
        one booking waits until every earlier one is delivered or failed. Of several gate
        processes each event goes to one (``claim_outbox``'s locking).
        """
        o = t.outbox.c
        earlier = t.outbox.alias("earlier")
        e = earlier.c
        blocked = select(e.message_id).where(
            e.kind == WEBHOOK, e.order_key == o.order_key, e.message_id < o.message_id,
            e.sent_at.is_(None), e.failed_at.is_(None)).exists()
        pick = (select(o.message_id).where(self._due(WEBHOOK, now), ~blocked)
                .order_by(o.next_attempt_at, o.message_id).limit(limit))
        if self.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(of=t.outbox, skip_locked=True)
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(pick)).scalars())
            if not ids:
                return []
            await conn.execute(update(t.outbox).where(o.message_id.in_(ids)).values(
                lease_owner=owner, lease_until=now + lease))
            rows = (await conn.execute(select(
                o.message_id, o.webhook_id, o.payload, o.attempts, o.created_at,
            ).where(o.message_id.in_(ids)).order_by(o.message_id))).all()
        return [ClaimedEvent(row.message_id, row.webhook_id, row.payload.encode("utf-8"),
                             row.attempts, row.created_at) for row in rows]

    async def webhook_attempted(self, message_id: int, owner: str, event: DeliveryEvent,
                                status: int | None, error: str | None, now: datetime,
                                retry_at: datetime) -> bool:
        """Record one attempt of a held event (``webhooks.TRANSITIONS``); False if
        ``owner`` no longer held it."""
        o = t.outbox.c
        state = webhooks.next_state(DeliveryState.PENDING, event)
        values: dict[str, Any] = {"attempts": o.attempts + 1, "last_status": status,
                                  "last_error": error[:200] if error else None,
                                  "lease_owner": None, "lease_until": None}
        if state is DeliveryState.DELIVERED:
            values["sent_at"] = now
        elif state is DeliveryState.FAILED:
            values["failed_at"] = now
        elif event is DeliveryEvent.REFUSED:
            values["next_attempt_at"] = retry_at
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.outbox).where(
                o.message_id == message_id, o.lease_owner == owner, o.sent_at.is_(None),
            ).values(**values))
        return bool(result.rowcount)

    async def put_off_webhooks(self, owner: str, retry_at: datetime) -> int:
        """Give back what ``owner`` holds, due again at ``retry_at`` (the receiver is away)."""
        o = t.outbox.c
        async with self.engine.begin() as conn:
            result = await conn.execute(update(t.outbox).where(
                o.kind == WEBHOOK, o.lease_owner == owner, o.sent_at.is_(None)).values(
                lease_owner=None, lease_until=None, next_attempt_at=retry_at))
        return int(result.rowcount)

    async def deliveries(self, state: DeliveryState | None, after: int | None, limit: int
                         ) -> list[Delivery]:
        """Webhook events, oldest first, after the message id ``after``."""
        o = t.outbox.c
        query = select(t.outbox).where(o.kind == WEBHOOK)
        if state is not None:
            query = query.where(_in_state(state))
        if after is not None:
            query = query.where(o.message_id > after)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(o.message_id).limit(limit))).all()
        return [_delivery(row) for row in rows]

    async def retry_delivery(self, webhook_id: str, now: datetime) -> Delivery:
        """Make a pending or failed event due now (an operator's retry)."""
        o = t.outbox.c
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(t.outbox).where(
                o.kind == WEBHOOK, o.webhook_id == webhook_id))).first()
            if row is None:
                raise NotFound(f"unknown webhook '{webhook_id}'", field="webhook_id")
            webhooks.next_state(_delivery_state(row), DeliveryEvent.RETRY)
            await conn.execute(update(t.outbox).where(
                o.message_id == row.message_id, o.sent_at.is_(None)).values(
                failed_at=None, next_attempt_at=now))
            row = (await conn.execute(select(t.outbox).where(
                o.message_id == row.message_id))).one()
        return _delivery(row)

    async def webhook_counts(self) -> WebhookCounts:
        o = t.outbox.c
        pending = _in_state(DeliveryState.PENDING)
        failed = _in_state(DeliveryState.FAILED)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(
                func.count().filter(pending).label("pending"),
                func.count().filter(failed).label("failed"),
                func.count().filter(o.sent_at.is_not(None)).label("delivered"),
                func.min(o.created_at).filter(pending).label("oldest"),
            ).where(o.kind == WEBHOOK))).one()
        return WebhookCounts(int(row.pending or 0), int(row.failed or 0),
                             int(row.delivered or 0), row.oldest)

    async def endpoint_disabled(self, key: str) -> datetime | None:
        """When the receiver ``key`` was disabled (410 Gone), or None while enabled."""
        async with self.engine.connect() as conn:
            at: datetime | None = (await conn.execute(select(
                t.webhook_endpoints.c.disabled_at).where(
                t.webhook_endpoints.c.endpoint_key == key))).scalar_one_or_none()
        return at

    async def set_endpoint_disabled(self, key: str, disabled: bool, status: int | None,
                                    now: datetime) -> None:
        values = {"endpoint_key": key, "disabled_at": now if disabled else None,
                  "disabled_status": status if disabled else None, "changed_at": now}
        stmt = self._insert(t.webhook_endpoints).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["endpoint_key"],
            set_={k: v for k, v in values.items() if k != "endpoint_key"})
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    # -- credits -----------------------------------------------------------------

    async def _reserve_credit(self, conn: AsyncConnection, new: NewBooking, now: datetime, *,
                              required: bool = True) -> str | None:
        """Hold one credit for ``new``; its hub, or None (or ``no_credits``) if none is left."""
        account = t.credit_accounts.c
        result = await conn.execute(
            update(t.credit_accounts)
            .where(account.client_id == new.client_id, account.balance > 0)
            .values(balance=account.balance - 1, reserved=account.reserved + 1))
        if result.rowcount != 1:
            if not required:
                return None
            raise Conflict(
                f"client '{new.client_id}' has no sponsored credit left",
                code="no_credits", field="funding",
            )
        hub_id: str = (await conn.execute(select(account.hub_id).where(
            account.client_id == new.client_id))).scalar_one()
        await conn.execute(t.credit_ledger.insert().values(
            client_id=new.client_id, hub_id=hub_id, booking_id=new.booking_id, kind="reserve",
            amount=1, at=now, note=None))
        await self._credits_changed(conn, new.client_id, "reserve", new.booking_id, None, now)
        return hub_id

    async def _credits_changed(self, conn: AsyncConnection, client_id: str, why: str,
                               booking_id: str | None, note: str | None, now: datetime
                               ) -> None:
        """The ``credits.changed`` event of a ledger entry, with the account after it."""
        if not self.webhooks:
            return
        row = (await conn.execute(select(t.credit_accounts).where(
            t.credit_accounts.c.client_id == client_id))).one()
        await self._enqueue(conn, [webhooks.credits_changed(
            client_id=row.client_id, hub_id=row.hub_id, balance=row.balance,
            reserved=row.reserved, why=why, booking_id=booking_id, note=note, at=now)], now)

    async def _settle_credit(self, conn: AsyncConnection, booking_id: str, target: CreditState,
                             now: datetime, note: str) -> None:
        """Move the booking's credit to ``target`` (consumed or released), at most once.

        ``reserved → consumed``: reserved - 1; ``reserved → released``: back to balance;
        an override may move ``consumed ↔ released`` (balance -1 / +1, it may go negative:
        the sponsor owes that session).
        """
        if target not in (CreditState.CONSUMED, CreditState.RELEASED):
            return
        row = (await conn.execute(select(
            t.bookings.c.credit_state, t.bookings.c.client_id, t.bookings.c.hub_id,
        ).where(t.bookings.c.booking_id == booking_id))).one()
        current = CreditState(row.credit_state)
        if current in (CreditState.NONE, target):
            return
        account = t.credit_accounts.c
        deltas = {
            (CreditState.RESERVED, CreditState.CONSUMED): (0, -1),
            (CreditState.RESERVED, CreditState.RELEASED): (1, -1),
            (CreditState.CONSUMED, CreditState.RELEASED): (1, 0),
            (CreditState.RELEASED, CreditState.CONSUMED): (-1, 0),
        }
        balance_delta, reserved_delta = deltas[(current, target)]
        await conn.execute(update(t.credit_accounts).where(
            account.client_id == row.client_id,
        ).values(balance=account.balance + balance_delta,
                 reserved=account.reserved + reserved_delta))
        await conn.execute(update(t.bookings).where(
            t.bookings.c.booking_id == booking_id).values(credit_state=target.value))
        kind = "consume" if target is CreditState.CONSUMED else "release"
        await conn.execute(t.credit_ledger.insert().values(
            client_id=row.client_id, hub_id=row.hub_id or "", booking_id=booking_id, kind=kind,
            amount=1, at=now, note=note))
        await self._credits_changed(conn, row.client_id, kind, booking_id, note, now)

    async def _grant(self, conn: AsyncConnection, hub_id: str, client_id: str, credits: int,
                     now: datetime, note: str | None) -> None:
        account = t.credit_accounts.c
        stmt = self._insert(t.credit_accounts).values(
            client_id=client_id, hub_id=hub_id, balance=credits, reserved=0)
        stmt = stmt.on_conflict_do_update(
            index_elements=["client_id"],
            set_={"balance": account.balance + credits, "hub_id": hub_id})
        await conn.execute(stmt)
        await conn.execute(t.credit_ledger.insert().values(
            client_id=client_id, hub_id=hub_id, booking_id=None, kind="grant",
            amount=credits, at=now, note=note))
        await self._credits_changed(conn, client_id, "grant", None, note, now)

    async def grant_credits(self, hub_id: str, client_id: str, credits: int, now: datetime
                            ) -> CreditAccount:
        account = t.credit_accounts.c
        async with self.engine.begin() as conn:
            await self._grant(conn, hub_id, client_id, credits, now, None)
            row = (await conn.execute(
                select(t.credit_accounts).where(account.client_id == client_id))).one()
        return CreditAccount(ClientId(row.client_id), HubId(row.hub_id), row.balance,
                             row.reserved)

    async def get_credits(self, client: Client) -> CreditAccount:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.credit_accounts).where(
                t.credit_accounts.c.client_id == client.client_id))).first()
        if row is None:
            return CreditAccount(client.client_id, client.hub_id, 0, 0)
        return CreditAccount(ClientId(row.client_id), HubId(row.hub_id), row.balance,
                             row.reserved)

    async def credit_history(self, client_id: str, limit: int = 500) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.credit_ledger).where(
                t.credit_ledger.c.client_id == client_id,
            ).order_by(t.credit_ledger.c.entry_id).limit(limit))).all()
        return [dict(row._mapping) for row in rows]

    # -- attendance --------------------------------------------------------------

    async def add_events(self, events: Sequence[AttendanceEvent]) -> int:
        """Append events; an id already stored is skipped. Returns how many were new."""
        if not events:
            return 0
        stmt = self._insert(t.attendance_events).values([{
            "event_id": e.event_id, "booking_id": e.booking_id, "role": e.role.value,
            "kind": e.kind.value, "at": e.at, "reason": e.reason,
        } for e in events]).on_conflict_do_nothing(index_elements=["event_id"])
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt)
        return max(result.rowcount, 0)

    async def events_for(self, booking_ids: Sequence[str]) -> dict[str, list[AttendanceEvent]]:
        found: dict[str, list[AttendanceEvent]] = {b: [] for b in booking_ids}
        if not booking_ids:
            return found
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.attendance_events).where(
                t.attendance_events.c.booking_id.in_(list(booking_ids)),
            ).order_by(t.attendance_events.c.at, t.attendance_events.c.event_id))).all()
        for row in rows:
            found[row.booking_id].append(AttendanceEvent(
                EventId(row.event_id), BookingId(row.booking_id), Role(row.role),
                EventKind(row.kind), row.at, row.reason))
        return found

    async def add_notice(self, event: AttendanceEvent, limit: int) -> bool:
        """Append ``event``, a party's notice, unless that party already has ``limit``
        notices of its kind for the booking; False then, and nothing is written.

        The booking's row is locked first (PostgreSQL; SQLite write transactions are
        ``BEGIN IMMEDIATE``), so two notices at once cannot both pass the count.
        """
        e = t.attendance_events.c
        async with self.engine.begin() as conn:
            await conn.execute(select(t.bookings.c.booking_id).where(
                t.bookings.c.booking_id == event.booking_id).with_for_update())
            count = (await conn.execute(select(func.count()).select_from(
                t.attendance_events).where(
                e.booking_id == event.booking_id, e.role == event.role.value,
                e.kind == event.kind.value))).scalar_one()
            if count >= limit:
                return False
            await conn.execute(t.attendance_events.insert().values(
                event_id=event.event_id, booking_id=event.booking_id, role=event.role.value,
                kind=event.kind.value, at=event.at, reason=event.reason))
        return True

    async def count_events(self, booking_id: str) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(
                t.attendance_events).where(
                t.attendance_events.c.booking_id == booking_id))).scalar_one())

    async def finalize(self, booking_id: str, outcome: str, record: dict[str, Any],
                       credit_target: CreditState, now: datetime) -> dict[str, Any]:
        """Store the final record once and settle the credit in the same transaction.

        Returns the stored record: the one given, or the one an earlier call stored.
        """
        async with self.engine.begin() as conn:
            stmt = self._insert(t.attendance_records).values(
                booking_id=booking_id, outcome=outcome, record=json.dumps(record),
                finalized_at=now).on_conflict_do_nothing(index_elements=["booking_id"])
            inserted = (await conn.execute(stmt)).rowcount == 1
            if inserted:
                await self._mark_finalized(conn, booking_id)
                await self._settle_credit(conn, booking_id, credit_target, now, "attendance")
                await self._enqueue(conn, [webhooks.attendance_finalized(
                    {**record, "overrides": []}, now)], now)
                return record
            stored = (await conn.execute(select(t.attendance_records.c.record).where(
                t.attendance_records.c.booking_id == booking_id))).scalar_one()
        return dict(json.loads(stored))

    @staticmethod
    async def _mark_finalized(conn: AsyncConnection, booking_id: str) -> None:
        """The booking has its final record now: the finaliser need not look at it again."""
        await conn.execute(update(t.bookings).where(
            t.bookings.c.booking_id == booking_id).values(finalized=True))

    async def override(self, booking_id: str, from_outcome: str | None, record: dict[str, Any],
                       credit_target: CreditState, reason: str, by: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(t.attendance_overrides.insert().values(
                booking_id=booking_id, from_outcome=from_outcome, to_outcome=record["outcome"],
                reason=reason, by=by, at=now))
            stmt = self._insert(t.attendance_records).values(
                booking_id=booking_id, outcome=record["outcome"], record=json.dumps(record),
                finalized_at=now)
            stmt = stmt.on_conflict_do_update(index_elements=["booking_id"], set_={
                "outcome": record["outcome"], "record": json.dumps(record)})
            await conn.execute(stmt)
            await self._mark_finalized(conn, booking_id)
            await self._settle_credit(conn, booking_id, credit_target, now, "override")
            if self.webhooks:
                trail = (await self._overrides(conn, [booking_id]))[booking_id]
                await self._enqueue(conn, [webhooks.attendance_overridden(
                    {**record, "overrides": [{**entry, "at": format_time(entry["at"])}
                                             for entry in trail]}, now)], now)

    async def overrides_for(self, booking_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        async with self.engine.connect() as conn:
            return await self._overrides(conn, booking_ids)

    @staticmethod
    async def _overrides(conn: AsyncConnection, booking_ids: Sequence[str]
                         ) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {b: [] for b in booking_ids}
        if not booking_ids:
            return found
        rows = (await conn.execute(select(t.attendance_overrides).where(
            t.attendance_overrides.c.booking_id.in_(list(booking_ids)),
        ).order_by(t.attendance_overrides.c.override_id))).all()
        for row in rows:
            found[row.booking_id].append({
                "from": row.from_outcome, "to": row.to_outcome, "reason": row.reason,
                "by": row.by, "at": row.at})
        return found

    async def records_for(self, booking_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not booking_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(
                t.attendance_records.c.booking_id, t.attendance_records.c.record,
            ).where(t.attendance_records.c.booking_id.in_(list(booking_ids))))).all()
        return {row.booking_id: dict(json.loads(row.record)) for row in rows}

    async def credit_state(self, booking_id: str) -> CreditState:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(t.bookings.c.credit_state).where(
                t.bookings.c.booking_id == booking_id))).scalar_one()
        return CreditState(value)

    async def due_for_finalization(self, ends_before: datetime, limit: int = 200
                                   ) -> list[Booking]:
        """Bookings whose window has closed, or that are cancelled, but that have no
        final record yet; the ``limit`` that end first.

        Two seeks of the partial index of bookings not yet final (``bookings.finalized``,
        revision 0008), one per status, so the cost follows what is due, not how many
        bookings there ever were. The anti-join only guards against a record written
        without the marker.
        """
        b, records = t.bookings.c, t.attendance_records
        found: list[Any] = []
        async with self.engine.connect() as conn:
            for status in (BookingStatus.CONFIRMED, BookingStatus.CANCELLED):
                query = (select(t.bookings)
                         .outerjoin(records, records.c.booking_id == b.booking_id)
                         .where(UNFINALIZED, b.status == status.value,
                                records.c.booking_id.is_(None)))
                if status is BookingStatus.CONFIRMED:  # a cancellation is due at once
                    query = query.where(b.ends_at <= ends_before)
                found += (await conn.execute(query.order_by(b.ends_at).limit(limit))).all()
        found.sort(key=lambda row: row.ends_at)
        return [_booking(row) for row in found[:limit]]

    async def export_page(self, start: datetime, end: datetime, hub_id: str | None,
                          outcome: str | None, after: tuple[datetime, str] | None, limit: int
                          ) -> list[Booking]:
        b, records = t.bookings.c, t.attendance_records
        query = select(t.bookings).where(b.starts_at >= start, b.starts_at < end)
        if hub_id is not None:
            query = query.where(b.hub_id == hub_id)
        if outcome is not None:
            query = query.join(records, records.c.booking_id == b.booking_id).where(
                records.c.outcome == outcome)
        if after is not None:
            # A row value: the (starts_at, booking_id) index answers it directly.
            query = query.where(_after(after))
        query = query.order_by(b.starts_at, b.booking_id).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_booking(row) for row in rows]

    async def list_bookings(self, where: BookingFilter, after: tuple[datetime, str] | None,
                            limit: int) -> list[Booking]:
        """Bookings matching ``where``, in (starts_at, booking_id) order, after ``after``."""
        b = t.bookings.c
        query = select(t.bookings)
        for column, value in ((b.professional_id, where.professional_id),
                              (b.client_id, where.client_id), (b.hub_id, where.hub_id),
                              (b.status, where.status and where.status.value)):
            if value is not None:
                query = query.where(column == value)
        if where.start is not None:
            query = query.where(b.starts_at >= where.start)
        if where.end is not None:
            query = query.where(b.starts_at < where.end)
        if after is not None:
            query = query.where(_after(after))
        query = query.order_by(b.starts_at, b.booking_id).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_booking(row) for row in rows]

    async def professional_names(self, professional_ids: Sequence[str]) -> dict[str, str]:
        if not professional_ids:
            return {}
        p = t.professionals.c
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(p.professional_id, p.name).where(
                p.professional_id.in_(list(set(professional_ids)))))).all()
        return {row.professional_id: row.name for row in rows}

    # -- credit requests -----------------------------------------------------------

    async def find_client(self, hub_id: str, email: str) -> Client | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.clients).where(
                t.clients.c.hub_id == hub_id,
                func.lower(t.clients.c.email) == email.lower(),
            ).order_by(t.clients.c.client_id).limit(1))).first()
        return _client(row) if row else None

    async def find_professional(self, email: str) -> Professional | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.professionals).where(
                func.lower(t.professionals.c.email) == email.lower(),
            ).order_by(t.professionals.c.professional_id).limit(1))).first()
        return _professional(row) if row else None

    async def add_credit_request(self, values: dict[str, Any]) -> dict[str, Any]:
        async with self.engine.begin() as conn:
            await conn.execute(t.credit_requests.insert().values(**values))
        return values

    @staticmethod
    def _credit_request_query() -> Select[Any]:
        """Credit requests with the recommending professional's name."""
        return select(t.credit_requests, t.professionals.c.name.label("professional_name")).join(
            t.professionals,
            t.professionals.c.professional_id == t.credit_requests.c.professional_id)

    async def credit_requests(self, hub_id: str, status: str | None, limit: int
                              ) -> list[dict[str, Any]]:
        query = self._credit_request_query().where(t.credit_requests.c.hub_id == hub_id)
        if status is not None:
            query = query.where(t.credit_requests.c.status == status)
        query = query.order_by(t.credit_requests.c.created_at.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(row._mapping) for row in rows]

    async def decide_credit_request(self, hub_id: str, request_id: str, approve: bool,
                                    credits: int | None, now: datetime) -> dict[str, Any]:
        """Approve (granting the credits to the request's client) or decline, once."""
        r = t.credit_requests.c
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(t.credit_requests).where(
                r.request_id == request_id, r.hub_id == hub_id).with_for_update())).first()
            if row is None:
                raise NotFound(f"unknown credit request '{request_id}'", field="request_id")
            if row.status != "pending":
                if (row.status == "approved") != approve:
                    raise Conflict(f"the request was already {row.status}",
                                   code="already_decided", field=None)
                decided = (await conn.execute(self._credit_request_query().where(
                    r.request_id == request_id))).one()
                return dict(decided._mapping)
            granted = (credits or row.credits) if approve else None
            await conn.execute(update(t.credit_requests).where(r.request_id == request_id)
                               .values(status="approved" if approve else "declined",
                                       decided_at=now, granted=granted))
            if approve and granted:
                await self._grant(conn, hub_id, row.client_id, granted, now,
                                  f"credit request {request_id}")
            row = (await conn.execute(self._credit_request_query().where(
                r.request_id == request_id))).one()
        return dict(row._mapping)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))
