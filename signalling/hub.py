"""The in-process room registry: rooms of this node and the sockets in them.

It carries out the effects the pure ``Room`` returns: sends, closes, and attendance
reports. Each room has a lock, so the events of one room apply in order while rooms
never wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from signalling import messages
from signalling.errors import CloseCode
from signalling.gate import AttendanceReport, RoomBooking
from signalling.metrics import SignallingMetrics
from signalling.reporter import AttendanceReporter
from signalling.room import Attend, Close, Effect, Role, Room, Send

logger = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Connection:
    id: int
    ws: web.WebSocketResponse
    room_id: str
    role: Role
    booking: RoomBooking
    session_id: str
    closed_by_server: bool = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(messages.encode(message))
        except (ConnectionError, RuntimeError):
            logger.debug("send to a closing socket dropped (room %s)", self.room_id)

    async def close(self, code: int, reason: str) -> None:
        self.closed_by_server = True
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.close(code=code, message=reason.encode()[:120])


@dataclass(slots=True)
class RoomEntry:
    room: Room
    booking: RoomBooking
    connections: dict[int, Connection] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RoomHub:
    def __init__(self, grace: Any, reporter: AttendanceReporter, metrics: SignallingMetrics,
                 clock: Callable[[], datetime]) -> None:
        self._rooms: dict[str, RoomEntry] = {}
        self._grace = grace
        self._reporter = reporter
        self._metrics = metrics
        self._clock = clock

    def _entry(self, room_id: str, booking: RoomBooking) -> RoomEntry:
        entry = self._rooms.get(room_id)
        if entry is None:
            entry = self._rooms[room_id] = RoomEntry(Room(room_id, self._grace), booking)
            self._metrics.rooms.set(len(self._rooms))
        return entry

    def rooms(self) -> list[tuple[str, RoomBooking]]:
        return [(room_id, entry.booking) for room_id, entry in self._rooms.items()]

    async def _apply(self, entry: RoomEntry, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                connection_id = entry.room.connection(effect.role)
                target = entry.connections.get(connection_id) if connection_id else None
                if target is not None:
                    await target.send(effect.message)
            elif isinstance(effect, Close):
                target = entry.connections.pop(effect.connection, None)
                if target is not None:
                    await target.send(messages.error(effect.error_code, effect.message))
                    await target.close(effect.code, effect.error_code)
            elif isinstance(effect, Attend):
                self._reporter.add(AttendanceReport(
                    event_id=uuid.uuid4().hex, booking_id=entry.booking.booking_id,
                    role=effect.role.value, kind=effect.kind, at=effect.at,
                    reason=effect.reason))
        if entry.room.is_empty():
            self._rooms.pop(entry.room.room_id, None)
            self._metrics.rooms.set(len(self._rooms))

    async def join(self, conn: Connection, can_rollback: bool, resumed: bool,
                   welcome: dict[str, Any]) -> None:
        while True:
            entry = self._entry(conn.room_id, conn.booking)
            await entry.lock.acquire()
            if self._rooms.get(conn.room_id) is entry:
                break
            # The room emptied (and was dropped) while we waited for its lock.
            entry.lock.release()
        try:
            # ``entry.booking`` stays the one the room opened with, so revalidation closes
            # the room if the booking changed since, whatever links joined later.
            effects = entry.room.join(conn.role, conn.id, conn.session_id, can_rollback,
                                      resumed, self._clock())
            entry.connections[conn.id] = conn
            await conn.send({**welcome, "polite": entry.room.polite(conn.role),
                             "peer_present": entry.room.connection(conn.role.other) is not None})
            await self._apply(entry, effects)
        finally:
            entry.lock.release()

    async def relay(self, conn: Connection, message: dict[str, Any]) -> bool:
        """Relay to the other party; False when nobody is there to receive it."""
        entry = self._rooms.get(conn.room_id)
        if entry is None:
            return False
        target_id = entry.room.connection(conn.role.other)
        target = entry.connections.get(target_id) if target_id is not None else None
        if target is None:
            return False
        await target.send(messages.relayed(message, conn.role.value))
        self._metrics.relayed.inc()
        return True

    async def _room_event(self, conn: Connection, name: str, *args: Any) -> None:
        entry = self._rooms.get(conn.room_id)
        if entry is None:
            return
        async with entry.lock:
            if entry.connections.get(conn.id) is not conn:
                return  # replaced or kicked already
            method = getattr(entry.room, name)
            effects = method(conn.role, *args)
            if name in ("bye", "drop"):
                entry.connections.pop(conn.id, None)
            await self._apply(entry, effects)

    async def media(self, conn: Connection, connected: bool) -> None:
        await self._room_event(conn, "media", connected, self._clock())

    async def bye(self, conn: Connection) -> None:
        await self._room_event(conn, "bye", conn.id, self._clock())

    async def drop(self, conn: Connection) -> None:
        await self._room_event(conn, "drop", conn.id, self._clock())

    async def kick(self, room_id: str, code: CloseCode, error_code: str, message: str) -> None:
        entry = self._rooms.get(room_id)
        if entry is None:
            return
        async with entry.lock:
            await self._apply(entry, entry.room.kick(code, error_code, message, self._clock()))

    async def sweep(self) -> None:
        """End grace periods that have run out."""
        now = self._clock()
        for entry in list(self._rooms.values()):
            deadline = entry.room.next_deadline()
            if deadline is not None and now >= deadline:
                async with entry.lock:
                    await self._apply(entry, entry.room.expire(now))

    async def shutdown(self) -> None:
        """Close every socket with 1001; clients reconnect and resume elsewhere."""
        for entry in list(self._rooms.values()):
            for conn in list(entry.connections.values()):
                await conn.close(CloseCode.GOING_AWAY, "server_shutdown")
