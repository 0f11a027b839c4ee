"""Room registries: where the rooms' state lives, and how a change to it is committed.

A registry loads a room's state (the pure ``Room`` and the booking the room opened
with), applies a change to it and commits the result atomically, returning the effects
the change produced for the hub to carry out. Two implementations:

- ``MemoryRegistry`` (this module): rooms in this process, for ``carecall serve`` on
  its own; every connection is local;
- ``RedisRegistry`` (``registry_redis.py``): rooms in Redis, shared by any number of
  signalling nodes; effects for connections on other nodes travel by pub/sub.

Invariants every implementation keeps:
- ``update`` is atomic per room: changes of one room apply one after the other, each to
  the state the previous one committed; ``change`` may be called more than once (a
  retry after a conflict) and must therefore be pure;
- a room with nobody present or away is forgotten;
- a room is created only by a change that brings its booking (a join).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from signalling.gate import RoomBooking
from signalling.room import Effect, Role, Room
from signalling.sockets import Delivery

Change = Callable[[Room], list[Effect]]
Deliver = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Applied:
    """A committed change: its effects, the room after it, the booking it opened with."""

    effects: list[Effect]
    room: Room
    booking: RoomBooking


@dataclass(frozen=True, slots=True)
class Orphan:
    """A room that holds connections of a node that died, to be dropped since ``since``."""

    room_id: str
    node: str
    since: datetime


class RoomRegistry(Protocol):
    node_id: str

    async def start(self, deliver: Deliver) -> None:
        """Begin: ``deliver`` receives what other nodes send this node's connections."""

    async def close(self) -> None:
        """Stop receiving and release connections; the rooms' state stays."""

    async def update(self, room_id: str, booking: RoomBooking | None, change: Change
                     ) -> Applied | None:
        """Apply ``change`` to the room atomically; None when the room does not exist and
        no ``booking`` was given to open it with."""

    async def relay(self, room_id: str, role: Role, text: str) -> bool:
        """Send ``text`` to the connection of ``role`` wherever it is; False if absent."""

    async def publish(self, deliveries: Sequence[Delivery]) -> None:
        """Send deliveries to connections on other nodes, in order."""

    async def due(self, now: datetime) -> list[str]:
        """Rooms whose earliest grace period has run out by ``now``."""

    async def heartbeat(self) -> None:
        """Say this node is alive."""

    async def recover(self) -> None:
        """After an outage of the registry: restore what it broke (subscriptions)."""

    async def orphans(self) -> list[Orphan]:
        """Rooms left with connections of dead nodes, claimed for this node to clean up."""

    async def forget(self, node: str) -> None:
        """A dead node's rooms are cleaned up: stop tracking it."""


class MemoryRegistry:
    """Rooms in this process. Atomicity comes from the event loop: ``change`` is pure
    and synchronous, so nothing runs between loading, changing and storing a room."""

    def __init__(self, grace: timedelta, node_id: str = "local") -> None:
        self.node_id = node_id
        self._grace = grace
        self._rooms: dict[str, tuple[Room, RoomBooking]] = {}

    async def start(self, deliver: Deliver) -> None:
        """Every connection is local: nothing arrives from elsewhere."""

    async def close(self) -> None:
        """Nothing to release."""

    async def update(self, room_id: str, booking: RoomBooking | None, change: Change
                     ) -> Applied | None:
        found = self._rooms.get(room_id)
        if found is None:
            if booking is None:
                return None
            found = (Room(room_id, self._grace), booking)
        room, opened_with = found
        effects = change(room)
        if room.is_empty():
            self._rooms.pop(room_id, None)
        else:
            self._rooms[room_id] = (room, opened_with)
        return Applied(effects, room, opened_with)

    async def relay(self, room_id: str, role: Role, text: str) -> bool:
        return False  # every connection is local: the hub found none

    async def publish(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            raise RuntimeError("a memory registry has no other nodes to send to")

    async def due(self, now: datetime) -> list[str]:
        return [room_id for room_id, (room, _) in self._rooms.items()
                if (deadline := room.next_deadline()) is not None and now >= deadline]

    async def heartbeat(self) -> None:
        """One process: always alive."""

    async def recover(self) -> None:
        """Nothing to restore: it never goes away."""

    async def orphans(self) -> list[Orphan]:
        return []

    async def forget(self, node: str) -> None:
        """No other nodes."""
