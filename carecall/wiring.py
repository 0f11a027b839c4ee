"""Wiring the gate to signalling in one process (``carecall serve``)."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from booking_gate.appkeys import SERVICE
from booking_gate.model import (
    AttendanceEvent,
    Booking,
    BookingId,
    BookingStatus,
    EventId,
    EventKind,
    Role,
    RoomId,
)
from booking_gate.service import GateService
from signalling.gate import AttendanceReport, GateLink, LockListener, RoomBooking


class InProcessGate(GateLink):
    """Signalling's gate interface served by the ``GateService`` of the same app."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    @property
    def _service(self) -> GateService:
        return self._app[SERVICE]

    async def room(self, room_id: str) -> RoomBooking | None:
        return (await self.rooms([room_id]))[room_id]

    async def rooms(self, room_ids: Sequence[str]) -> dict[str, RoomBooking | None]:
        found = await self._service.room_admissions(room_ids)
        return {room_id: self._room(*found[room_id]) if room_id in found else None
                for room_id in room_ids}

    def _room(self, booking: Booking, client_relay_only: bool) -> RoomBooking:
        opens_at, closes_at = self._service.tokens.window(booking)
        return RoomBooking(
            room_id=booking.room_id, booking_id=booking.booking_id,
            professional_id=booking.professional_id, client_id=booking.client_id,
            starts_at=booking.starts_at, ends_at=booking.ends_at,
            cancelled=booking.status is BookingStatus.CANCELLED,
            changed_at=booking.changed_at, opens_at=opens_at, closes_at=closes_at,
            client_relay_only=client_relay_only)

    async def report(self, events: Sequence[AttendanceReport]) -> None:
        await self._service.ingest([AttendanceEvent(
            EventId(e.event_id), BookingId(e.booking_id), Role(e.role), EventKind(e.kind),
            e.at, e.reason) for e in events])

    async def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._service.tokens.verification_key(kid)

    def on_room_locked(self, listener: LockListener) -> None:
        async def forward(room_id: RoomId, reason: str) -> None:
            await listener(room_id, reason)

        self._service.room_lock_listeners.append(forward)

    async def close(self) -> None:
        """Nothing to release: the gate is this process's."""
