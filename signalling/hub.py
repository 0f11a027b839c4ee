"""The room hub: one node's side of every room it has a connection in.

It runs each room event as a change of the room registry (``registry.py``: in this
process, or in Redis shared by several nodes) and carries out the effects the pure
``Room`` returns: messages and closes for connections (delivered here when the socket
is on this node, else published to the node that holds it) and attendance facts (to
the reporter). Events of one room are run one at a time on this node (a lock per room),
so what this node delivers for a room keeps the order of the room's changes.

Attendance event ids are derived from what they say (room, role, kind, time, reason),
so two nodes that both report one fact (a dead node's rooms cleaned up twice, say)
store it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from signalling import messages
from signalling.errors import CloseCode, RoomsUnavailable
from signalling.gate import AttendanceReport, RoomBooking
from signalling.metrics import SignallingMetrics
from signalling.registry import Applied, Change, RoomRegistry
from signalling.reporter import AttendanceReporter
from signalling.room import Attend, Close, ConnectionId, Effect, Room, Send, node_of
from signalling.sockets import Connection, Delivery, LocalSockets

logger = logging.getLogger(__name__)


def event_id(room_id: str, attend: Attend) -> str:
    """The same fact about the same room always gets the same id."""
    text = "|".join([room_id, attend.role.value, attend.kind,
                     attend.at.astimezone(UTC).isoformat(), attend.reason or ""])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class RoomHub:
    def __init__(self, registry: RoomRegistry, reporter: AttendanceReporter,
                 metrics: SignallingMetrics, clock: Callable[[], datetime]) -> None:
        self.registry = registry
        self.sockets = LocalSockets()
        self._reporter = reporter
        self._metrics = metrics
        self._clock = clock
        self._numbers = itertools.count(1)
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._registry_down = False

    def new_connection_id(self) -> ConnectionId:
        return f"{self.registry.node_id}:{next(self._numbers)}"

    def rooms(self) -> list[tuple[str, RoomBooking]]:
        """The rooms this node holds a connection of, with the booking each opened with."""
        return self.sockets.rooms()

    # -- running a change ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _room_lock(self, room_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(room_id, asyncio.Lock())
        self._users[room_id] = self._users.get(room_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[room_id] -= 1
            if not self._users[room_id]:
                del self._users[room_id], self._locks[room_id]

    async def _run(self, room_id: str, booking: RoomBooking | None, change: Change,
                   before: Callable[[Applied], Any] | None = None) -> Applied | None:
        async with self._room_lock(room_id):
            applied = await self.registry.update(room_id, booking, change)
            if applied is None:
                return None
            if before is not None:
                await before(applied)
            await self._carry_out(room_id, applied)
        self._metrics.rooms.set(len(self.sockets.rooms()))
        return applied

    async def _carry_out(self, room_id: str, applied: Applied) -> None:
        remote: list[Delivery] = []
        for effect in applied.effects:
            delivery = self._delivery(applied.room, effect)
            if delivery is not None:
                if node_of(delivery.connection) == self.registry.node_id:
                    await self.sockets.deliver(delivery)
                else:
                    remote.append(delivery)
            elif isinstance(effect, Attend):
                self._reporter.add(AttendanceReport(
                    event_id=event_id(room_id, effect), booking_id=applied.booking.booking_id,
                    role=effect.role.value, kind=effect.kind, at=effect.at,
                    reason=effect.reason))
        if remote:
            await self.registry.publish(remote)

    @staticmethod
    def _delivery(room: Room, effect: Effect) -> Delivery | None:
        if isinstance(effect, Send):
            target = room.connection(effect.role)
            return None if target is None else Delivery(target, messages.encode(effect.message))
        if isinstance(effect, Close):
            return Delivery(effect.connection, close_code=int(effect.code),
                            error_code=effect.error_code, message=effect.message)
        return None

    # -- room events ----------------------------------------------------------------

    async def join(self, conn: Connection, can_rollback: bool, resumed: bool,
                   welcome: dict[str, Any]) -> None:
        """Admit ``conn``: commit the join, send ``welcome``, then the join's effects."""
        now = self._clock()
        self.sockets.add(conn, conn.booking)

        async def greet(applied: Applied) -> None:
            room = applied.room
            await conn.send_now({**welcome, "polite": room.polite(conn.role),
                                 "peer_present": room.connection(conn.role.other) is not None})
            conn.ready.set()

        try:
            await self._run(conn.room_id, conn.booking, lambda room: room.join(
                conn.role, conn.id, conn.session_id, can_rollback, resumed, now), greet)
        except BaseException:
            self.sockets.remove(conn)
            raise
        finally:
            conn.ready.set()

    async def relay(self, conn: Connection, message: dict[str, Any]) -> bool:
        """Relay to the other party; False when nobody is there to receive it."""
        text = messages.encode(messages.relayed(message, conn.role.value))
        target = self.sockets.current(conn.room_id, conn.role.other)
        if target is not None:
            await target.send_text(text)
            delivered = True
        else:
            delivered = await self.registry.relay(conn.room_id, conn.role.other, text)
        if delivered:
            self._metrics.relayed.inc()
        return delivered

    async def _party_event(self, conn: Connection, change: Change, *, leaving: bool) -> None:
        if leaving:
            self.sockets.remove(conn)
        await self._run(conn.room_id, None, change)

    async def media(self, conn: Connection, report: messages.Media) -> None:
        now = self._clock()
        await self._party_event(conn, lambda room: room.media(
                                    conn.role, report.state, now, video=report.video,
                                    cause=report.cause)
                                if room.connection(conn.role) == conn.id else [],
                                leaving=False)

    async def bye(self, conn: Connection) -> None:
        now = self._clock()
        await self._party_event(conn, lambda room: room.bye(conn.role, conn.id, now),
                                leaving=True)

    async def drop(self, conn: Connection) -> None:
        now = self._clock()
        await self._party_event(conn, lambda room: room.drop(conn.role, conn.id, now),
                                leaving=True)

    async def kick(self, room_id: str, code: CloseCode, error_code: str, message: str) -> None:
        now = self._clock()
        await self._run(room_id, None, lambda room: room.kick(code, error_code, message, now))

    # -- upkeep -----------------------------------------------------------------------

    async def sweep(self) -> None:
        """Keep this node alive in the registry, clean up after dead nodes, and end grace
        periods that have run out.

        When the registry comes back after an outage it may have lost the rooms (a Redis
        restarted empty) or missed the drops and leaves of the meantime: every socket of
        this node is then closed with 1001, so each party resumes and the rooms are built
        again from who is really there. Media between the peers does not stop.
        """
        try:
            await self.registry.heartbeat()
            if self._registry_down:
                await self.registry.recover()
        except RoomsUnavailable:
            if not self._registry_down:
                logger.warning("the room store is unreachable; open calls go on")
            self._registry_down = True
            return
        if self._registry_down:
            self._registry_down = False
            logger.warning("the room store is back: asking every party here to resume")
            await self.shutdown()
        orphans = await self.registry.orphans()
        for orphan in orphans:
            await self._run(orphan.room_id, None, _dropping(orphan.node, orphan.since))
            logger.info("room %s: connections of a dead node dropped", orphan.room_id)
        for node in {orphan.node for orphan in orphans}:
            await self.registry.forget(node)
        now = self._clock()
        for room_id in await self.registry.due(now):
            await self._run(room_id, None, lambda room: room.expire(now))

    async def shutdown(self) -> None:
        """Close every socket with 1001; clients reconnect and resume elsewhere."""
        for conn in self.sockets.connections():
            await conn.close(CloseCode.GOING_AWAY, "server_shutdown")


def _dropping(node: str, since: datetime) -> Change:
    """The change that drops every connection ``node`` held, as of ``since``."""
    return lambda room: room.drop_node(node, since)
