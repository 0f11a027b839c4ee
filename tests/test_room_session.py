"""The lobby (booking_gate.lobby): GET /rooms/{room_id}/session and POST .../running-late,
on both backends, with the fake clock."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from booking_gate.app import make_app
from booking_gate.appkeys import SERVICE
from booking_gate.config import GateConfig
from booking_gate.errors import InvalidRequest
from booking_gate.model import AttendanceEvent, BookingId, EventId, EventKind, Role, RoomId
from booking_gate.rules import format_time
from tests.conftest import AUTH, FakeClock, GateClient, booking_body, seed_people
from tests.test_openapi_doc import assert_valid

PRO_NAME = "Ingrid Holmsen-Vale"
CLIENT_NAME = "Zephyrine Quist-Morrow"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def booked(gate: GateClient, clock: FakeClock, *, booking_id: str = "b-1",
                 start_offset: timedelta = timedelta(), seed: bool = True) -> dict[str, Any]:
    """People with distinctive names, a booking starting ``start_offset`` from the fake
    clock's now (Monday 09:00 in Oslo), and its two join tokens."""
    if seed:
        await seed_people(gate, credits=5)
        for path, body in (("/api/v1/professionals/pro-1", {
                "name": PRO_NAME, "email": "pro@example.org", "timezone": "Europe/Oslo",
                "availability": [{"weekday": d, "start": "08:00", "end": "18:00"}
                                 for d in range(5)]}),
                ("/api/v1/clients/cli-1", {"name": CLIENT_NAME, "email": "c@example.org",
                                           "timezone": "Europe/Oslo", "hub_id": "acme"})):
            response = await gate.put(path, headers=AUTH, json=body)
            assert response.status == 200, await response.text()
    response = await gate.put(f"/api/v1/bookings/{booking_id}", headers=AUTH,
                              json=booking_body(clock.now + start_offset))
    assert response.status == 201, await response.text()
    booking = await response.json()
    links = await (await gate.post(f"/api/v1/bookings/{booking_id}/links", headers=AUTH)).json()
    return {"room": booking["room_id"], "booking": booking,
            **{role: links[role]["url"].split("#t=")[1] for role in ("professional", "client")}}


async def session(gate: GateClient, room: dict[str, Any], role: str = "client",
                  *, token: str | None = None, status: int = 200) -> dict[str, Any]:
    response = await gate.get(f"/api/v1/rooms/{room['room']}/session",
                              headers=bearer(token or room[role]))
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


async def running_late(gate: GateClient, room: dict[str, Any], role: str = "client",
                       body: Any = None, *, token: str | None = None
                       ) -> tuple[int, dict[str, Any]]:
    response = await gate.post(f"/api/v1/rooms/{room['room']}/running-late",
                               headers=bearer(token or room[role]),
                               json={"minutes": 10} if body is None else body)
    return response.status, await response.json()


async def attendance(gate: GateClient, booking_id: str = "b-1") -> dict[str, Any]:
    response = await gate.get(f"/api/v1/bookings/{booking_id}/attendance", headers=AUTH)
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


# -- GET /session --------------------------------------------------------------------------


async def test_open_session_has_the_full_shape(gate: GateClient, clock: FakeClock) -> None:
    """A booking starting now: 200 with role, state open, the times, the server's now,
    the professional's name and zone, the client's first name, and empty extras."""
    room = await booked(gate, clock)
    clock.advance(minutes=3)
    assert await session(gate, room) == {
        "role": "client", "state": "open",
        "starts_at": "2026-11-23T08:00:00Z", "ends_at": "2026-11-23T08:50:00Z",
        "opens_at": "2026-11-23T07:45:00Z", "closes_at": "2026-11-23T09:05:00Z",
        "now": "2026-11-23T08:03:00Z",
        "professional": {"name": PRO_NAME, "timezone": "Europe/Oslo"},
        "client": {"first_name": "Zephyrine"},
        "notices": [], "next_session": None, "support": None, "ice_servers": [],
        "ice_transport_policy": "all",
    }
    assert_valid("RoomSession", await session(gate, room))
    assert (await session(gate, room, "professional"))["role"] == "professional"


async def test_a_hiding_clients_session_says_relay_and_the_professionals_does_not(
        gate: GateClient, clock: FakeClock) -> None:
    """The hub's clients hide their IP: the client's lobby checks the relay only, as its
    call will; the professional's policy stays "all"."""
    room = await booked(gate, clock)
    response = await gate.put("/api/v1/hubs/acme", headers=AUTH,
                              json={"clients_hide_ip": True})
    assert response.status == 200, await response.text()
    assert (await session(gate, room))["ice_transport_policy"] == "relay"
    assert (await session(gate, room, "professional"))["ice_transport_policy"] == "all"


async def test_too_early_before_the_window(gate: GateClient, clock: FakeClock) -> None:
    """A booking tomorrow: its genuine, not yet valid token gets 200 state too_early."""
    room = await booked(gate, clock, start_offset=timedelta(days=1))
    data = await session(gate, room)
    assert (data["state"], data["opens_at"], data["now"]) == (
        "too_early", "2026-11-24T07:45:00Z", "2026-11-23T08:00:00Z")
    clock.now = clock.now + timedelta(days=1, minutes=-15)  # the window opens
    assert (await session(gate, room))["state"] == "open"


async def test_over_after_the_window(gate: GateClient, clock: FakeClock) -> None:
    """Past closes_at the expired but genuine token gets 200 state over, not 401."""
    room = await booked(gate, clock)
    clock.now = clock.now + timedelta(minutes=50 + 15) - timedelta(seconds=1)
    assert (await session(gate, room))["state"] == "open"
    clock.advance(seconds=1)
    assert (await session(gate, room))["state"] == "over"


async def test_cancelled(gate: GateClient, clock: FakeClock) -> None:
    """A cancelled booking: state cancelled for either party's token."""
    room = await booked(gate, clock, start_offset=timedelta(days=2))
    response = await gate.post("/api/v1/bookings/b-1/cancel", headers=AUTH,
                               json={"by": "client"})
    assert response.status == 200, await response.text()
    for role in ("client", "professional"):
        assert (await session(gate, room, role))["state"] == "cancelled"


async def test_rescheduled_with_the_old_token(gate: GateClient, clock: FakeClock) -> None:
    """After a reschedule the old token gets state rescheduled and the new times; a
    link issued after it is open or too early again."""
    room = await booked(gate, clock, start_offset=timedelta(days=2))
    assert (await session(gate, room))["state"] == "too_early"
    new_start = clock.now + timedelta(days=3)
    response = await gate.post("/api/v1/bookings/b-1/reschedule", headers=AUTH, json={
        "starts_at": new_start.isoformat(),
        "ends_at": (new_start + timedelta(minutes=50)).isoformat(), "by": "client"})
    assert response.status == 200, await response.text()
    data = await session(gate, room)
    assert (data["state"], data["starts_at"]) == ("rescheduled", format_time(new_start))
    clock.advance(seconds=1)  # a new link's iat is after the change
    links = await (await gate.post("/api/v1/bookings/b-1/links", headers=AUTH)).json()
    fresh = links["client"]["url"].split("#t=")[1]
    assert (await session(gate, room, token=fresh))["state"] == "too_early"


@pytest.mark.parametrize("case", ["missing", "malformed", "forged"])
async def test_a_forged_or_malformed_token_is_401_invalid_token(
        gate: GateClient, clock: FakeClock, case: str) -> None:
    """No token, a non-JWT and a token with a broken signature: 401 invalid_token."""
    room = await booked(gate, clock)
    headers = {"missing": {}, "malformed": bearer("not-a-jwt"),
               "forged": bearer(room["client"][:-4] + ("AAAA" if not room["client"].endswith(
                   "AAAA") else "BBBB"))}[case]
    response = await gate.get(f"/api/v1/rooms/{room['room']}/session", headers=headers)
    assert (response.status, (await response.json())["error"]["code"]) == (
        401, "invalid_token")


async def test_a_token_of_another_room_is_403(gate: GateClient, clock: FakeClock) -> None:
    """b-1's token on b-2's (existing) room: 403 forbidden, for both routes."""
    first = await booked(gate, clock)
    second = await booked(gate, clock, booking_id="b-2", start_offset=timedelta(days=1),
                          seed=False)
    body = await session(gate, second, token=first["client"], status=403)
    assert body["error"]["code"] == "forbidden"
    status, body = await running_late(gate, second, token=first["client"])
    assert (status, body["error"]["code"]) == (403, "forbidden")


async def test_a_genuine_token_for_an_unknown_room_is_404(
        gate: GateClient, clock: FakeClock) -> None:
    """A token the gate's own key signed for a room no booking has: 404 not_found."""
    await booked(gate, clock)
    service = gate.server.app[SERVICE]
    real = await service.store.get_booking("b-1")
    assert real is not None
    ghost = dataclasses.replace(real, room_id=RoomId("no-such-room-0123456789abcdef"))
    token = service.tokens.issue(ghost, Role.CLIENT, clock.now).token
    body = await session(gate, {"room": ghost.room_id}, token=token, status=404)
    assert body["error"]["code"] == "not_found"
    status, body = await running_late(gate, {"room": ghost.room_id}, token=token)
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_next_session_is_the_one_booked_in_the_call(
        gate: GateClient, clock: FakeClock) -> None:
    """None at first; after the professional books the next session in the call, its
    times and funding."""
    room = await booked(gate, clock)
    assert (await session(gate, room))["next_session"] is None
    slots = await (await gate.get(f"/api/v1/rooms/{room['room']}/next-slots",
                                  headers=bearer(room["professional"]))).json()
    first = slots["slots"][0]
    response = await gate.post(f"/api/v1/rooms/{room['room']}/next-booking",
                               headers=bearer(room["professional"]),
                               json={"starts_at": first["starts_at"], "idempotency_key": "k"})
    assert response.status == 201, await response.text()
    data = await session(gate, room)
    assert data["next_session"] == {
        "starts_at": first["starts_at"], "ends_at": first["ends_at"], "funding": "sponsored"}
    assert_valid("RoomSession", data)


async def test_support_text_when_configured(gate_config: GateConfig, clock: FakeClock,
                                            aiohttp_client: Callable[..., Any]) -> None:
    """GateConfig.support_text comes back as support."""
    config = dataclasses.replace(gate_config, support_text="Stuck? Call 22 00 00 00.")
    client: GateClient = await aiohttp_client(make_app(config, clock=clock))
    room = await booked(client, clock)
    assert (await session(client, room))["support"] == "Stuck? Call 22 00 00 00."


async def test_injected_ice_servers_get_room_role_and_closes_at(
        gate_config: GateConfig, clock: FakeClock,
        aiohttp_client: Callable[..., Any]) -> None:
    """The injected callable is asked with (room, role, closes_at as Unix time) while the
    link leads to a call; over, the list is empty."""
    calls: list[tuple[str, str, int]] = []

    def ice(room_id: str, role: str, expiry: int) -> list[dict[str, Any]]:
        calls.append((room_id, role, expiry))
        return [{"urls": ["stun:stun.example:3478"]}]

    client: GateClient = await aiohttp_client(make_app(gate_config, clock=clock,
                                                       ice_servers=ice))
    room = await booked(client, clock)
    data = await session(client, room, "professional")
    assert data["ice_servers"] == [{"urls": ["stun:stun.example:3478"]}]
    closes_at = int((clock.now + timedelta(minutes=65)).timestamp())
    assert calls == [(room["room"], "professional", closes_at)]
    clock.advance(minutes=65)
    assert (await session(client, room))["ice_servers"] == []
    assert len(calls) == 1


@pytest.mark.parametrize("command", ["serve", "gate"])
async def test_serve_and_gate_give_the_lobby_turn_credentials(
        command: str, tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """carecall serve's app gives the lobby the welcome's STUN/TURN list, and so does
    carecall gate's (no signalling beside it: the same settings from its environment):
    a TURN-REST username <closes_at>:<room>:<role>; the credential is never logged."""
    from carecall.serve import build_app
    from signalling.config import SignallingConfig
    from signalling.ice import IceConfig, ice_servers

    caplog.set_level(logging.DEBUG)
    ice = IceConfig(stun_urls=("stun:stun.example:3478",),
                    turn_urls=("turn:turn.example:3478",), turn_secret="turn-secret-0123")
    config = GateConfig(db_url=f"sqlite:///{tmp_path / 'gate.db'}",
                        public_url="https://care.example", api_key="test-api-key-0123456789",
                        var_dir=tmp_path / "var")
    if command == "serve":
        app = build_app(config, SignallingConfig(public_url="", var_dir=tmp_path / "var",
                                                 ice=ice), clock=clock)
    else:
        app = build_app(config, None, clock=clock, lobby_ice=ice)
    client: GateClient = await aiohttp_client(app)
    room = await booked(client, clock)
    data = await session(client, room)
    expiry = int((clock.now + timedelta(minutes=65)).timestamp())
    assert data["ice_servers"] == ice_servers(ice, room["room"], "client", expiry)
    assert data["ice_servers"][1]["username"] == f"{expiry}:{room['room']}:client"
    assert data["ice_servers"][1]["credential"] not in caplog.text
    assert_valid("RoomSession", data)


async def test_names_are_never_logged(gate: GateClient, clock: FakeClock,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, GET /session and a notice log neither party's name (the notice is
    logged, so the capture works); the response does carry them."""
    room = await booked(gate, clock)
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    data = await session(gate, room, "professional")
    assert (data["professional"]["name"], data["client"]["first_name"]) == (
        PRO_NAME, "Zephyrine")
    assert (await running_late(gate, room))[0] == 201
    assert "running-late notice" in caplog.text
    for name in (PRO_NAME, CLIENT_NAME, "Zephyrine", "Holmsen"):
        assert name not in caplog.text
        assert all(name not in str(vars(record)) for record in caplog.records)


async def test_after_the_clients_erasure(gate: GateClient, clock: FakeClock) -> None:
    """The professional's lobby still answers, with the client's (erased) name empty; the
    client's old token is no longer a party's: 403."""
    room = await booked(gate, clock)
    response = await gate.delete("/api/v1/clients/cli-1", headers=AUTH)
    assert response.status == 204, await response.text()
    data = await session(gate, room, "professional")
    assert (data["state"], data["client"]) == ("open", {"first_name": ""})
    assert (await session(gate, room, "client", status=403))["error"]["code"] == "forbidden"


# -- POST /running-late ----------------------------------------------------------------------


async def test_running_late_is_stored_and_in_the_attendance_record(
        gate: GateClient, clock: FakeClock) -> None:
    """201 the notice at the server's clock; the same notice in GET /session and in the
    attendance record, oldest first, by either party."""
    room = await booked(gate, clock)
    clock.advance(minutes=2)
    status, notice = await running_late(gate, room, body={"minutes": 10})
    assert (status, notice) == (201, {"by": "client", "kind": "running_late", "minutes": 10,
                                      "at": "2026-11-23T08:02:00Z"})
    clock.advance(seconds=30)
    status, second = await running_late(gate, room, "professional", {"minutes": 5})
    assert status == 201
    data = await session(gate, room)
    assert data["notices"] == [notice, second]
    assert (await attendance(gate))["notices"] == [notice, second]
    assert_valid("Notice", notice)
    assert_valid("RoomSession", data)


async def test_running_late_while_too_early_is_accepted(
        gate: GateClient, clock: FakeClock) -> None:
    """Before the window opens a notice is fine (the lobby is counting down)."""
    room = await booked(gate, clock, start_offset=timedelta(hours=1))
    status, _ = await running_late(gate, room, body={"minutes": 15})
    assert status == 201


@pytest.mark.parametrize("body", [{"minutes": 7}, {"minutes": "5"}, {"minutes": True},
                                  {"minutes": 5.0}, {"minutes": None}, {},
                                  {"minutes": 5, "extra": 1}, [5]])
async def test_bad_minutes_are_422_and_store_nothing(gate: GateClient, clock: FakeClock,
                                                     body: Any) -> None:
    """Anything but 5, 10 or 15 (as a JSON integer): 422 invalid_request; no notice."""
    room = await booked(gate, clock)
    status, error = await running_late(gate, room, body=body)
    assert (status, error["error"]["code"]) == (422, "invalid_request")
    expected = "extra" if isinstance(body, dict) and "extra" in body else (
        None if isinstance(body, list) else "minutes")
    assert error["error"]["field"] == expected
    assert (await session(gate, room))["notices"] == []
    assert (await attendance(gate))["notices"] == []


async def test_running_late_after_cancel_is_403(gate: GateClient, clock: FakeClock) -> None:
    """Cancelled: 403 forbidden, nothing stored."""
    room = await booked(gate, clock, start_offset=timedelta(days=2))
    await gate.post("/api/v1/bookings/b-1/cancel", headers=AUTH, json={"by": "client"})
    status, error = await running_late(gate, room)
    assert (status, error["error"]["code"]) == (403, "forbidden")
    assert (await session(gate, room))["notices"] == []


async def test_running_late_with_a_rescheduled_token_is_403(
        gate: GateClient, clock: FakeClock) -> None:
    """The old token of a moved booking: 403 forbidden."""
    room = await booked(gate, clock, start_offset=timedelta(days=2))
    new_start = clock.now + timedelta(days=3)
    response = await gate.post("/api/v1/bookings/b-1/reschedule", headers=AUTH, json={
        "starts_at": new_start.isoformat(),
        "ends_at": (new_start + timedelta(minutes=50)).isoformat(), "by": "professional"})
    assert response.status == 200
    status, error = await running_late(gate, room)
    assert (status, error["error"]["code"]) == (403, "forbidden")


async def test_running_late_after_the_window_is_409(gate: GateClient,
                                                    clock: FakeClock) -> None:
    """At closes_at and later: 409 session_over; a second earlier it was accepted."""
    room = await booked(gate, clock)
    clock.advance(minutes=65, seconds=-1)
    assert (await running_late(gate, room))[0] == 201
    clock.advance(seconds=1)
    status, error = await running_late(gate, room)
    assert (status, error["error"]["code"]) == (409, "session_over")
    assert len((await session(gate, room))["notices"]) == 1


async def test_at_most_ten_notices_per_party(gate: GateClient, clock: FakeClock) -> None:
    """The 11th notice of one party is 429 rate_limited and not stored; the other party
    still has its own ten."""
    room = await booked(gate, clock)
    for _ in range(10):
        assert (await running_late(gate, room, body={"minutes": 5}))[0] == 201
    status, error = await running_late(gate, room, body={"minutes": 5})
    assert (status, error["error"]["code"]) == (429, "rate_limited")
    assert (await running_late(gate, room, "professional"))[0] == 201
    notices = (await session(gate, room))["notices"]
    assert [n["by"] for n in notices].count("client") == 10 and len(notices) == 11


async def test_a_client_who_only_sent_running_late_is_a_no_show(
        gate: GateClient, clock: FakeClock) -> None:
    """The professional joined, the client only said they were late: client_no_show,
    the client not joined, and the notice kept in the record."""
    room = await booked(gate, clock)
    response = await gate.post("/api/v1/attendance/events", headers=AUTH, json={"events": [
        {"event_id": "e-1", "booking_id": "b-1", "role": "professional", "kind": "joined",
         "at": format_time(clock.now)}]})
    assert response.status == 200, await response.text()
    clock.advance(minutes=5)
    assert (await running_late(gate, room, body={"minutes": 15}))[0] == 201
    clock.advance(minutes=61)  # past closes_at: final
    record = await attendance(gate)
    assert (record["status"], record["outcome"]) == ("final", "client_no_show")
    assert record["parties"]["client"]["joined"] is False
    assert record["notices"] == [{"by": "client", "kind": "running_late", "minutes": 15,
                                  "at": "2026-11-23T08:05:00Z"}]


async def test_signalling_cannot_report_running_late(gate: GateClient,
                                                     clock: FakeClock) -> None:
    """POST /api/v1/attendance/events with kind running_late: 422 naming the event's kind,
    nothing stored; the in-process path (GateService.ingest) refuses it too."""
    room = await booked(gate, clock)
    response = await gate.post("/api/v1/attendance/events", headers=AUTH, json={"events": [
        {"event_id": "e-0", "booking_id": "b-1", "role": "client", "kind": "joined",
         "at": format_time(clock.now)},
        {"event_id": "e-1", "booking_id": "b-1", "role": "client", "kind": "running_late",
         "at": format_time(clock.now), "reason": "5"}]})
    error = (await response.json())["error"]
    assert (response.status, error["code"], error["field"]) == (
        422, "invalid_request", "events[1].kind")
    service = gate.server.app[SERVICE]
    with pytest.raises(InvalidRequest):
        await service.ingest([AttendanceEvent(EventId("e-2"), BookingId("b-1"), Role.CLIENT,
                                              EventKind.RUNNING_LATE, clock.now, "5")])
    assert await service.store.count_events("b-1") == 0
    assert (await session(gate, room))["notices"] == []


# -- CARECALL_SUPPORT_TEXT -----------------------------------------------------------------


def test_support_text_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stripped; unset or blank is None."""
    from carecall.cli import support_text_from_env

    monkeypatch.delenv("CARECALL_SUPPORT_TEXT", raising=False)
    assert support_text_from_env() is None
    monkeypatch.setenv("CARECALL_SUPPORT_TEXT", "   ")
    assert support_text_from_env() is None
    monkeypatch.setenv("CARECALL_SUPPORT_TEXT", "  Call the clinic: 22 00 00 00 ")
    assert support_text_from_env() == "Call the clinic: 22 00 00 00"


@pytest.mark.parametrize(("value", "message"), [
    ("x" * 501, "CARECALL_SUPPORT_TEXT must be at most 500 characters (got 501)"),
    ("line one\nline two", "CARECALL_SUPPORT_TEXT must be one line without control "
                           "characters"),
    ("bidi \u202e trick", "CARECALL_SUPPORT_TEXT must be one line without control "
                          "characters"),
])
def test_bad_support_text_stops_the_start_with_one_line(
        value: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Too long or with control characters: exit 2, one line on stderr, nothing written."""
    from carecall import cli

    monkeypatch.setenv("CARECALL_SUPPORT_TEXT", value)
    assert cli.main(["gate", "--var-dir", str(tmp_path / "var")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"carecall: {message}"]
    assert not (tmp_path / "var").exists()
