""""Hide my IP": the client's ``hide_ip`` and the hub's ``clients_hide_ip`` in the gate's
REST API, in its answer to signalling (``client_relay_only``), and in the client's
``welcome`` (``ice_transport_policy``) on the in-process path and over HTTP with rooms in
Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestServer

from booking_gate.app import make_app as make_gate
from booking_gate.config import GateConfig
from carecall.wiring import InProcessGate
from signalling.app import make_app as make_signalling
from signalling.config import SignallingConfig
from signalling.gate import RoomBooking
from signalling.gate_http import HttpGate, parse_room
from signalling.handler import transport_policy
from signalling.room import Role
from tests.conftest import (
    API_KEY,
    AUTH,
    REDIS_URL,
    FakeClock,
    GateClient,
    book_now,
    booking_body,
    seed_people,
)

LIMIT = 10.0
CLIENT = {"name": "Cli Ent", "email": "client@example.org", "timezone": "Europe/Oslo",
          "hub_id": "acme"}


async def put_client(gate: GateClient, **fields: Any) -> aiohttp.ClientResponse:
    return await gate.put("/api/v1/clients/cli-1", headers=AUTH, json={**CLIENT, **fields})


async def put_hub(gate: GateClient, body: Any, hub: str = "acme") -> aiohttp.ClientResponse:
    return await gate.put(f"/api/v1/hubs/{hub}", headers=AUTH, json=body)


async def relay_only(gate: GateClient, room_id: str) -> bool:
    response = await gate.get(f"/api/v1/signalling/rooms/{room_id}", headers=AUTH)
    assert response.status == 200, await response.text()
    value: bool = (await response.json())["client_relay_only"]
    return value


async def book(gate: GateClient, clock: FakeClock, booking_id: str = "b-1") -> str:
    response = await gate.put(f"/api/v1/bookings/{booking_id}", headers=AUTH,
                              json=booking_body(clock.now + timedelta(hours=1)))
    assert response.status == 201, await response.text()
    room_id: str = (await response.json())["room_id"]
    return room_id


# -- REST ------------------------------------------------------------------------------


async def test_a_client_stores_hide_ip_and_defaults_to_false(gate: GateClient) -> None:
    """PUT /clients takes hide_ip, answers it, and a PUT without it sets it back to false."""
    response = await put_client(gate, hide_ip=True)
    assert response.status == 200, await response.text()
    assert (await response.json())["hide_ip"] is True
    response = await put_client(gate)
    assert (await response.json())["hide_ip"] is False


@pytest.mark.parametrize("value", ["true", 1, 0, [], {}])
async def test_hide_ip_must_be_a_boolean(gate: GateClient, clock: FakeClock,
                                         value: Any) -> None:
    """A hide_ip other than true, false or null is 422 invalid_request naming the field,
    and changes nothing."""
    await seed_people(gate)
    room_id = await book(gate, clock)
    await put_client(gate, hide_ip=True)
    response = await put_client(gate, hide_ip=value, name="Changed")
    assert response.status == 422
    assert (await response.json())["error"] == {
        "code": "invalid_request", "message": "'hide_ip' must be true or false",
        "field": "hide_ip"}
    assert await relay_only(gate, room_id) is True


async def test_a_hub_has_default_settings_until_set(gate: GateClient) -> None:
    """GET /hubs/{id} answers the defaults for a hub never set; PUT stores the setting."""
    response = await gate.get("/api/v1/hubs/acme", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"hub_id": "acme", "clients_hide_ip": False}
    response = await put_hub(gate, {"clients_hide_ip": True})
    assert response.status == 200, await response.text()
    assert await response.json() == {"hub_id": "acme", "clients_hide_ip": True}
    response = await gate.get("/api/v1/hubs/acme", headers=AUTH)
    assert (await response.json())["clients_hide_ip"] is True


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"clients_hide_ip": "yes"}, "clients_hide_ip", "'clients_hide_ip' must be true or false"),
    ({"clients_hide_ip": 1}, "clients_hide_ip", "'clients_hide_ip' must be true or false"),
    ({"hide_ip": True}, "hide_ip", "unknown field 'hide_ip'"),
    ([], None, "the request body must be a JSON object"),
])
async def test_hub_settings_are_validated(gate: GateClient, body: Any, field: str | None,
                                          message: str) -> None:
    """A wrong hub body is 422 invalid_request naming the field; the setting is unchanged."""
    await put_hub(gate, {"clients_hide_ip": True})
    response = await put_hub(gate, body)
    assert response.status == 422
    assert (await response.json())["error"] == {"code": "invalid_request",
                                                "message": message, "field": field}
    response = await gate.get("/api/v1/hubs/acme", headers=AUTH)
    assert (await response.json())["clients_hide_ip"] is True


async def test_hub_settings_need_the_api_key(gate: GateClient) -> None:
    """Hub settings are the booking system's: 401 without the key."""
    assert (await gate.get("/api/v1/hubs/acme")).status == 401
    assert (await gate.put("/api/v1/hubs/acme", json={"clients_hide_ip": True})).status == 401


# -- the gate's answer to signalling ---------------------------------------------------------


async def test_client_relay_only_follows_the_client_and_its_hub(gate: GateClient,
                                                                clock: FakeClock) -> None:
    """client_relay_only: false by default, true with the client's hide_ip, true with its
    hub's clients_hide_ip alone, false again once both are off (read at each ask)."""
    await seed_people(gate)
    room_id = await book(gate, clock)
    assert await relay_only(gate, room_id) is False
    await put_client(gate, hide_ip=True)
    assert await relay_only(gate, room_id) is True
    await put_client(gate, hide_ip=False)
    assert await relay_only(gate, room_id) is False
    await put_hub(gate, {"clients_hide_ip": True})
    assert await relay_only(gate, room_id) is True
    await put_hub(gate, {"clients_hide_ip": True}, hub="other")
    await put_hub(gate, {"clients_hide_ip": False})
    assert await relay_only(gate, room_id) is False


async def test_another_hubs_setting_does_not_apply(gate: GateClient, clock: FakeClock) -> None:
    """clients_hide_ip of one hub leaves the clients of other hubs (and of none) alone."""
    await seed_people(gate, hub=None)
    response = await gate.put("/api/v1/bookings/b-1", headers=AUTH, json=booking_body(
        clock.now + timedelta(hours=1), funding="private", source="direct"))
    assert response.status == 201, await response.text()
    room_id = (await response.json())["room_id"]
    await put_hub(gate, {"clients_hide_ip": True}, hub="acme")
    assert await relay_only(gate, room_id) is False


async def test_revalidation_answers_carry_the_flag(gate: GateClient, clock: FakeClock) -> None:
    """POST /signalling/rooms answers client_relay_only per room, as the single GET does."""
    await seed_people(gate)
    plain = await book(gate, clock, "b-1")
    await gate.put("/api/v1/clients/cli-2", headers=AUTH, json={
        **CLIENT, "email": "c2@example.org", "hub_id": None, "hide_ip": True})
    body = {**booking_body(clock.now + timedelta(hours=3), funding="private",
                           source="direct"), "client_id": "cli-2"}
    response = await gate.put("/api/v1/bookings/b-2", headers=AUTH, json=body)
    assert response.status == 201, await response.text()
    hidden = (await response.json())["room_id"]
    response = await gate.post("/api/v1/signalling/rooms", headers=AUTH,
                               json={"room_ids": [plain, hidden]})
    rooms = (await response.json())["rooms"]
    assert rooms[plain]["client_relay_only"] is False
    assert rooms[hidden]["client_relay_only"] is True


def test_an_older_gates_answer_means_no_relay_and_a_wrong_one_is_refused() -> None:
    """parse_room: client_relay_only absent → False; not a boolean → ValueError."""
    room = {"room_id": "r", "booking_id": "b", "professional_id": "p", "client_id": "c",
            "starts_at": "2026-11-23T10:00:00Z", "ends_at": "2026-11-23T10:50:00Z",
            "cancelled": False, "changed_at": "2026-11-23T08:00:00Z",
            "opens_at": "2026-11-23T09:45:00Z", "closes_at": "2026-11-23T11:05:00Z"}
    assert parse_room(room).client_relay_only is False
    assert parse_room({**room, "client_relay_only": True}).client_relay_only is True
    with pytest.raises(ValueError, match="client_relay_only"):
        parse_room({**room, "client_relay_only": "true"})


def test_only_the_clients_welcome_asks_for_relay() -> None:
    """transport_policy: relay for the client of a relay-only booking; all otherwise."""
    t = datetime(2026, 11, 23, tzinfo=UTC)
    booking = RoomBooking("r", "b", "p", "c", t, t, False, t, t, t, client_relay_only=True)
    assert transport_policy(Role.CLIENT, booking) == "relay"
    assert transport_policy(Role.PROFESSIONAL, booking) == "all"
    plain = RoomBooking("r", "b", "p", "c", t, t, False, t, t, t)
    assert transport_policy(Role.CLIENT, plain) == "all"


# -- welcome, in process and over HTTP --------------------------------------------------------


async def welcome_of(session: Any, url: str, token: str) -> dict[str, Any]:
    async with session.ws_connect(url) as ws:
        await ws.send_json({"type": "hello", "token": token, "agent": "aiortc",
                            "can_rollback": False})
        msg = await ws.receive(timeout=LIMIT)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        welcome: dict[str, Any] = json.loads(msg.data)
        await ws.send_json({"type": "bye"})
    assert welcome["type"] == "welcome", welcome
    return welcome


async def test_in_process_welcome_says_relay_to_the_hiding_client_only(
        service: GateClient) -> None:
    """carecall serve: the client with hide_ip gets ice_transport_policy relay (and no ICE
    servers, none being configured), the professional all; a client without gets all."""
    room = await book_now(service)
    assert (await welcome_of(service, "/ws", room["client"]))["ice_transport_policy"] == "all"
    await put_client(service, hide_ip=True)
    client = await welcome_of(service, "/ws", room["client"])
    assert client["ice_transport_policy"] == "relay"
    assert client["ice_servers"] == []
    professional = await welcome_of(service, "/ws", room["professional"])
    assert professional["ice_transport_policy"] == "all"


async def test_in_process_gate_link_carries_the_hub_setting(service: GateClient) -> None:
    """InProcessGate.room and .rooms: client_relay_only from the hub's setting."""
    room = await book_now(service)
    link = InProcessGate(service.server.app)
    assert (await link.room(room["room_id"])).client_relay_only is False  # type: ignore[union-attr]
    await put_hub(service, {"clients_hide_ip": True})
    assert (await link.room(room["room_id"])).client_relay_only is True  # type: ignore[union-attr]
    found = await link.rooms([room["room_id"], "unknown-room"])
    assert found[room["room_id"]].client_relay_only is True  # type: ignore[union-attr]
    assert found["unknown-room"] is None




@pytest.mark.redis
async def test_http_node_with_redis_rooms_says_relay_to_the_hiding_client(
        tmp_path: Path, redis_prefix: str, aiohttp_client: Callable[..., Any]) -> None:
    """carecall signalling --gate-url: the flag crosses HTTP (HttpGate) and a room kept in
    Redis, and the client's welcome says relay; the professional's says all."""
    gate: GateClient = await aiohttp_client(TestServer(make_gate(GateConfig(
        db_url=f"sqlite:///{tmp_path / 'gate.db'}", public_url="http://127.0.0.1",
        api_key=API_KEY, var_dir=tmp_path / "gate")), host="127.0.0.1"))
    room = await book_now(gate)
    await put_hub(gate, {"clients_hide_ip": True})
    link = HttpGate(str(gate.make_url("/")), API_KEY)
    node = await aiohttp_client(TestServer(make_signalling(SignallingConfig(
        public_url="http://127.0.0.1", var_dir=tmp_path / "node", redis_url=REDIS_URL,
        redis_prefix=redis_prefix), link), host="127.0.0.1"))
    async with node.ws_connect("/ws") as present:  # keeps the room open in Redis
        await present.send_json({"type": "hello", "token": room["professional"],
                                 "agent": "browser", "can_rollback": True})
        professional = json.loads((await present.receive(timeout=LIMIT)).data)
        assert professional["ice_transport_policy"] == "all"
        client = await welcome_of(node, "/ws", room["client"])
        assert client["ice_transport_policy"] == "relay"
        # The room as Redis keeps it says so too (a node that resumes it reads it there).
        store = redis.Redis.from_url(REDIS_URL)
        try:
            raw = await store.hget(f"{redis_prefix}room:{room['room_id']}", "s")
        finally:
            await store.aclose()
        await present.send_json({"type": "bye"})
    assert raw is not None
    assert json.loads(raw)["booking"]["client_relay_only"] is True


# -- migration 0007 -------------------------------------------------------------------------


async def test_migration_0007_adds_the_settings_and_comes_off_again(db_url: str) -> None:
    """After 0007 an existing client reads hide_ip false (server default) and hubs exists;
    a downgrade to 0006 removes both and keeps the client; upgrading again restores them."""
    from alembic import command
    from sqlalchemy import inspect, select, text

    from booking_gate.db import schema as t
    from booking_gate.db.engine import _alembic_config, create_engine, migrate

    def columns(conn: Any) -> tuple[set[str], set[str]]:
        found = inspect(conn)
        return {c["name"] for c in found.get_columns("clients")}, set(found.get_table_names())

    engine = create_engine(db_url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO clients (client_id, name, email, timezone, updated_at) "
                "VALUES ('cli-old', 'Old', 'old@example.org', 'UTC', '2026-11-23 08:00:00')"))
            hide = (await conn.execute(select(t.clients.c.hide_ip))).scalar_one()
            assert hide is False
            client_columns, tables = await conn.run_sync(columns)
            assert "hide_ip" in client_columns and "hubs" in tables
            await conn.run_sync(lambda sync: command.downgrade(_alembic_config(sync), "0006"))
            client_columns, tables = await conn.run_sync(columns)
            assert "hide_ip" not in client_columns and "hubs" not in tables
            assert (await conn.execute(text("SELECT count(*) FROM clients"))).scalar_one() == 1
        await migrate(engine)
        async with engine.connect() as conn:
            client_columns, tables = await conn.run_sync(columns)
            assert "hide_ip" in client_columns and "hubs" in tables
    finally:
        await engine.dispose()


def test_peer_hide_ip_is_an_alias_of_relay_only() -> None:
    """carecall peer --hide-ip sets the same option as --relay-only; neither is the default."""
    from carecall.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["peer", "-", "--hide-ip"]).relay_only is True
    assert parser.parse_args(["peer", "-", "--relay-only"]).relay_only is True
    assert parser.parse_args(["peer", "-"]).relay_only is False
