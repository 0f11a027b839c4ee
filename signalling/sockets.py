"""This node's sockets: the connections it holds, and delivery of what rooms send them.

The room registry (``registry.py``) says who is in a room and where; this module owns
the sockets of the connections that live on this node and nothing else.

Invariants:
- a connection receives nothing before its ``welcome``: deliveries wait for ``ready``,
  so a message relayed from another node the moment a join commits never overtakes it;
- per room and role at most one local connection is the current one (the newest); an
  older one of the same party is on its way out (its 4409 close is being delivered);
- a connection closed by the server is marked so, and its handler does not report a
  drop for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from signalling import messages
from signalling.gate import RoomBooking
from signalling.room import ConnectionId, Role

logger = logging.getLogger(__name__)

# Longer than any join takes between its commit and its welcome; a connection that never
# got ready by then is being torn down, and what was meant for it is dropped.
READY_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """Something a room sends one connection: a text frame, or a refusal and a close."""

    connection: ConnectionId
    text: str | None = None
    close_code: int | None = None
    error_code: str = ""
    message: str = ""

    def encode(self) -> str:
        """One line for another node: ``s|<connection>|<text>`` or ``c|<connection>|<json>``."""
        if self.text is not None:
            return f"s|{self.connection}|{self.text}"
        return f"c|{self.connection}|" + messages.encode(
            {"code": self.close_code, "error": self.error_code, "message": self.message})

    @classmethod
    def decode(cls, line: str) -> Delivery:
        kind, connection, rest = line.split("|", 2)
        if kind == "s":
            return cls(connection, text=rest)
        data = json.loads(rest)  # written by a node of this deployment, not a client
        return cls(connection, close_code=int(data["code"]), error_code=str(data["error"]),
                   message=str(data["message"]))


@dataclass(eq=False, slots=True)
class Connection:
    id: ConnectionId
    ws: web.WebSocketResponse
    room_id: str
    role: Role
    booking: RoomBooking
    session_id: str
    closed_by_server: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: asyncio.Task[bool] | None = None

    async def send_now(self, message: dict[str, Any]) -> None:
        """Send without waiting for ``ready`` (the ``welcome`` itself, a refusal)."""
        await self._send(messages.encode(message))

    async def send_text(self, text: str) -> None:
        if self.ready.is_set():  # every message after the welcome: no timer to arm
            await self._send(text)
            return
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.ready.wait()
        except TimeoutError:
            logger.debug("dropped a message for a connection never welcomed (room %s)",
                         self.room_id)
            return
        await self._send(text)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(messages.encode(message))

    async def _send(self, text: str) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            logger.debug("send to a closing socket dropped (room %s)", self.room_id)

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake and return: the caller (a room's change, a cancel
        request) must not wait for a client to answer it. ``closed`` waits for it."""
        self.closed_by_server = True
        if self._closing is None and not self.ws.closed:
            self._closing = asyncio.create_task(
                self.ws.close(code=code, message=reason.encode()[:120]))
            self._closing.add_done_callback(_quietly)
            await asyncio.sleep(0)  # let the close frame go out now

    async def closed(self, timeout: float) -> None:
        """Wait (bounded) for a closing handshake this side started."""
        if self._closing is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._closing)


class LocalSockets:
    """The connections of this node, by id and by room and role."""

    def __init__(self) -> None:
        self._by_id: dict[ConnectionId, Connection] = {}
        self._by_room: dict[str, dict[Role, Connection]] = {}
        # The booking each room opened with, as this node first saw it.
        self._bookings: dict[str, RoomBooking] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, conn: Connection, booking: RoomBooking) -> None:
        self._by_id[conn.id] = conn
        self._by_room.setdefault(conn.room_id, {})[conn.role] = conn
        self._bookings.setdefault(conn.room_id, booking)

    def remove(self, conn: Connection) -> None:
        self._by_id.pop(conn.id, None)
        in_room = self._by_room.get(conn.room_id)
        if in_room is not None and in_room.get(conn.role) is conn:
            del in_room[conn.role]
        if in_room is not None and not in_room:
            del self._by_room[conn.room_id]
            self._bookings.pop(conn.room_id, None)

    def get(self, connection: ConnectionId) -> Connection | None:
        return self._by_id.get(connection)

    def current(self, room_id: str, role: Role) -> Connection | None:
        """This node's newest connection of ``role`` in ``room_id``, if it holds one."""
        return self._by_room.get(room_id, {}).get(role)

    def rooms(self) -> list[tuple[str, RoomBooking]]:
        """The rooms this node holds a connection of, with the booking each opened with."""
        return [(room_id, self._bookings[room_id]) for room_id in self._by_room]

    def connections(self) -> list[Connection]:
        return list(self._by_id.values())

    async def deliver(self, delivery: Delivery) -> None:
        conn = self._by_id.get(delivery.connection)
        if conn is None:
            return  # gone already: closed, replaced or never here
        if delivery.text is not None:
            await conn.send_text(delivery.text)
            return
        self.remove(conn)
        await conn.send_now(messages.error(delivery.error_code, delivery.message))
        await conn.close(delivery.close_code or 1000, delivery.error_code)


def _quietly(task: asyncio.Task[bool]) -> None:
    """A close that failed (the client vanished) is nothing to report."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("closing a socket failed (%s)", type(task.exception()).__name__)
