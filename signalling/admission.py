"""Admission: may this token enter its room now? The gate's word at every join."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from signalling.errors import NotAllowed, OutsideWindow, UnknownRoom
from signalling.gate import GateLink, RoomBooking
from signalling.messages import rfc3339
from signalling.room import Role
from signalling.tokens import Claims, verify


@dataclass(frozen=True, slots=True)
class Admitted:
    claims: Claims
    booking: RoomBooking


class Admission:
    def __init__(self, gate: GateLink) -> None:
        self.gate = gate

    async def admit(self, token: str, room_hint: str | None, now: datetime) -> Admitted:
        """Check the token, then the booking behind its room; raise the refusal."""
        claims = verify(token, await self.gate.verification_key())
        if room_hint is not None and room_hint != claims.room:
            raise NotAllowed("this link is for another room", "wrong_room")
        booking = await self.gate.room(claims.room)
        if booking is None:
            raise UnknownRoom("this room does not exist")
        check_booking(claims, booking)
        if now < booking.opens_at:
            raise OutsideWindow(
                f"too early: the session starts at {rfc3339(booking.starts_at)} and the room "
                f"opens at {rfc3339(booking.opens_at)}", "too_early")
        if now >= booking.closes_at:
            raise OutsideWindow("this session is over", "session_over")
        return Admitted(claims, booking)


def check_booking(claims: Claims, booking: RoomBooking) -> None:
    """Refuse tokens that no longer match the booking (cancelled, moved, other party)."""
    party = booking.professional_id if claims.role is Role.PROFESSIONAL else booking.client_id
    if claims.booking_id != booking.booking_id or claims.sub != party:
        raise NotAllowed("the join token is not for a party of this booking", "not_a_party")
    if booking.cancelled:
        raise NotAllowed("this booking was cancelled", "booking_cancelled")
    if (claims.nbf != int(booking.opens_at.timestamp())
            or claims.exp != int(booking.closes_at.timestamp())
            or claims.iat < int(booking.changed_at.timestamp())):
        raise NotAllowed("this booking was rescheduled; ask for a new link",
                         "booking_rescheduled")
