"""Rooms shared by two signalling nodes through Redis (the real server on 127.0.0.1:6379).

Two signalling apps, each on its own real aiohttp server, share rooms in Redis under a
prefix of the test's own; the gate is one app of its own, linked in process. The two
parties of one room join different nodes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from booking_gate.app import make_app as make_gate
from booking_gate.appkeys import SERVICE
from booking_gate.config import GateConfig
from carecall.wiring import InProcessGate
from signalling.appkeys import REPORTER
from signalling.config import SignallingConfig
from signalling.hub import event_id
from signalling.registry_redis import RedisRegistry
from signalling.room import Attend, Close, Role, Room, node_of
from tests.conftest import API_KEY, AUTH, REDIS_URL, GateClient, book_now

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

WS = aiohttp.ClientWebSocketResponse
LIMIT = 10.0




class Nodes:
    """The gate and two signalling nodes; ``client`` talks to the gate's API."""

    def __init__(self, gate: GateClient, nodes: list[TestClient[Any, Any]]) -> None:
        self.gate = gate
        self.nodes = nodes

    async def connect(self, node: int, token: str) -> tuple[WS, dict[str, Any]]:
        ws = await self.nodes[node].ws_connect("/ws")
        await ws.send_json({"type": "hello", "token": token, "agent": "browser",
                            "can_rollback": True})
        welcome = await receive(ws)
        assert welcome["type"] == "welcome", welcome
        return ws, welcome

    def app(self, node: int) -> web.Application:
        return self.nodes[node].server.app


class PollingGate(InProcessGate):
    """The gate as a scale-out node sees it: no word when a booking is locked, so the
    node learns of it by revalidating its open rooms."""

    def on_room_locked(self, listener: Any) -> None:
        """Nodes apart from the gate are not told."""


@pytest.fixture(params=["told", "polling"])
def gate_link(request: pytest.FixtureRequest) -> type[InProcessGate]:
    return InProcessGate if request.param == "told" else PollingGate


@pytest.fixture
async def nodes(tmp_path: Path, redis_prefix: str, gate_link: type[InProcessGate],
                aiohttp_client: Callable[..., Any]) -> AsyncIterator[Nodes]:
    gate_app = make_gate(GateConfig(db_url=f"sqlite:///{tmp_path / 'gate.db'}",
                                    public_url="http://127.0.0.1", api_key=API_KEY,
                                    var_dir=tmp_path / "gate"))
    gate: GateClient = await aiohttp_client(TestServer(gate_app, host="127.0.0.1"))
    clients = []
    secret = secrets.token_bytes(32)
    for name in ("a", "b"):
        from signalling.app import setup_signalling

        app = web.Application()
        config = SignallingConfig(public_url="http://127.0.0.1", var_dir=tmp_path / name,
                                  redis_url=REDIS_URL, redis_prefix=redis_prefix,
                                  resume_secret=secret, revalidate_interval=0.5,
                                  sweep_interval=0.2, node_ttl=timedelta(seconds=1))
        setup_signalling(app, config, gate_link(gate_app))
        clients.append(await aiohttp_client(TestServer(app, host="127.0.0.1")))
    yield Nodes(gate, clients)


async def receive(ws: WS, timeout: float = LIMIT) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type!r}"
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def receive_type(ws: WS, kind: str, timeout: float = LIMIT) -> dict[str, Any]:
    """The next message of type ``kind``, skipping others (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await receive(ws, max(deadline - time.monotonic(), 0.01))
        if message.get("type") == kind:
            return message


async def closed(ws: WS, timeout: float = LIMIT) -> list[dict[str, Any]]:
    async def drain() -> list[dict[str, Any]]:
        return [json.loads(m.data) async for m in ws if m.type is aiohttp.WSMsgType.TEXT]

    received = await asyncio.wait_for(drain(), timeout)
    assert ws.closed
    return received


async def test_parties_on_two_nodes_meet_and_relay_both_ways(nodes: Nodes) -> None:
    """Professional on node A, client on node B: presence, signal and x- messages relay
    across nodes with `from` added, and a bye reaches the other node as peer-left."""
    room = await book_now(nodes.gate)
    pro, pro_welcome = await nodes.connect(0, room["professional"])
    assert pro_welcome["peer_present"] is False
    client, client_welcome = await nodes.connect(1, room["client"])
    assert client_welcome["peer_present"] is True
    joined = await receive_type(pro, "peer-joined")
    assert joined["role"] == "client"
    offer = {"type": "signal", "description": {"type": "offer", "sdp": "v=0\r\n"}}
    await pro.send_json(offer)
    assert await receive_type(client, "signal") == {**offer, "from": "professional"}
    await client.send_json({"type": "x-verify-commit", "commit": "ab" * 32})
    relayed = await receive_type(pro, "x-verify-commit")
    assert relayed == {"type": "x-verify-commit", "commit": "ab" * 32, "from": "client"}
    await client.send_json({"type": "bye"})
    left = await receive_type(pro, "peer-left")
    assert (left["role"], left["reason"]) == ("client", "bye")
    await pro.send_json(offer)
    assert (await receive_type(pro, "error"))["code"] == "peer_absent"
    await pro.close()


async def test_a_second_connection_on_the_other_node_replaces_the_first(nodes: Nodes) -> None:
    """The professional connects again on node B: node A's socket gets `replaced` and
    4409, and the client (on B) keeps talking to the new connection."""
    room = await book_now(nodes.gate)
    first, _ = await nodes.connect(0, room["professional"])
    client, _ = await nodes.connect(1, room["client"])
    second, _ = await nodes.connect(1, room["professional"])
    received = await closed(first)
    assert [m.get("code") for m in received if m["type"] == "error"] == ["replaced"]
    assert first.close_code == 4409
    await client.send_json({"type": "x-ping"})
    assert (await receive_type(second, "x-ping"))["from"] == "client"
    for ws in (client, second):
        await ws.close()


async def test_a_cancel_mid_call_closes_both_nodes_parties_with_4403(nodes: Nodes) -> None:
    """Cancelling the booking closes the sockets on both nodes with 4403 within 5 s."""
    room = await book_now(nodes.gate)
    pro, _ = await nodes.connect(0, room["professional"])
    client, _ = await nodes.connect(1, room["client"])
    await receive_type(pro, "peer-joined")
    # Read while cancelling, as a browser does: the close handshake needs a reader.
    readers = [asyncio.create_task(closed(ws)) for ws in (pro, client)]
    started = time.monotonic()
    response = await nodes.gate.post(f"/api/v1/bookings/{room['booking']['booking_id']}/cancel",
                                     headers=AUTH, json={"by": "client"})
    assert response.status == 200
    results = await asyncio.gather(*readers)
    elapsed = time.monotonic() - started
    for ws, received in zip((pro, client), results, strict=True):
        assert ws.close_code == 4403, (received, ws.close_code)
        assert "booking_cancelled" in [m.get("code") for m in received]
    assert elapsed < 5.0, elapsed


async def leave_and_report(nodes: Nodes, room: dict[str, Any], *parties: WS) -> str:
    """Both parties say bye; both nodes deliver their attendance: the booking's id."""
    for ws in parties:
        await ws.send_json({"type": "bye"})
        await ws.close()
    for node in (0, 1):
        await nodes.app(node)[REPORTER].drain()
    booking_id: str = room["booking"]["booking_id"]
    return booking_id


async def test_attendance_from_two_nodes_makes_one_interval_per_party(nodes: Nodes) -> None:
    """Each node reports its party's join; a drop and a return on the other node within
    the grace keeps one interval (no left/joined pair)."""
    room = await book_now(nodes.gate)
    pro, _ = await nodes.connect(0, room["professional"])
    client, _ = await nodes.connect(1, room["client"])
    await client.close()  # a drop: no bye
    await receive_type(pro, "peer-left")
    client, _ = await nodes.connect(0, room["client"])
    await receive_type(pro, "peer-joined")
    booking_id = await leave_and_report(nodes, room, pro, client)
    record = await (await nodes.gate.get(f"/api/v1/bookings/{booking_id}/attendance",
                                         headers=AUTH)).json()
    for role in ("professional", "client"):
        intervals = record["parties"][role]["intervals"]
        assert len(intervals) == 1 and intervals[0]["to"] is not None, (role, intervals)


async def test_media_state_is_shared_by_the_nodes_through_redis(nodes: Nodes) -> None:
    """The client reports audio-only on one node, drops, and returns on the other: the
    same report there says nothing new (the video flag lives in Redis), a change of
    video and a failure's cause are facts, and the failure reported twice is one."""
    room = await book_now(nodes.gate)
    pro, _ = await nodes.connect(0, room["professional"])
    client, _ = await nodes.connect(1, room["client"])

    async def report(ws: WS, *reports: dict[str, Any]) -> None:
        for message in reports:
            await ws.send_json({"type": "media", **message})
        await ws.send_json({"type": "x-sync"})
        await receive_type(pro, "x-sync")

    await report(client, {"state": "connected", "video": False})
    await client.close()  # a drop: no bye
    await receive_type(pro, "peer-left")
    client, _ = await nodes.connect(0, room["client"])
    await receive_type(pro, "peer-joined")
    await report(client, {"state": "connected", "video": False},
                 {"state": "connected", "video": True},
                 {"state": "failed", "cause": "dtls_failed"},
                 {"state": "failed", "cause": "dtls_failed"})
    booking_id = await leave_and_report(nodes, room, pro, client)
    events = (await nodes.gate.app[SERVICE].store.events_for([booking_id]))[booking_id]
    assert [(e.kind.value, e.reason) for e in events if e.role.value == "client"
            and e.kind.value.startswith("media")] == [
        ("media_connected", "audio_only"), ("media_connected", "video"),
        ("media_failed", "dtls_failed")]


async def test_a_dead_nodes_connections_are_dropped_by_one_survivor(redis_prefix: str) -> None:
    """A node that stops its heartbeat is dead after its TTL: of two survivors exactly one
    claims it, its connections become away as of its last heartbeat, and it is forgotten."""
    grace, ttl = timedelta(seconds=30), timedelta(seconds=1)
    dead, first, second = [await RedisRegistry.connect(
        REDIS_URL, grace=grace, prefix=redis_prefix, node_id=name, node_ttl=ttl)
        for name in ("dead", "first", "second")]
    booking = _booking()
    try:
        for registry in (dead, first, second):
            await registry.heartbeat()
        now = datetime.now(UTC)
        await dead.update("r1", booking, lambda room: room.join(
            Role.PROFESSIONAL, "dead:1", "s1", True, False, now))
        await first.update("r1", booking, lambda room: room.join(
            Role.CLIENT, "first:1", "s2", True, False, now))
        await asyncio.sleep(1.5)
        for registry in (first, second):
            await registry.heartbeat()
        claims = await asyncio.gather(first.orphans(), second.orphans())
        assert sorted(len(found) for found in claims) == [0, 1]
        (orphan,) = claims[0] or claims[1]
        assert (orphan.room_id, orphan.node) == ("r1", "dead")
        keeper = first if claims[0] else second
        applied = await keeper.update("r1", None, lambda room: room.drop_node(
            orphan.node, orphan.since))
        assert applied is not None
        assert applied.room.state(Role.PROFESSIONAL).value == "away"
        assert applied.room.parties[Role.PROFESSIONAL].away_since == orphan.since
        assert applied.room.nodes() == {"first"}
        await keeper.forget("dead")
        assert await first.orphans() == [] and await second.orphans() == []
    finally:
        for registry in (dead, first, second):
            await registry.close()


async def test_racing_joins_from_two_nodes_leave_one_connection(redis_prefix: str) -> None:
    """Twenty joins of one role from two registries at once: each applies to the state the
    one before committed, so exactly one connection is left and 19 were replaced."""
    grace = timedelta(seconds=30)
    one, two = [await RedisRegistry.connect(REDIS_URL, grace=grace, prefix=redis_prefix,
                                            node_id=name) for name in ("one", "two")]
    booking, now = _booking(), datetime.now(UTC)
    try:
        results = await asyncio.gather(*(
            registry.update("r2", booking, lambda room, c=f"{registry.node_id}:{i}":
                            room.join(Role.CLIENT, c, c, True, False, now))
            for i in range(10) for registry in (one, two)))
        replaced = [e for applied in results if applied
                    for e in applied.effects if isinstance(e, Close)]
        joined = [e for applied in results if applied
                  for e in applied.effects if isinstance(e, Attend)]
        assert len(replaced) == 19 and len(joined) == 1
        last = await one.update("r2", None, lambda room: [])
        assert last is not None
        current = last.room.connection(Role.CLIENT)
        assert current is not None and current not in {e.connection for e in replaced}
        assert node_of(current) in ("one", "two")
    finally:
        for registry in (one, two):
            await registry.close()


def test_event_ids_are_the_same_for_the_same_fact() -> None:
    """Two nodes reporting one fact give it one id; another fact gets another."""
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    fact = Attend(Role.CLIENT, "left", at, "timeout")
    assert event_id("room", fact) == event_id("room", Attend(Role.CLIENT, "left", at,
                                                             "timeout"))
    assert event_id("room", fact) != event_id("room", Attend(Role.CLIENT, "left",
                                                             at + timedelta(seconds=1),
                                                             "timeout"))
    assert event_id("room", fact) != event_id("other", fact)


def test_room_state_survives_the_trip_through_json() -> None:
    """A room written as state and read back is the same room."""
    room = Room("r", timedelta(seconds=30))
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    room.join(Role.PROFESSIONAL, "a:1", "s1", False, False, at)
    room.join(Role.CLIENT, "b:2", "s2", True, False, at)
    room.drop(Role.CLIENT, "b:2", at + timedelta(seconds=5))
    again = Room.from_state(json.loads(json.dumps(room.to_state())))
    assert again == room


def _booking() -> Any:
    from signalling.gate import RoomBooking

    now = datetime.now(UTC)
    return RoomBooking(room_id="r", booking_id="b", professional_id="p", client_id="c",
                       starts_at=now, ends_at=now + timedelta(hours=1), cancelled=False,
                       changed_at=now, opens_at=now - timedelta(minutes=15),
                       closes_at=now + timedelta(hours=2))





DOWN_SECONDS = 12


class PrivateRedis:
    """A redis-server of the test's own on a free port, which the test may stop."""

    def __init__(self, root: Path) -> None:
        import subprocess

        from aiohttp.test_utils import unused_port

        self.port = unused_port()
        self.root = root
        self._subprocess = subprocess
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = self._subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=self._subprocess.DEVNULL, stderr=self._subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    await client.ping()
                    return
                except redis.ConnectionError:
                    await asyncio.sleep(0.05)
            raise AssertionError("redis-server did not start")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def test_while_redis_is_away_calls_go_on_and_after_it_every_party_resumes(
        tmp_path: Path, aiohttp_client: Callable[..., Any]) -> None:
    """Redis stops: a relay across nodes is answered `rooms_unavailable` and the sockets
    stay open, a new join is closed with 1013 promptly. Redis comes back empty: the nodes
    close their sockets with 1001, and parties that join again find each other."""
    from signalling.app import setup_signalling

    store = PrivateRedis(tmp_path)
    await store.start()
    try:
        gate_app = make_gate(GateConfig(db_url=f"sqlite:///{tmp_path / 'gate.db'}",
                                        public_url="http://127.0.0.1", api_key=API_KEY,
                                        var_dir=tmp_path / "gate"))
        gate: GateClient = await aiohttp_client(TestServer(gate_app, host="127.0.0.1"))
        clients = []
        secret = secrets.token_bytes(32)
        for name in ("a", "b"):
            app = web.Application()
            setup_signalling(app, SignallingConfig(
                public_url="http://127.0.0.1", var_dir=tmp_path / name, redis_url=store.url,
                resume_secret=secret, sweep_interval=0.2), InProcessGate(gate_app))
            clients.append(await aiohttp_client(TestServer(app, host="127.0.0.1")))
        node = Nodes(gate, clients)
        room = await book_now(gate)
        pro, _ = await node.connect(0, room["professional"])
        client, _ = await node.connect(1, room["client"])
        await receive_type(pro, "peer-joined")
        store.stop()
        await pro.send_json({"type": "x-ping"})  # across nodes: through the store
        reply = await receive_type(pro, "error")
        assert reply["code"] == "rooms_unavailable", reply
        await asyncio.sleep(0.5)
        assert not pro.closed and not client.closed
        await asyncio.sleep(DOWN_SECONDS)  # longer than a node's presence lasts
        started = time.monotonic()
        late = await node.nodes[0].ws_connect("/ws")
        await late.send_json({"type": "hello", "token": room["client"], "agent": "browser"})
        received = await closed(late, 20)
        assert late.close_code == 1013 and received[-1]["code"] == "rooms_unavailable"
        assert time.monotonic() - started < 15
        readers = [asyncio.create_task(closed(ws, 15)) for ws in (pro, client)]
        await store.start()  # back, and empty
        await asyncio.gather(*readers)
        assert (pro.close_code, client.close_code) == (1001, 1001)
        pro, _ = await node.connect(0, room["professional"])
        client, welcome = await node.connect(1, room["client"])
        assert welcome["peer_present"] is True
        await pro.send_json({"type": "x-ping"})
        assert (await receive_type(client, "x-ping"))["from"] == "professional"
        for ws in (pro, client):
            await ws.close()
    finally:
        store.stop()
