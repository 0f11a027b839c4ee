"""In-call "book next session": free slots and booking, authorised by a join token.

The professional books the client's next session from their availability while in the
call. The new booking is sponsored if the client has a credit left, else self-paid; the
database refuses double booking, and an idempotency key makes retries safe.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from booking_gate import slots
from booking_gate.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from booking_gate.model import (
    Booking,
    BookingId,
    Funding,
    NewBooking,
    Professional,
    Role,
)
from booking_gate.notify import BookingEvent
from booking_gate.rules import format_time
from booking_gate.service import GateService, booking_json
from booking_gate.tokens import TokenClaims
from booking_gate.validation import Body
from booking_gate.webhooks import BookedBy

logger = logging.getLogger(__name__)

MAX_DAYS = 60


def bearer(header: str | None) -> str:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a join token is required (Authorization: Bearer <token>)")
    return token.strip()


class InCall:
    def __init__(self, gate: GateService) -> None:
        self.gate = gate

    async def _party(self, room_id: str, authorization: str | None, now: datetime
                     ) -> tuple[Booking, TokenClaims]:
        claims = self.gate.tokens.verify(bearer(authorization), now)
        if claims.room != room_id:
            raise Forbidden("this join token is for another room")
        booking = await self.gate.store.get_booking_by_room(room_id)
        if booking is None or booking.booking_id != claims.bkg:
            raise Forbidden("this join token is for another room")
        if not self.gate.tokens.is_current(claims, booking):
            raise Forbidden("this booking was cancelled or moved; the token no longer works")
        return booking, claims

    async def _professional(self, booking: Booking) -> Professional:
        professional = await self.gate.store.get_professional(booking.professional_id)
        if professional is None:  # bookings reference professionals: only if deleted by hand
            raise NotFound("the professional is unknown", field=None)
        return professional

    async def _free(self, professional: Professional, now: datetime, days: int
                    ) -> list[slots.Slot]:
        start, end = slots.search_range(professional.timezone, now, days)
        buffer = timedelta(minutes=professional.buffer_minutes)
        store = self.gate.store
        bookings = await store.list_confirmed(professional.professional_id, start - buffer,
                                              end + buffer)
        blocks = await store.list_blocks(professional.professional_id, start, end)
        return slots.free_slots(
            timezone=professional.timezone, availability=professional.availability,
            session_minutes=professional.session_minutes,
            buffer_minutes=professional.buffer_minutes, slot_minutes=professional.slot_step,
            bookings=[(b.starts_at, b.ends_at) for b in bookings],
            blocks=[(b.starts_at, b.ends_at) for b in blocks], now=now, days=days)

    async def next_slots(self, room_id: str, authorization: str | None,
                         query: dict[str, str]) -> dict[str, Any]:
        now = self.gate.clock()
        booking, _claims = await self._party(room_id, authorization, now)
        for key in query:
            if key != "days":
                raise InvalidRequest(f"unknown query parameter '{key}'", field=key)
        raw = query.get("days", "14")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
            raise InvalidRequest(f"'days' must be a whole number from 1 to {MAX_DAYS}",
                                 field="days")
        professional = await self._professional(booking)
        free = await self._free(professional, now, int(raw))
        # What the booking panel needs to say whom it books and how it is paid: the
        # client's first name only (the booking system sends full names), and the free
        # sponsored balance the next booking would draw on (0: it would be self-paid).
        # Both parties see the same answer: it is the client's own name and balance.
        client = await self.gate.store.get_client(booking.client_id)
        credits = 0 if client is None else (await self.gate.store.get_credits(client)).balance
        return {"timezone": professional.timezone,
                "session_minutes": professional.session_minutes,
                "client_first_name": client.first_name if client else "",
                "sponsored_credits_left": credits,
                "slots": [{"starts_at": format_time(s.starts_at),
                           "ends_at": format_time(s.ends_at)} for s in free]}

    async def next_booking(self, room_id: str, authorization: str | None, data: object
                           ) -> tuple[dict[str, Any], bool]:
        now = self.gate.clock()
        booking, claims = await self._party(room_id, authorization, now)
        if claims.role is not Role.PROFESSIONAL:
            raise Forbidden("only the professional can book the next session")
        body = Body(data, {"starts_at", "idempotency_key"})
        starts_at = body.time("starts_at")
        key = body.req_text("idempotency_key", max_len=64)
        scoped_key = f"{room_id}:{key}"
        existing = await self.gate.store.get_booking_by_key(scoped_key)
        if existing is not None:
            return booking_json(existing), False
        professional = await self._professional(booking)
        ends_at = starts_at + timedelta(minutes=professional.session_minutes)
        free = await self._free(professional, now, MAX_DAYS)
        if not any(s.starts_at == starts_at for s in free):
            raise Conflict("that time is not a free slot of the professional",
                           code="slot_taken", field="starts_at")
        new = NewBooking(
            booking_id=BookingId(f"next-{secrets.token_hex(10)}"),
            professional_id=booking.professional_id, client_id=booking.client_id,
            starts_at=starts_at, ends_at=ends_at, funding=Funding.SPONSORED,
            source=booking.source, idempotency_key=scoped_key, fallback_private=True)
        # booking.created says the professional booked it, in the call.
        notices = await self.gate.notifier(BookingEvent.CREATED, booking.professional_id,
                                            booking.client_id, booked_by=BookedBy.PROFESSIONAL)
        created, fresh = await self.gate.store.create_booking(new, now, notify=notices)
        if fresh:
            self.gate.outbox_changed()
            logger.info("next session booked in call", extra={"booking_id": new.booking_id})
        return booking_json(created), fresh

