"""The ``/ws`` signalling endpoint end to end: every close code of CONTRACT.md section 4,
relaying, presence, politeness, cancellation during a call and resume, through a real
server on 127.0.0.1 (gate + signalling in one app, SQLite, the real clock)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from booking_gate.appkeys import SERVICE
from booking_gate.config import GateConfig
from booking_gate.model import Role
from carecall.serve import build_app
from signalling.appkeys import REPORTER
from signalling.config import SignallingConfig
from tests.conftest import API_KEY, AUTH, GateClient, book_now

WS = aiohttp.ClientWebSocketResponse
READ_LIMIT = 10.0  # seconds; every wait in this module is bounded


@pytest.fixture
def signalling_config(request: pytest.FixtureRequest, tmp_path: Path) -> SignallingConfig:
    """Defaults, or the overrides a test passes with ``indirect`` parametrisation."""
    settings: dict[str, Any] = {"public_url": "", "var_dir": tmp_path / "var"}
    settings.update(getattr(request, "param", {}))
    return SignallingConfig(**settings)


def configured(**overrides: Any) -> pytest.MarkDecorator:
    """Run the decorated test with these signalling settings."""
    name = ",".join(f"{key}={value}" for key, value in overrides.items())
    return pytest.mark.parametrize("signalling_config", [overrides], indirect=True, ids=[name])


# -- helpers -------------------------------------------------------------------------


async def receive_json(ws: WS, timeout: float = READ_LIMIT) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type!r}"
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def read_until_closed(ws: WS, timeout: float = READ_LIMIT) -> list[dict[str, Any]]:
    """Every message the server sends until it closes the socket; ``ws.close_code`` is set."""

    async def drain() -> list[dict[str, Any]]:
        received = []
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                received.append(json.loads(msg.data))
        return received

    received = await asyncio.wait_for(drain(), timeout)
    assert ws.closed
    return received


def errors(received: list[dict[str, Any]]) -> list[str]:
    return [m["code"] for m in received if m.get("type") == "error"]


def hello(token: str, *, agent: str = "browser", can_rollback: bool | None = None,
          resume: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "hello", "token": token, "agent": agent,
                               "can_rollback": agent == "browser" if can_rollback is None
                               else can_rollback}
    if resume is not None:
        message["resume"] = resume
    return message


async def join(client: GateClient, token: str, **options: Any) -> tuple[WS, dict[str, Any]]:
    """Connect, say hello, and return the socket with its ``welcome``."""
    ws = await client.ws_connect("/ws")
    await ws.send_json(hello(token, **options))
    welcome = await receive_json(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def refused(client: GateClient, first: str | dict[str, Any], *, path: str = "/ws",
                  headers: dict[str, str] | None = None) -> tuple[int | None, list[str]]:
    """Connect, send ``first`` (a hello or raw text), and return the close code and errors."""
    ws = await client.ws_connect(path, headers=headers)
    await (ws.send_str(first) if isinstance(first, str) else ws.send_json(first))
    received = await read_until_closed(ws)
    return ws.close_code, errors(received)


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


# -- 1001 -------------------------------------------------------------------------------


async def test_1001_server_shutdown_closes_sockets_with_going_away(
        tmp_path: Path, signalling_config: SignallingConfig) -> None:
    """Stopping the server closes every signalling socket with 1001."""
    config = GateConfig(db_url=f"sqlite:///{tmp_path / 'gate.db'}", public_url="",
                        api_key=API_KEY, var_dir=tmp_path / "var")
    server = TestServer(build_app(config, signalling_config), host="127.0.0.1")
    client: GateClient = TestClient(server)
    await client.start_server()
    try:
        room = await book_now(client)
        professional, _ = await join(client, room["professional"])
        patient, _ = await join(client, room["client"])
        readers = [asyncio.create_task(read_until_closed(ws)) for ws in (professional, patient)]
        await server.close()
        await asyncio.gather(*readers)
        assert (professional.close_code, patient.close_code) == (1001, 1001)
    finally:
        await client.close()


# -- 1008 -------------------------------------------------------------------------------


async def test_1008_foreign_origin_is_refused(service: GateClient) -> None:
    """An Origin outside the allow-list gets origin_not_allowed and close 1008."""
    room = await book_now(service)
    code, codes = await refused(service, hello(room["client"]),
                                headers={"Origin": "https://evil.example"})
    assert (code, codes) == (1008, ["origin_not_allowed"])


async def test_1008_own_and_local_dev_origins_are_accepted(service: GateClient) -> None:
    """The server's own origin and http://localhost:3000 may open the socket."""
    room = await book_now(service)
    own = f"http://127.0.0.1:{service.port}"
    for role, origin in (("professional", own), ("client", "http://localhost:3000")):
        ws = await service.ws_connect("/ws", headers={"Origin": origin})
        await ws.send_json(hello(room[role]))
        welcome = await receive_json(ws)
        assert (welcome["type"], welcome["role"]) == ("welcome", role)
        assert not ws.closed
        await ws.close()


@configured(public_url="https://care.example")
async def test_1008_public_url_origin_is_accepted_and_look_alikes_are_not(
        service: GateClient) -> None:
    """The configured public origin is allowed; a look-alike host is refused with 1008."""
    room = await book_now(service)
    code, codes = await refused(service, hello(room["client"]),
                                headers={"Origin": "https://care.example.evil"})
    assert (code, codes) == (1008, ["origin_not_allowed"])
    ws = await service.ws_connect("/ws", headers={"Origin": "https://care.example"})
    await ws.send_json(hello(room["client"]))
    assert (await receive_json(ws))["type"] == "welcome"
    await ws.close()


# -- 1009 -------------------------------------------------------------------------------


async def test_1009_message_over_64_kib_closes_the_socket(service: GateClient) -> None:
    """A 70 KiB text frame after welcome is refused with close 1009."""
    room = await book_now(service)
    ws, _ = await join(service, room["client"])
    await ws.send_str(json.dumps({"type": "x-big", "pad": "a" * (70 * 1024)}))
    await read_until_closed(ws)
    assert ws.close_code == 1009


# -- 4400 -------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [
    pytest.param("{not json", id="not-json"),
    pytest.param({"type": "subscribe"}, id="unknown-type"),
    pytest.param({"type": "signal", "candidate": {"candidate": "", "sdpMid": "0",
                                                  "sdpMLineIndex": 0}}, id="signal-first"),
])
async def test_4400_malformed_first_message(service: GateClient,
                                            first: str | dict[str, Any]) -> None:
    """Not JSON, an unknown type, or anything but hello first: malformed_message, 4400."""
    code, codes = await refused(service, first)
    assert (code, codes) == (4400, ["malformed_message"])


async def test_4400_second_hello(service: GateClient) -> None:
    """A second hello on an admitted connection is malformed: 4400."""
    room = await book_now(service)
    ws, _ = await join(service, room["client"])
    await ws.send_json(hello(room["client"]))
    received = await read_until_closed(ws)
    assert (ws.close_code, errors(received)) == (4400, ["malformed_message"])


# -- 4401 -------------------------------------------------------------------------------


async def test_4401_garbage_token(service: GateClient) -> None:
    """A token that is not a JWT at all is invalid_token, 4401."""
    await book_now(service)
    code, codes = await refused(service, hello("not-a-token.at.all"))
    assert (code, codes) == (4401, ["invalid_token"])


async def test_4401_token_signed_by_another_ed25519_key(service: GateClient) -> None:
    """The same claims signed with a key that is not the gate's are refused with 4401."""
    room = await book_now(service)
    forged = jwt.encode(claims_of(room["client"]), Ed25519PrivateKey.generate(),
                        algorithm="EdDSA")
    code, codes = await refused(service, hello(forged))
    assert (code, codes) == (4401, ["invalid_token"])


async def test_4401_hs256_token(service: GateClient) -> None:
    """The same claims as an HS256 token (algorithm confusion) are refused with 4401."""
    room = await book_now(service)
    forged = jwt.encode(claims_of(room["client"]), "k" * 32, algorithm="HS256")
    code, codes = await refused(service, hello(forged))
    assert (code, codes) == (4401, ["invalid_token"])


# -- 4403 -------------------------------------------------------------------------------


async def test_4403_cancelled_booking(service: GateClient) -> None:
    """A link of a cancelled booking is refused with booking_cancelled, 4403."""
    room = await book_now(service)
    response = await service.post("/api/v1/bookings/b-1/cancel", headers=AUTH,
                                  json={"by": "professional"})
    assert response.status == 200, await response.text()
    code, codes = await refused(service, hello(room["client"]))
    assert (code, codes) == (4403, ["booking_cancelled"])


async def test_4403_rescheduled_booking_old_token(service: GateClient) -> None:
    """After a reschedule the old link is refused with booking_rescheduled, 4403."""
    room = await book_now(service)
    start = datetime.now(UTC) + timedelta(minutes=5)
    response = await service.post("/api/v1/bookings/b-1/reschedule", headers=AUTH, json={
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=50)).isoformat(),
        "by": "client"})
    assert response.status == 200, await response.text()
    code, codes = await refused(service, hello(room["professional"]))
    assert (code, codes) == (4403, ["booking_rescheduled"])


async def test_4403_room_query_differs_from_the_tokens_room(service: GateClient) -> None:
    """``?room=`` naming another room than the token's is wrong_room, 4403."""
    room = await book_now(service)
    other = secrets.token_urlsafe(24)
    assert other != room["room_id"]
    code, codes = await refused(service, hello(room["client"]), path=f"/ws?room={other}")
    assert (code, codes) == (4403, ["wrong_room"])


# -- 4404 -------------------------------------------------------------------------------


async def test_4404_validly_signed_token_for_an_unknown_room(service: GateClient) -> None:
    """A genuine gate signature over a room that does not exist is unknown_room, 4404."""
    room = await book_now(service)
    gate = service.app[SERVICE]
    booking = await gate.room_booking(room["room_id"])
    assert booking is not None
    ghost = dataclasses.replace(booking, room_id=secrets.token_urlsafe(24))
    token = gate.tokens.issue(ghost, Role.CLIENT, datetime.now(UTC)).token
    code, codes = await refused(service, hello(token))
    assert (code, codes) == (4404, ["unknown_room"])


# -- 4408 -------------------------------------------------------------------------------


@configured(hello_timeout=0.5)
async def test_4408_no_hello_in_time(service: GateClient) -> None:
    """A socket that says nothing is closed with hello_timeout, 4408, after the limit."""
    started = time.monotonic()
    ws = await service.ws_connect("/ws")
    received = await read_until_closed(ws)
    elapsed = time.monotonic() - started
    assert (ws.close_code, errors(received)) == (4408, ["hello_timeout"])
    assert 0.4 <= elapsed < 3.0


# -- 4409 -------------------------------------------------------------------------------


async def test_4409_same_role_twice_replaces_the_first(service: GateClient) -> None:
    """A second connection of the same role closes the first with replaced, 4409."""
    room = await book_now(service)
    first, _ = await join(service, room["professional"])
    second, welcome = await join(service, room["professional"])
    received = await read_until_closed(first)
    assert (first.close_code, errors(received)) == (4409, ["replaced"])
    assert welcome["role"] == "professional"
    await second.send_json({"type": "x-still-there"})
    assert (await receive_json(second))["code"] == "peer_absent"
    assert not second.closed
    await second.close()


# -- 4410 -------------------------------------------------------------------------------


async def test_4410_too_early_names_the_start_time(service: GateClient) -> None:
    """Two hours before the start the join is too_early (4410) and says when it starts."""
    room = await book_now(service, "b-early", start_offset=2 * 3600)
    ws = await service.ws_connect("/ws")
    await ws.send_json(hello(room["client"]))
    received = await read_until_closed(ws)
    assert (ws.close_code, errors(received)) == (4410, ["too_early"])
    starts_at = datetime.fromisoformat(room["booking"]["starts_at"])
    assert starts_at.strftime("%Y-%m-%dT%H:%M:%SZ") in received[0]["message"]


async def test_4410_session_over(service: GateClient) -> None:
    """A booking that ended two hours ago is session_over, 4410."""
    room = await book_now(service, "b-past", start_offset=-3 * 3600, minutes=60)
    code, codes = await refused(service, hello(room["professional"]))
    assert (code, codes) == (4410, ["session_over"])


# -- 4429 -------------------------------------------------------------------------------


async def test_4429_message_flood(service: GateClient,
                                  signalling_config: SignallingConfig) -> None:
    """1,000 messages sent at once exceed the burst and close the socket with 4429."""
    room = await book_now(service)
    ws, _ = await join(service, room["client"])
    for seq in range(1000):
        try:
            await ws.send_json({"type": "x-flood", "seq": seq})
        except ConnectionError:
            break  # the server has already closed the connection
    received = await read_until_closed(ws)
    codes = errors(received)
    assert ws.close_code == 4429
    assert codes[-1] == "rate_limited"
    accepted = codes.count("peer_absent")
    assert signalling_config.message_burst <= accepted < 1000


@configured(failed_admissions_burst=3.0, failed_admissions_per_minute=0.5)
async def test_4429_after_too_many_refused_joins_from_one_address(
        service: GateClient) -> None:
    """After the failed-admission burst, 127.0.0.1 gets 4429 even with a valid token."""
    room = await book_now(service)
    for _ in range(3):
        assert (await refused(service, hello("garbage")))[0] == 4401
    ws = await service.ws_connect("/ws")
    await ws.send_json(hello(room["client"]))
    received = await read_until_closed(ws)
    assert (ws.close_code, errors(received)) == (4429, ["rate_limited"])


# -- relaying and presence --------------------------------------------------------------


async def test_signal_and_extension_messages_are_relayed_with_from(
        service: GateClient) -> None:
    """signal and x- messages reach the other party unchanged plus ``from``."""
    room = await book_now(service)
    professional, _ = await join(service, room["professional"])
    patient, _ = await join(service, room["client"])
    assert (await receive_json(professional))["type"] == "peer-joined"
    verify = {"type": "x-verify", "code": "4711", "nested": {"a": [1, 2]}}
    await professional.send_json(verify)
    assert await receive_json(patient) == {**verify, "from": "professional"}
    candidate = {"type": "signal", "candidate": {
        "candidate": "candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host",
        "sdpMid": "0", "sdpMLineIndex": 0}}
    await patient.send_json(candidate)
    assert await receive_json(professional) == {**candidate, "from": "client"}
    await professional.close()
    await patient.close()


async def test_peer_absent_when_alone_and_the_connection_stays_open(
        service: GateClient) -> None:
    """With nobody to relay to, the sender gets peer_absent and stays connected."""
    room = await book_now(service)
    ws, welcome = await join(service, room["client"])
    assert welcome["peer_present"] is False
    offer = {"type": "signal", "description": {"type": "offer", "sdp": "v=0\r\n"}}
    for message in (offer, {"type": "x-verify", "code": "1"}):
        await ws.send_json(message)
        reply = await receive_json(ws)
        assert (reply["type"], reply["code"]) == ("error", "peer_absent")
    assert not ws.closed
    await ws.close()


async def test_peer_joined_and_peer_left_with_reasons(service: GateClient) -> None:
    """The other party hears peer-joined, then peer-left with reason bye or dropped."""
    room = await book_now(service)
    professional, _ = await join(service, room["professional"])
    patient, welcome = await join(service, room["client"])
    assert welcome["peer_present"] is True
    joined = await receive_json(professional)
    assert (joined["type"], joined["role"], joined["resumed"]) == ("peer-joined", "client", False)

    await patient.send_json({"type": "bye"})
    await read_until_closed(patient)
    assert patient.close_code == 1000
    assert await receive_json(professional) == {"type": "peer-left", "role": "client",
                                                "reason": "bye"}

    patient, _ = await join(service, room["client"])
    assert (await receive_json(professional))["type"] == "peer-joined"
    await patient.close()  # a lost connection: no bye
    assert await receive_json(professional) == {"type": "peer-left", "role": "client",
                                                "reason": "dropped"}
    await professional.close()


@configured(grace=timedelta(seconds=0.3), sweep_interval=0.05)
async def test_peer_left_timeout_when_the_grace_period_runs_out(service: GateClient) -> None:
    """A dropped party that does not come back within grace is reported gone: timeout."""
    room = await book_now(service)
    professional, _ = await join(service, room["professional"])
    patient, _ = await join(service, room["client"])
    assert (await receive_json(professional))["type"] == "peer-joined"
    await patient.close()
    assert (await receive_json(professional))["reason"] == "dropped"
    assert await receive_json(professional, timeout=3.0) == {
        "type": "peer-left", "role": "client", "reason": "timeout"}
    await professional.close()


@pytest.mark.parametrize("aiortc_role", ["professional", "client"])
@pytest.mark.parametrize("aiortc_first", [True, False], ids=["aiortc-first", "browser-first"])
async def test_browser_is_polite_towards_aiortc(service: GateClient, aiortc_role: str,
                                                aiortc_first: bool) -> None:
    """Between a browser and aiortc (no rollback) the browser is polite, whoever joins first."""
    room = await book_now(service)
    browser_role = "client" if aiortc_role == "professional" else "professional"
    order = [(aiortc_role, "aiortc"), (browser_role, "browser")]
    if not aiortc_first:
        order.reverse()
    sockets, polite = {}, {}
    for role, agent in order:
        sockets[role], welcome = await join(service, room[role], agent=agent)
        polite[role] = welcome["polite"]
    assert polite[aiortc_role] is False  # not even provisionally, when alone
    first_role = order[0][0]
    joined = await receive_json(sockets[first_role])
    assert joined["type"] == "peer-joined"
    polite[first_role] = joined["polite"]  # the first one's role is settled when both are in
    assert polite == {browser_role: True, aiortc_role: False}
    for ws in sockets.values():
        await ws.close()


# -- cancellation during a call ---------------------------------------------------------


async def test_cancel_during_a_call_closes_both_sockets_within_5_s(
        service: GateClient) -> None:
    """Cancelling a booking in progress closes both parties' sockets with 4403 in < 5 s."""
    room = await book_now(service)
    professional, _ = await join(service, room["professional"])
    patient, _ = await join(service, room["client"])
    assert (await receive_json(professional))["type"] == "peer-joined"
    readers = [asyncio.create_task(read_until_closed(ws)) for ws in (professional, patient)]
    started = time.monotonic()
    response = await service.post("/api/v1/bookings/b-1/cancel", headers=AUTH,
                                  json={"by": "client"})
    assert response.status == 200, await response.text()
    received = await asyncio.gather(*readers)
    elapsed = time.monotonic() - started
    print(f"cancel to both sockets closed: {elapsed * 1000:.1f} ms")
    assert (professional.close_code, patient.close_code) == (4403, 4403)
    assert all(errors(r)[-1] == "booking_cancelled" for r in received)
    assert elapsed < 5.0


# -- resume -----------------------------------------------------------------------------


async def attendance(service: GateClient) -> dict[str, Any]:
    response = await service.get("/api/v1/bookings/b-1/attendance", headers=AUTH)
    assert response.status == 200, await response.text()
    record: dict[str, Any] = await response.json()
    return record


async def test_resume_keeps_the_session_and_one_attendance_interval(
        service: GateClient) -> None:
    """Resuming keeps the session, tells the peer resumed, and leaves one interval per party."""
    room = await book_now(service)
    professional, _ = await join(service, room["professional"])
    patient, welcome = await join(service, room["client"])
    assert (await receive_json(professional))["resumed"] is False

    await patient.close()  # dropped, not bye
    assert (await receive_json(professional))["reason"] == "dropped"
    patient, again = await join(service, room["client"], resume=welcome["resume"])
    assert again["session_id"] == welcome["session_id"]
    joined = await receive_json(professional)
    assert (joined["type"], joined["role"], joined["resumed"]) == ("peer-joined", "client", True)

    deadline = time.monotonic() + 3.0
    record = await attendance(service)
    while not all(record["parties"][role]["intervals"] for role in ("professional", "client")):
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.05)
        record = await attendance(service)
    await asyncio.wait_for(service.app[REPORTER].drain(), 3.0)
    record = await attendance(service)
    for role in ("professional", "client"):
        intervals = record["parties"][role]["intervals"]
        assert len(intervals) == 1 and intervals[0]["to"] is None, (role, intervals)
    await patient.close()
    await professional.close()


async def test_page_assets_must_be_revalidated(service: Any) -> None:
    """The web client's modules are served with Cache-Control: no-cache."""
    response = await service.get("/s/assets/app.js")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-cache"
