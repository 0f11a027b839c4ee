"""Admission: may this token enter its room now? The gate's word at every join.

Two steps, in this order (docs/contract.md section 4):

1. ``verify``: the key its ``kid`` names, then the signature, algorithm, ``iss``, ``aud``
   and claims (4401). Only after this is the token known to come from the gate; the
   handler's per-address budget counts failures of this step and nothing later.
2. ``admit``: the room the client asked for (4403 ``wrong_room``), the token's own
   window by the server's clock (4410), the room (4404), the booking behind it (4403)
   and the booking's window (4410).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from signalling.errors import BadToken, NotAllowed, OutsideWindow, UnknownRoom
from signalling.gate import GateLink, RoomBooking
from signalling.messages import rfc3339
from signalling.room import Role
from signalling.tokens import Claims, key_id, verify


@dataclass(frozen=True, slots=True)
class Admitted:
    claims: Claims
    booking: RoomBooking


# How far a token's ``iat`` may lie ahead of this server's clock (seconds).
MAX_CLOCK_SKEW = 60


class Admission:
    def __init__(self, gate: GateLink) -> None:
        self.gate = gate

    async def verify(self, token: str) -> Claims:
        """The token's claims, verified with the key its ``kid`` names; BadToken (4401)
        when it names none the gate publishes or does not verify with it."""
        kid = key_id(token)
        key = await self.gate.verification_key(kid)
        if key is None:
            raise BadToken("the join token is signed with an unknown key ('kid')")
        return verify(token, key)

    async def admit(self, claims: Claims, room_hint: str | None, now: datetime) -> Admitted:
        """Check a verified token's room and window, then the booking; raise the refusal."""
        if room_hint is not None and room_hint != claims.room:
            raise NotAllowed("this link is for another room", "wrong_room")
        ts = now.timestamp()
        if claims.iat > ts + MAX_CLOCK_SKEW:
            # Issued "in the future": a gate with a broken clock, or a key used outside
            # the gate. Either way not a token this server should honour.
            raise BadToken("the join token was issued in the future")
        if ts >= claims.exp:
            raise OutsideWindow("this session is over", "session_over")
        booking = await self.gate.room(claims.room)
        if ts < claims.nbf:
            raise too_early(claims, booking)
        if booking is None:
            raise UnknownRoom("this room does not exist")
        check_booking(claims, booking)
        if now < booking.opens_at:
            raise too_early(claims, booking)
        if now >= booking.closes_at:
            raise OutsideWindow("this session is over", "session_over")
        return Admitted(claims, booking)


def too_early(claims: Claims, booking: RoomBooking | None) -> OutsideWindow:
    """The too_early refusal, naming the start and opening times (the web page reads them)
    when the token is the booking's current one, else only the token's own opening."""
    if booking is not None and is_current(claims, booking):
        return OutsideWindow(
            f"too early: the session starts at {rfc3339(booking.starts_at)} and the room "
            f"opens at {rfc3339(booking.opens_at)}", "too_early")
    opens = rfc3339(datetime.fromtimestamp(claims.nbf, UTC))
    return OutsideWindow(f"too early: the room opens at {opens}", "too_early")


def is_current(claims: Claims, booking: RoomBooking) -> bool:
    try:
        check_booking(claims, booking)
    except NotAllowed:
        return False
    return True


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
