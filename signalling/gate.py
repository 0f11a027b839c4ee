"""The one interface signalling uses to reach the booking gate.

``carecall serve`` wires an in-process implementation (``carecall.wiring``); scale-out
nodes use HTTP with the API key and the gate's JWKS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class RoomBooking:
    """What admission needs to know about the booking behind a room."""

    room_id: str
    booking_id: str
    professional_id: str
    client_id: str
    starts_at: datetime
    ends_at: datetime
    cancelled: bool
    changed_at: datetime  # tokens issued before this are stale (rescheduled)
    opens_at: datetime  # start minus the join-early window (the token's nbf)
    closes_at: datetime  # end plus the overrun window (the token's exp)
    # "Hide my IP": the client's welcome asks for relay-only ICE (docs/security.md).
    client_relay_only: bool = False


@dataclass(frozen=True, slots=True)
class AttendanceReport:
    event_id: str
    booking_id: str
    role: str
    kind: str
    at: datetime
    reason: str | None = None


LockListener = Callable[[str, str], Awaitable[None]]  # (room_id, reason)


class GateLink(Protocol):
    """What signalling asks of the gate. Every method may raise ``GateUnavailable`` (the
    gate cannot be reached now: try again later); ``report`` may also raise
    ``GateRefused`` (the gate answered that these events will never be stored)."""

    async def room(self, room_id: str) -> RoomBooking | None:
        """The booking behind ``room_id``, or None if the gate knows no such room."""

    async def rooms(self, room_ids: Sequence[str]) -> dict[str, RoomBooking | None]:
        """``room`` for many rooms at once (the periodic revalidation of open rooms)."""

    async def report(self, events: Sequence[AttendanceReport]) -> None:
        """Store attendance events (idempotent by id); raise if they were not stored."""

    async def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        """The public key that ``kid`` names among those the gate publishes (its signing
        key and, during a rotation, a retired one), or None when it publishes no such key.

        An implementation that caches the gate's JWKS refetches it on an unknown ``kid``
        (a rotation happened), at most once per short interval: the ``kid`` comes from
        an unauthenticated token, so anyone can send unknown ones.
        """

    def on_room_locked(self, listener: LockListener) -> None:
        """Hear at once when a booking is cancelled or rescheduled (where supported)."""

    async def close(self) -> None:
        """Release what the link holds (connections to the gate)."""
