"""Rooms in Redis, shared by any number of signalling nodes (``carecall signalling``).

Keys (all under the deployment's ``prefix``):

    room:<id>          hash: "s" the room's state and its booking (JSON); "c:<role>" the
                       connection id of each party present (read by the relay script)
    deadlines          sorted set: room id -> when its earliest grace period ends
    nodes              sorted set: node id -> its last heartbeat (Redis server time)
    node:<id>:rooms    set: the rooms in which that node holds a connection
    reap:<id>          which live node is cleaning up after a dead one (expires)
    channel node:<id>  what other nodes send that node's connections (``Delivery`` lines)

Invariants:
- a room's state changes only by optimistic transactions (WATCH the room key, apply
  the pure change, MULTI/EXEC; retried on conflict), so changes of one room, from any
  node, apply one after the other; ``node:<id>:rooms`` and ``deadlines`` change in the
  same transaction as the room, so they never disagree with it;
- a connection id names its node, and what a room sends a connection goes to that
  node's channel, published in the order of the room's change (pub/sub keeps the order
  of one publisher);
- time for liveness is Redis's own clock (``TIME``), so nodes' clocks may differ;
- a node that misses heartbeats for ``node_ttl`` is dead: one live node (the holder of
  ``reap:<id>``) drops its connections, as of its last heartbeat; the grace period then
  runs as for any drop, so a party that resumed elsewhere in time keeps one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, WatchError

from signalling.errors import RoomsUnavailable
from signalling.gate import RoomBooking
from signalling.registry import Applied, Change, Deliver, Orphan
from signalling.room import Role, Room, node_of
from signalling.sockets import Delivery

logger = logging.getLogger(__name__)

NODE_TTL = timedelta(seconds=10)
MAX_CONNECTIONS = 100
POOL_WAIT = 5.0  # seconds a command waits for a free pooled connection
# A room key outlives its booking's window by this much, then Redis forgets it.
ROOM_TTL_AFTER_CLOSE = timedelta(hours=1)
MAX_RETRIES = 100

# KEYS[1] the room; ARGV[1] the role field, ARGV[2] the channel prefix, ARGV[3] the text.
RELAY = """
local target = redis.call('HGET', KEYS[1], ARGV[1])
if not target then return 0 end
local node = string.match(target, '^([^:]+):')
redis.call('PUBLISH', ARGV[2] .. node, 's|' .. target .. '|' .. ARGV[3])
return 1
"""

# KEYS[1] the nodes set; ARGV[1] this node.
HEARTBEAT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], now[1] + now[2] / 1000000, ARGV[1])
return 1
"""

# KEYS[1] the nodes set; ARGV[1] seconds without a heartbeat that make a node dead.
DEAD = """
local now = redis.call('TIME')
local limit = now[1] + now[2] / 1000000 - tonumber(ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.6f', limit),
                  'WITHSCORES')
"""


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _available(method: F) -> F:
    """Redis errors (and timeouts) of ``method`` become ``RoomsUnavailable``."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError, TimeoutError) as error:
            raise RoomsUnavailable(f"the room store did not answer ({type(error).__name__})"
                                   ) from None

    return wrapper  # type: ignore[return-value]


def _booking_to_json(booking: RoomBooking) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(booking).items()}


def _booking_from_json(data: dict[str, Any]) -> RoomBooking:
    def time(key: str) -> datetime:
        return datetime.fromisoformat(data[key])

    return RoomBooking(
        room_id=data["room_id"], booking_id=data["booking_id"],
        professional_id=data["professional_id"], client_id=data["client_id"],
        starts_at=time("starts_at"), ends_at=time("ends_at"), cancelled=data["cancelled"],
        changed_at=time("changed_at"), opens_at=time("opens_at"), closes_at=time("closes_at"),
        client_relay_only=bool(data.get("client_relay_only", False)))  # absent: older node


class RedisRegistry:
    def __init__(self, client: redis.Redis, *, grace: timedelta, prefix: str = "carecall:",
                 node_id: str | None = None, node_ttl: timedelta = NODE_TTL) -> None:
        self.node_id = node_id or secrets.token_hex(4)
        self._node_ttl = node_ttl
        self._redis = client
        self._grace = grace
        self._prefix = prefix
        self._relay = client.register_script(RELAY)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._dead = client.register_script(DEAD)
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._resubscribe = asyncio.Event()
        self._subscribed = asyncio.Event()

    @classmethod
    async def connect(cls, url: str, *, grace: timedelta, prefix: str = "carecall:",
                      node_id: str | None = None, node_ttl: timedelta = NODE_TTL
                      ) -> RedisRegistry:
        """A registry on the Redis at ``url``; raises ``RedisError`` if it cannot be used."""
        # A pool that waits for a free connection (the default one refuses past its size),
        # bounded waits everywhere, and few retries: a join must fail fast (1013) while
        # Redis is away, not hang.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT, socket_timeout=2,
            socket_connect_timeout=2, health_check_interval=15,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2))
        client = redis.Redis.from_pool(pool)  # owns the pool: aclose() closes it
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return cls(client, grace=grace, prefix=prefix, node_id=node_id, node_ttl=node_ttl)

    # -- keys ----------------------------------------------------------------------

    def _room_key(self, room_id: str) -> str:
        return f"{self._prefix}room:{room_id}"

    def _node_rooms(self, node: str) -> str:
        return f"{self._prefix}node:{node}:rooms"

    def _channel(self, node: str) -> str:
        return f"{self._prefix}node:{node}"

    @property
    def _nodes(self) -> str:
        return f"{self._prefix}nodes"

    @property
    def _deadlines(self) -> str:
        return f"{self._prefix}deadlines"

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        await self._subscribe()
        await self.heartbeat()
        self._listener = asyncio.create_task(self._listen(deliver))

    async def _subscribe(self) -> None:
        """A fresh subscription to this node's channel (the old one, if any, dropped).
        Only ``start`` (before the listener runs) and the listener itself call it: a
        subscription is one connection, which two readers at once would tangle."""
        old, self._pubsub = self._pubsub, None
        if old is not None:
            with contextlib.suppress(RedisError, OSError):
                await old.aclose()
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel(self.node_id))
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        self._pubsub = pubsub
        self._resubscribe.clear()
        self._subscribed.set()

    async def recover(self) -> None:
        """After an outage: have the listener subscribe afresh, and wait until it has, so
        nothing another node sends the parties who come back is published unheard."""
        self._subscribed.clear()
        self._resubscribe.set()
        try:
            async with asyncio.timeout(5.0):
                await self._subscribed.wait()
        except TimeoutError:
            raise RoomsUnavailable("could not subscribe again after an outage") from None

    async def _listen(self, deliver: Deliver) -> None:
        """Deliver, one after the other, what other nodes send this node's connections."""
        failing = False
        while not self._closing:
            try:
                if self._pubsub is None or self._resubscribe.is_set():
                    await self._subscribe()
                assert self._pubsub is not None
                message = await self._pubsub.get_message(timeout=0.5)
            except (RedisError, OSError) as error:
                if not failing:
                    logger.warning("the Redis subscription failed (%s); resubscribing",
                                   type(error).__name__)
                failing = True
                self._subscribed.clear()
                old, self._pubsub = self._pubsub, None
                if old is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await old.aclose()
                await asyncio.sleep(0.5)
                continue
            if failing:
                failing = False
                logger.warning("the Redis subscription is back")
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            try:
                delivery = Delivery.decode(data.decode() if isinstance(data, bytes) else data)
            except (ValueError, KeyError):
                logger.error("a malformed delivery arrived on this node's channel")
                continue
            try:
                await deliver(delivery)
            except Exception:
                logger.exception("delivering to a local connection failed")

    async def close(self) -> None:
        # Stopped by a flag it checks every half second: redis-py may swallow a
        # cancellation that lands inside a read.
        self._closing = True
        if self._listener is not None:
            done, _ = await asyncio.wait({self._listener}, timeout=5.0)
            if not done:
                self._listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({self._listener}, timeout=5.0)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        with contextlib.suppress(RedisError, OSError):
            # Leaving on purpose: nobody needs to reap this node. Its rooms were left by
            # the connections' own drops (their sockets got 1001 before this runs).
            if not await self._redis.scard(self._node_rooms(self.node_id)):
                await self._redis.zrem(self._nodes, self.node_id)
        await self._redis.aclose()

    # -- rooms -------------------------------------------------------------------------

    @_available
    async def update(self, room_id: str, booking: RoomBooking | None, change: Change
                     ) -> Applied | None:
        key = self._room_key(room_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_RETRIES):
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, "s")
                    if raw is None:
                        if booking is None:
                            return None  # the pipeline's exit unwatches
                        room, opened_with = Room(room_id, self._grace), booking
                    else:
                        data = json.loads(raw)
                        room = Room.from_state(data["room"])
                        opened_with = _booking_from_json(data["booking"])
                    before = room.nodes()
                    effects = change(room)
                    after = room.nodes()
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self._store(pipe, key, room, opened_with)
                    for node in before - after:
                        pipe.srem(self._node_rooms(node), room_id)
                    for node in after - before:
                        pipe.sadd(self._node_rooms(node), room_id)
                    await pipe.execute()
                except WatchError:
                    continue
                return Applied(effects, room, opened_with)
        raise RuntimeError(f"room {room_id}: too many conflicting changes")

    def _store(self, pipe: Any, key: str, room: Room, booking: RoomBooking) -> None:
        room_id = room.room_id
        if room.is_empty():
            pipe.delete(key)
            pipe.zrem(self._deadlines, room_id)
            return
        state = json.dumps({"room": room.to_state(), "booking": _booking_to_json(booking)})
        pipe.hset(key, "s", state)
        for role in Role:
            connection = room.connection(role)
            if connection is None:
                pipe.hdel(key, f"c:{role.value}")
            else:
                pipe.hset(key, f"c:{role.value}", connection)
        pipe.expireat(key, booking.closes_at + ROOM_TTL_AFTER_CLOSE)
        deadline = room.next_deadline()
        if deadline is None:
            pipe.zrem(self._deadlines, room_id)
        else:
            pipe.zadd(self._deadlines, {room_id: deadline.timestamp()})

    @_available
    async def relay(self, room_id: str, role: Role, text: str) -> bool:
        sent = await self._relay(keys=[self._room_key(room_id)],
                                 args=[f"c:{role.value}", f"{self._prefix}node:", text])
        return bool(sent)

    @_available
    async def publish(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            await self._redis.publish(self._channel(node_of(delivery.connection)),
                                      delivery.encode())

    @_available
    async def due(self, now: datetime) -> list[str]:
        found = await self._redis.zrangebyscore(self._deadlines, "-inf", now.timestamp(),
                                                start=0, num=500)
        return [item.decode() if isinstance(item, bytes) else str(item) for item in found]

    # -- nodes ---------------------------------------------------------------------------

    @_available
    async def heartbeat(self) -> None:
        await self._heartbeat(keys=[self._nodes], args=[self.node_id])

    @_available
    async def orphans(self) -> list[Orphan]:
        found: list[Orphan] = []
        dead = await self._dead(keys=[self._nodes], args=[self._node_ttl.total_seconds()])
        for raw_node, score in zip(dead[::2], dead[1::2], strict=True):
            node = raw_node.decode() if isinstance(raw_node, bytes) else raw_node
            if node == self.node_id:
                continue
            claimed = await self._redis.set(f"{self._prefix}reap:{node}", self.node_id,
                                            nx=True,
                                            ex=max(int(self._node_ttl.total_seconds()) * 3, 3))
            if not claimed:
                continue  # another live node is on it
            since = datetime.fromtimestamp(float(score), UTC)
            rooms = await self._redis.smembers(self._node_rooms(node))
            if not rooms:
                await self.forget(node)
                continue
            logger.warning("signalling node %s stopped answering; dropping its connections",
                           node)
            for room in rooms:
                room_id = room.decode() if isinstance(room, bytes) else room
                found.append(Orphan(room_id, node, since))
        return found

    @_available
    async def forget(self, node: str) -> None:
        if not await self._redis.scard(self._node_rooms(node)):
            await self._redis.zrem(self._nodes, node)
            await self._redis.delete(self._node_rooms(node), f"{self._prefix}reap:{node}")
