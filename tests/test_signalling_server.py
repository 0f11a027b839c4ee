"""The ``/ws`` signalling endpoint end to end: every close code of docs/contract.md section 4,
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from booking_gate.appkeys import SERVICE
from booking_gate.config import GateConfig
from booking_gate.model import Role
from booking_gate.tokens import public_jwk
from carecall.serve import build_app
from signalling.appkeys import REPORTER
from signalling.config import SignallingConfig
from signalling.messages import MAX_MESSAGE_BYTES, TOO_BIG, rfc3339
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


Frame = str | bytes | dict[str, Any]


async def refusal(client: GateClient, first: Frame, *, path: str = "/ws",
                  headers: dict[str, str] | None = None
                  ) -> tuple[int | None, list[tuple[str, str]]]:
    """Connect, send ``first`` (a hello, raw text or bytes), and return the close code and
    the (code, message) of each error received."""
    ws = await client.ws_connect(path, headers=headers)
    if isinstance(first, str):
        await ws.send_str(first)
    elif isinstance(first, bytes):
        await ws.send_bytes(first)
    else:
        await ws.send_json(first)
    received = await read_until_closed(ws)
    return ws.close_code, [(m["code"], m["message"]) for m in received
                           if m.get("type") == "error"]


async def refused(client: GateClient, first: Frame, *, path: str = "/ws",
                  headers: dict[str, str] | None = None) -> tuple[int | None, list[str]]:
    """Connect, send ``first``, and return the close code and the error codes."""
    code, received = await refusal(client, first, path=path, headers=headers)
    return code, [error_code for error_code, _ in received]


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def gate_key(tmp_path: Path) -> Ed25519PrivateKey:
    """The private key the service fixture's gate signs with (its var/signing_key.pem)."""
    key = serialization.load_pem_private_key(
        (tmp_path / "var" / "signing_key.pem").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def resigned(token: str, key: Ed25519PrivateKey, *, kid: str | None = "same",
             **changes: Any) -> str:
    """``token``'s claims with ``changes``, signed by ``key`` under ``kid`` ("same": the
    token's own kid; None: no kid at all)."""
    if kid == "same":
        kid = jwt.get_unverified_header(token)["kid"]
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode({**claims_of(token), **changes}, key, algorithm="EdDSA",
                      headers=headers)


def frame_of(size: int) -> str:
    """An ``x-`` message of exactly ``size`` bytes of UTF-8."""
    empty = json.dumps({"type": "x-big", "pad": ""})
    return json.dumps({"type": "x-big", "pad": "a" * (size - len(empty))})


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
    """A 70 KiB text frame after welcome gets message_too_big, then close 1009."""
    room = await book_now(service)
    ws, _ = await join(service, room["client"])
    await ws.send_str(json.dumps({"type": "x-big", "pad": "a" * (70 * 1024)}))
    received = await read_until_closed(ws)
    assert ws.close_code == 1009
    assert [(m["type"], m["code"], m["message"]) for m in received] == [
        ("error", "message_too_big", TOO_BIG)]


async def test_1009_exactly_64_kib_is_allowed_and_one_byte_more_is_not(
        service: GateClient) -> None:
    """A frame of 65,536 bytes is handled (peer_absent); one of 65,537 is error + 1009."""
    room = await book_now(service)
    ws, _ = await join(service, room["client"])
    exact = frame_of(MAX_MESSAGE_BYTES)
    assert len(exact.encode()) == 65_536
    await ws.send_str(exact)
    reply = await receive_json(ws)
    assert (reply["type"], reply["code"]) == ("error", "peer_absent")
    assert not ws.closed
    await ws.send_str(frame_of(MAX_MESSAGE_BYTES + 1))
    received = await read_until_closed(ws)
    assert ws.close_code == 1009
    assert errors(received) == ["message_too_big"]
    assert received[-1]["message"] == "a message may be at most 65536 bytes (64 KiB)"


async def test_1009_oversized_hello(service: GateClient) -> None:
    """A first frame over 64 KiB is refused like every other: error message, then 1009."""
    room = await book_now(service)
    big_hello = json.dumps({**hello(room["client"]), "pad": "a" * MAX_MESSAGE_BYTES})
    code, received = await refusal(service, big_hello)
    assert (code, received) == (1009, [("message_too_big", TOO_BIG)])


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


@pytest.mark.parametrize("first", [
    pytest.param({"type": "hello"}, id="no-token"),
    pytest.param({"type": "hello", "token": ""}, id="empty-token"),
    pytest.param({"type": "hello", "token": None}, id="null-token"),
    pytest.param({"type": "hello", "token": 12345}, id="number-token"),
    pytest.param({"type": "hello", "token": ["a.b.c"]}, id="list-token"),
])
async def test_4401_token_missing(service: GateClient, first: dict[str, Any]) -> None:
    """A hello without a usable token string is token_missing, 4401 (not 4400)."""
    code, received = await refusal(service, first)
    assert (code, received) == (4401, [("token_missing", "'token' must be a non-empty string")])


async def test_4401_token_too_long(service: GateClient) -> None:
    """A token over 4,096 characters is a malformed token: invalid_token, 4401."""
    code, received = await refusal(service, hello("a" * 4097))
    assert (code, received) == (4401, [
        ("invalid_token", "'token' must be at most 4096 characters")])


async def test_4400_other_malformed_hello_fields_stay_4400(service: GateClient) -> None:
    """A hello with a token but a bad agent is still malformed_message, 4400."""
    room = await book_now(service)
    code, received = await refusal(service, {**hello(room["client"]), "agent": "curl"})
    assert (code, received) == (4400, [
        ("malformed_message", "'agent' must be one of browser, aiortc (got 'curl')")])


async def test_4401_gate_signed_token_without_kid(service: GateClient,
                                                  tmp_path: Path) -> None:
    """Even signed by the gate's own key, a token whose header has no kid is refused."""
    room = await book_now(service)
    token = resigned(room["client"], gate_key(tmp_path), kid=None)
    code, received = await refusal(service, hello(token))
    assert (code, received) == (4401, [
        ("invalid_token", "the join token names no signing key ('kid')")])


async def test_4401_unknown_kid(service: GateClient, tmp_path: Path) -> None:
    """A kid the gate does not publish is refused with 4401, whatever key signed it."""
    room = await book_now(service)
    stranger = Ed25519PrivateKey.generate()
    for key, kid in ((gate_key(tmp_path), "no-such-key"),
                     (stranger, public_jwk(stranger.public_key())["kid"])):
        code, received = await refusal(service, hello(resigned(room["client"], key, kid=kid)))
        assert (code, received) == (4401, [
            ("invalid_token", "the join token is signed with an unknown key ('kid')")])


async def test_4401_gate_kid_but_another_key(service: GateClient) -> None:
    """A token naming the gate's kid but signed by another key fails its signature: 4401."""
    room = await book_now(service)
    forged = resigned(room["client"], Ed25519PrivateKey.generate())
    code, received = await refusal(service, hello(forged))
    assert (code, received) == (4401, [
        ("invalid_token", "the join token is not valid (InvalidSignatureError)")])


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
    booking, _ = (await gate.room_admissions([room["room_id"]]))[room["room_id"]]
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


async def test_4410_too_early_also_names_the_opening_time(service: GateClient) -> None:
    """The too_early message names both times the web page reads (starts at, opens at)."""
    room = await book_now(service, "b-early", start_offset=2 * 3600)
    code, received = await refusal(service, hello(room["professional"]))
    starts_at = datetime.fromisoformat(room["booking"]["starts_at"])
    opens_at = datetime.fromtimestamp(claims_of(room["professional"])["nbf"], UTC)
    assert (code, received) == (4410, [(
        "too_early", f"too early: the session starts at {rfc3339(starts_at)} and the room "
                     f"opens at {rfc3339(opens_at)}")])


async def test_4410_gate_signed_token_past_its_exp(service: GateClient,
                                                   tmp_path: Path) -> None:
    """A gate-signed token whose own exp has passed is session_over (4410), although the
    booking's window is open and the token no longer matches it (not 4403)."""
    room = await book_now(service)
    now = int(time.time())
    token = resigned(room["client"], gate_key(tmp_path), nbf=now - 7200, exp=now - 60)
    code, received = await refusal(service, hello(token))
    assert (code, received) == (4410, [("session_over", "this session is over")])


async def test_4410_gate_signed_token_before_its_nbf(service: GateClient,
                                                     tmp_path: Path) -> None:
    """A gate-signed token whose own nbf is ahead is too_early (4410), naming that time."""
    room = await book_now(service)
    nbf = int(time.time()) + 3600
    token = resigned(room["client"], gate_key(tmp_path), nbf=nbf, exp=nbf + 7200)
    code, received = await refusal(service, hello(token))
    opens = rfc3339(datetime.fromtimestamp(nbf, UTC))
    assert (code, received) == (4410, [("too_early", f"too early: the room opens at {opens}")])


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


RATE_LIMITED = ("rate_limited", "too many refused joins from this address; wait a minute")


@configured(failed_admissions_burst=3.0, failed_admissions_per_minute=0.5)
async def test_4429_after_too_many_refused_joins_from_one_address(
        service: GateClient) -> None:
    """After the failed-join burst, 127.0.0.1's bad tokens get 4429; a valid one gets in."""
    room = await book_now(service)
    for _ in range(3):
        assert await refusal(service, hello("garbage")) == (4401, [
            ("invalid_token", "the join token is not valid (DecodeError)")])
    assert await refusal(service, hello("garbage")) == (4429, [RATE_LIMITED])
    ws, welcome = await join(service, room["client"])
    assert welcome["role"] == "client"
    await ws.close()


GARBAGE: list[Frame] = [
    "{not json", "[]", "null", '{"type":1}', '{"type":"hello"}', "\x00\x00\x00\x00",
    b"\x00\x00\x00\x00",
]
OWN_CODES = {(4400, "malformed_message"), (4401, "token_missing")}


@configured(rate_limited_delay=0.05)
async def test_garbage_from_an_address_never_locks_out_its_genuine_parties(
        service: GateClient) -> None:
    """120 malformed joins from 127.0.0.1 (default budget: 20) do not stop both genuine
    parties from that address being admitted, while its invalid tokens still get 4429."""
    room = await book_now(service)
    started = time.monotonic()
    outcomes: list[tuple[int | None, list[str]]] = []
    for batch in range(12):
        outcomes += await asyncio.gather(*(
            refused(service, GARBAGE[(batch * 10 + i) % len(GARBAGE)]) for i in range(10)))
    elapsed = time.monotonic() - started
    own = [o for o in outcomes if o[1] and (o[0], o[1][0]) in OWN_CODES]
    limited = [o for o in outcomes if o == (4429, ["rate_limited"])]
    refilled = int(elapsed * 10 / 60)  # the default refill: 10 a minute
    print(f"120 garbage joins in {elapsed:.2f} s: {len(own)} own reason, "
          f"{len(limited)} rate limited")
    assert len(own) + len(limited) == 120, outcomes
    assert 20 <= len(own) <= 20 + refilled

    professional, welcome = await join(service, room["professional"])
    assert welcome["role"] == "professional"
    patient, welcome = await join(service, room["client"])
    assert (welcome["role"], welcome["peer_present"]) == ("client", True)
    assert (await receive_json(professional))["type"] == "peer-joined"

    forged = resigned(room["client"], Ed25519PrivateKey.generate())
    for bad in (hello("garbage"), hello(forged), {"type": "hello"}, "{not json"):
        assert await refusal(service, bad) == (4429, [RATE_LIMITED])
    await professional.close()
    await patient.close()


@configured(failed_admissions_burst=1.0, failed_admissions_per_minute=0.5,
            rate_limited_delay=1.5)
async def test_4429_is_slowed_down_and_genuine_tokens_are_not(service: GateClient) -> None:
    """Past the budget, a bad token waits rate_limited_delay before 4429; a gate-signed
    token from the same address gets its own answer (too_early, welcome) without delay."""
    room = await book_now(service)
    early = await book_now(service, "b-early", start_offset=2 * 3600)
    assert (await refused(service, hello("garbage")))[0] == 4401

    started = time.monotonic()
    assert await refusal(service, hello("garbage")) == (4429, [RATE_LIMITED])
    slowed = time.monotonic() - started

    started = time.monotonic()
    assert await refused(service, hello(early["client"])) == (4410, ["too_early"])
    ws, _ = await join(service, room["client"])
    prompt = time.monotonic() - started
    print(f"over budget: 4429 after {slowed:.2f} s; genuine answers in {prompt:.3f} s")
    assert 1.4 <= slowed < 10.0
    assert prompt < 1.4
    await ws.close()


@configured(failed_admissions_burst=1.0, failed_admissions_per_minute=0.5)
async def test_genuine_but_refused_tokens_keep_their_reason_past_the_budget(
        service: GateClient) -> None:
    """A cancelled booking's link from an address over its budget still hears 4403
    booking_cancelled, not 4429: the token is the gate's, not a guess."""
    room = await book_now(service)
    assert (await refused(service, "{not json"))[0] == 4400
    assert await refused(service, "{not json") == (4429, ["rate_limited"])
    response = await service.post("/api/v1/bookings/b-1/cancel", headers=AUTH,
                                  json={"by": "professional"})
    assert response.status == 200, await response.text()
    assert await refused(service, hello(room["client"])) == (4403, ["booking_cancelled"])


# -- signing key rotation --------------------------------------------------------------


async def test_a_retired_signing_key_is_published_and_still_admits(
        tmp_path: Path, signalling_config: SignallingConfig) -> None:
    """With a retired key configured, the JWKS lists both keys (signing key first), and
    tokens signed by either are admitted and accepted by the in-call API."""
    retired = Ed25519PrivateKey.generate()
    retired_pem = tmp_path / "retired.pem"
    retired_pem.write_bytes(retired.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    config = GateConfig(db_url=f"sqlite:///{tmp_path / 'gate.db'}", public_url="",
                        api_key=API_KEY, var_dir=tmp_path / "var",
                        retired_key_paths=(retired_pem,))
    client: GateClient = TestClient(TestServer(build_app(config, signalling_config),
                                               host="127.0.0.1"))
    await client.start_server()
    try:
        room = await book_now(client)
        retired_kid = public_jwk(retired.public_key())["kid"]
        current_kid = jwt.get_unverified_header(room["professional"])["kid"]
        jwks = await (await client.get("/.well-known/jwks.json")).json()
        assert [key["kid"] for key in jwks["keys"]] == [current_kid, retired_kid]
        assert jwks["keys"][1] == public_jwk(retired.public_key())

        old_link = resigned(room["client"], retired, kid=retired_kid)
        response = await client.get(f"/api/v1/rooms/{room['room_id']}/next-slots",
                                    headers={"Authorization": f"Bearer {old_link}"})
        assert response.status == 200, await response.text()
        unknown = resigned(room["client"], retired, kid="retired-long-ago")
        response = await client.get(f"/api/v1/rooms/{room['room_id']}/next-slots",
                                    headers={"Authorization": f"Bearer {unknown}"})
        assert response.status == 401, await response.text()
        patient, welcome = await join(client, old_link)
        assert welcome["role"] == "client"
        professional, welcome = await join(client, room["professional"])
        assert welcome["peer_present"] is True

        # A retired kid over a signature of another key is still a forgery.
        mixed = resigned(room["client"], gate_key(tmp_path), kid=retired_kid)
        assert await refused(client, hello(mixed)) == (4401, ["invalid_token"])
        await patient.close()
        await professional.close()
    finally:
        await client.close()


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


@configured(trusted_proxies=("127.0.0.0/8",), failed_admissions_burst=2.0,
            failed_admissions_per_minute=0.5, rate_limited_delay=0.05)
async def test_behind_a_trusted_proxy_network_each_forwarded_client_has_its_own_budget(
        service: GateClient) -> None:
    """With 127.0.0.0/8 trusted, refused joins count against the address the proxy put in
    X-Forwarded-For: one client spends its budget (4429) while another behind the same
    proxy still gets its own reason."""
    one = {"X-Forwarded-For": "203.0.113.5"}
    other = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(2):
        assert (await refused(service, hello("garbage"), headers=one)) == (
            4401, ["invalid_token"])
    assert await refused(service, hello("garbage"), headers=one) == (4429, ["rate_limited"])
    assert await refused(service, hello("garbage"), headers=other) == (
        4401, ["invalid_token"])
