"""The gate's endpoints for signalling nodes (booking_gate/api_signalling.py) and the
JWKS cache header, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from booking_gate.rules import format_time
from tests.conftest import AUTH, FakeClock, GateClient, booking_body, seed_people


async def book(gate: GateClient, clock: FakeClock, booking_id: str = "b-1",
               hours: float = 1) -> dict[str, Any]:
    response = await gate.put(f"/api/v1/bookings/{booking_id}", headers=AUTH,
                              json=booking_body(clock.now + timedelta(hours=hours)))
    assert response.status == 201, await response.text()
    booking: dict[str, Any] = await response.json()
    return booking


async def test_a_room_is_answered_with_its_booking_and_window(gate: GateClient,
                                                              clock: FakeClock) -> None:
    """GET .../signalling/rooms/{room_id}: ids, times, the token window and changed_at
    to the microsecond."""
    clock.advance(seconds=0.25)
    await seed_people(gate)
    booking = await book(gate, clock)
    response = await gate.get(f"/api/v1/signalling/rooms/{booking['room_id']}", headers=AUTH)
    assert response.status == 200, await response.text()
    starts = clock.now + timedelta(hours=1)
    assert await response.json() == {
        "room_id": booking["room_id"], "booking_id": "b-1", "professional_id": "pro-1",
        "client_id": "cli-1", "starts_at": format_time(starts),
        "ends_at": format_time(starts + timedelta(minutes=50)), "cancelled": False,
        "changed_at": format_time(clock.now),
        "opens_at": format_time(starts - timedelta(seconds=900)),
        "closes_at": format_time(starts + timedelta(minutes=50, seconds=900)),
        "client_relay_only": False,
    }
    assert (await response.json())["changed_at"].endswith(".250000Z")


async def test_a_cancelled_booking_says_so(gate: GateClient, clock: FakeClock) -> None:
    """After a cancel the room is still answered, with cancelled true (changed_at stays:
    it moves with a reschedule only)."""
    await seed_people(gate)
    booking = await book(gate, clock)
    created = clock.now
    clock.advance(seconds=3.5)
    response = await gate.post("/api/v1/bookings/b-1/cancel", headers=AUTH,
                               json={"by": "client"})
    assert response.status == 200
    room = await (await gate.get(f"/api/v1/signalling/rooms/{booking['room_id']}",
                                 headers=AUTH)).json()
    assert room["cancelled"] is True
    assert room["changed_at"] == format_time(created)


@pytest.mark.parametrize(("room_id", "status", "code"), [
    ("no-such-room", 404, "not_found"),
    ("bad%20id", 422, "invalid_id"),
    ("x" * 129, 422, "invalid_id"),
])
async def test_unknown_or_malformed_rooms_are_refused(gate: GateClient, room_id: str,
                                                      status: int, code: str) -> None:
    """An unknown room is 404 not_found; an id the gate never makes is 422 invalid_id."""
    response = await gate.get(f"/api/v1/signalling/rooms/{room_id}", headers=AUTH)
    assert response.status == status
    error = (await response.json())["error"]
    assert (error["code"], error["field"]) == (code, "room_id")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/v1/signalling/rooms/some-room", None),
    ("POST", "/api/v1/signalling/rooms", {"room_ids": ["some-room"]}),
])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}])
async def test_the_node_endpoints_need_the_api_key(gate: GateClient, method: str, path: str,
                                                   body: Any, headers: dict[str, str]) -> None:
    """Without the API key, or with a wrong one: 401 unauthorized."""
    response = await gate.request(method, path, headers=headers, json=body)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


async def test_many_rooms_are_answered_at_once(gate: GateClient, clock: FakeClock) -> None:
    """POST .../signalling/rooms: each asked id, found or null, in one answer of 1000."""
    await seed_people(gate)
    first, second = await book(gate, clock), await book(gate, clock, "b-2", hours=3)
    single = await (await gate.get(f"/api/v1/signalling/rooms/{first['room_id']}",
                                   headers=AUTH)).json()
    asked = [first["room_id"], second["room_id"], first["room_id"],
             *(f"unknown-{i}" for i in range(997))]
    response = await gate.post("/api/v1/signalling/rooms", headers=AUTH,
                               json={"room_ids": asked})
    assert response.status == 200, await response.text()
    rooms = (await response.json())["rooms"]
    assert set(rooms) == set(asked) and len(rooms) == 999
    assert rooms[first["room_id"]] == single
    assert rooms[second["room_id"]]["booking_id"] == "b-2"
    assert all(rooms[f"unknown-{i}"] is None for i in range(997))


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"room_ids": []}, "room_ids", "'room_ids' must be a list of 1 to 1000 room ids"),
    ({"room_ids": ["r"] * 1001}, "room_ids", "'room_ids' must be a list of 1 to 1000 room ids"),
    ({"room_ids": "r-1"}, "room_ids", "'room_ids' must be a list of 1 to 1000 room ids"),
    ({}, "room_ids", "'room_ids' must be a list of 1 to 1000 room ids"),
    ({"room_ids": ["ok", 7]}, "room_ids[1]", "'room_ids[1]' must match [A-Za-z0-9._:-]{1,128}"),
    ({"room_ids": ["ok"], "more": 1}, "more", "unknown field 'more'"),
    ([], None, "the request body must be a JSON object"),
])
async def test_a_bad_batch_is_refused_naming_the_field(gate: GateClient, body: Any,
                                                       field: str | None, message: str) -> None:
    """A malformed batch is 422 with the exact message and field."""
    response = await gate.post("/api/v1/signalling/rooms", headers=AUTH, json=body)
    assert response.status == 422
    error = (await response.json())["error"]
    assert (error["field"], error["message"]) == (field, message)


async def test_jwks_says_how_long_to_keep_it(gate: GateClient) -> None:
    """GET /.well-known/jwks.json carries Cache-Control: public, max-age=300."""
    response = await gate.get("/.well-known/jwks.json")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert [key["kty"] for key in (await response.json())["keys"]] == ["OKP"]
