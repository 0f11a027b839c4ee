"""The lobby: what a join link's page learns before, during and after its session, and
the parties' "running late" notices. Authorised by a join token, like ``incall.py``.

Invariants:

- the token's signature, key, issuer, audience and claims are checked, its time window
  is not: a genuine token too early or too late gets the session's state (``too_early``,
  ``over``), so the page can count down or say the session is over;
- the state is the server's clock against the booking's window, after two overriding
  facts: the booking was cancelled, or it was moved (the token is no longer current);
- a notice is accepted only while the booking is confirmed, the token current and the
  window not closed, at most ``MAX_NOTICES`` per party and booking, and is durable
  before it is acknowledged. It is an attendance event of kind ``running_late`` whose
  ``reason`` holds the minutes as a decimal string; it never counts as presence;
- names are returned to the parties, never logged; TURN credentials likewise.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from booking_gate import rules
from booking_gate.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
)
from booking_gate.incall import bearer
from booking_gate.model import (
    AttendanceEvent,
    Booking,
    BookingStatus,
    EventId,
    EventKind,
    Role,
)
from booking_gate.rules import format_time
from booking_gate.service import GateService
from booking_gate.store import BookingFilter
from booking_gate.tokens import TokenClaims
from booking_gate.validation import Body

logger = logging.getLogger(__name__)

# ``(room_id, role, expiry)`` → the STUN/TURN list of signalling's ``welcome``; expiry is
# the window's close as a Unix time. Injected by ``carecall serve`` (the gate itself
# knows nothing of signalling's ICE configuration).
IceServers = Callable[[str, str, int], list[dict[str, Any]]]

RUNNING_LATE_MINUTES = (5, 10, 15)
MAX_NOTICES = 10  # per party and booking


def no_ice_servers(room_id: str, role: str, expiry: int) -> list[dict[str, Any]]:
    """The default: no ICE servers to offer the lobby's network check."""
    return []


class SessionState(enum.StrEnum):
    OPEN = "open"
    TOO_EARLY = "too_early"
    OVER = "over"
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"


def session_state(booking: Booking, current: bool, window: tuple[datetime, datetime],
                  now: datetime) -> SessionState:
    """The session's state for a token (``current``: ``TokenIssuer.is_current``) at ``now``."""
    opens_at, closes_at = window
    if booking.status is BookingStatus.CANCELLED:
        return SessionState.CANCELLED
    if not current:
        return SessionState.RESCHEDULED
    if now < opens_at:
        return SessionState.TOO_EARLY
    if now < closes_at:
        return SessionState.OPEN
    return SessionState.OVER


def parse_minutes(data: object) -> int:
    """``{"minutes": 5|10|15}``, or 422 naming ``minutes``."""
    body = Body(data, {"minutes"})
    value = body.data.get("minutes")
    # type() and not ==: JSON true and 5.0 are not minutes.
    if type(value) is not int or value not in RUNNING_LATE_MINUTES:
        raise InvalidRequest(f"'minutes' must be one of "
                             f"{', '.join(map(str, RUNNING_LATE_MINUTES))}", field="minutes")
    return value


class Lobby:
    def __init__(self, gate: GateService, support_text: str | None = None,
                 ice_servers: IceServers = no_ice_servers) -> None:
        self.gate = gate
        self.support_text = support_text
        self.ice_servers = ice_servers

    async def _party(self, room_id: str, authorization: str | None, now: datetime
                     ) -> tuple[Booking, TokenClaims]:
        """The booking of ``room_id`` and the caller's claims; the window is not checked."""
        try:
            claims = self.gate.tokens.verify(bearer(authorization), now, check_window=False)
        except Unauthorized as error:
            raise Unauthorized(error.message, code="invalid_token") from None
        if claims.room != room_id:
            raise Forbidden("this join token is for another room")
        booking = await self.gate.store.get_booking_by_room(room_id)
        if booking is None:
            raise NotFound("unknown room", field=None)
        party = (booking.professional_id if claims.role is Role.PROFESSIONAL
                 else booking.client_id)
        if booking.booking_id != claims.bkg or claims.sub != party:
            raise Forbidden("this join token is not for a party of this booking")
        return booking, claims

    def _state(self, booking: Booking, claims: TokenClaims, now: datetime) -> SessionState:
        tokens = self.gate.tokens
        return session_state(booking, tokens.is_current(claims, booking),
                             tokens.window(booking), now)

    async def session(self, room_id: str, authorization: str | None) -> dict[str, Any]:
        """``GET /api/v1/rooms/{room_id}/session`` (docs/api.md)."""
        now = self.gate.clock()
        booking, claims = await self._party(room_id, authorization, now)
        state = self._state(booking, claims, now)
        opens_at, closes_at = self.gate.tokens.window(booking)
        store = self.gate.store
        professional = await store.get_professional(booking.professional_id)
        client = await store.get_client(booking.client_id)
        events = (await store.events_for([booking.booking_id]))[booking.booking_id]
        later = await store.list_bookings(BookingFilter(
            professional_id=booking.professional_id, client_id=booking.client_id,
            status=BookingStatus.CONFIRMED, start=booking.ends_at), None, 1)
        relay = (claims.role is Role.CLIENT
                 and booking.booking_id in await self.gate.relay_only_bookings([booking]))
        # TURN credentials only while the link still leads to a call.
        ice = (self.ice_servers(booking.room_id, claims.role.value,
                                int(closes_at.timestamp()))
               if state in (SessionState.TOO_EARLY, SessionState.OPEN) else [])
        return {
            "role": claims.role.value, "state": state.value,
            "starts_at": format_time(booking.starts_at), "ends_at": format_time(booking.ends_at),
            "opens_at": format_time(opens_at), "closes_at": format_time(closes_at),
            "now": format_time(now),
            "professional": {"name": professional.name if professional else "",
                             "timezone": professional.timezone if professional else "UTC"},
            "client": {"first_name": client.first_name if client else ""},
            "notices": [notice.to_json() for notice in rules.notices_of(events)],
            "next_session": None if not later else {
                "starts_at": format_time(later[0].starts_at),
                "ends_at": format_time(later[0].ends_at), "funding": later[0].funding.value},
            "support": self.support_text,
            "ice_servers": ice,
            "ice_transport_policy": "relay" if relay else "all",
        }

    async def running_late(self, room_id: str, authorization: str | None, data: object
                           ) -> dict[str, Any]:
        """``POST /api/v1/rooms/{room_id}/running-late`` (docs/api.md)."""
        now = self.gate.clock()
        booking, claims = await self._party(room_id, authorization, now)
        minutes = parse_minutes(data)
        state = self._state(booking, claims, now)
        if state in (SessionState.CANCELLED, SessionState.RESCHEDULED):
            raise Forbidden("this booking was cancelled or moved; the token no longer works")
        if state is SessionState.OVER:
            raise Conflict("the session is over", code="session_over", field=None)
        event = AttendanceEvent(EventId(f"late-{secrets.token_hex(12)}"), booking.booking_id,
                                claims.role, EventKind.RUNNING_LATE, now, str(minutes))
        if not await self.gate.store.add_notice(event, MAX_NOTICES):
            raise RateLimited(f"at most {MAX_NOTICES} running-late notices per party and "
                              f"session")
        logger.info("running-late notice", extra={"booking_id": booking.booking_id})
        return rules.Notice(claims.role, minutes, now).to_json()
