"""signalling.gate_http: HttpGate against a real gate app (SQLite and PostgreSQL), and its
pure parts. The gate is stopped and started on its port; the link's clock is driven."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from booking_gate.tokens import load_or_create_key, public_jwk
from carecall.wiring import InProcessGate
from signalling import tokens
from signalling.errors import GateRefused, GateUnavailable
from signalling.gate import AttendanceReport, RoomBooking
from signalling.gate_http import (
    HttpGate,
    KeySchedule,
    RoomCache,
    is_room_id,
    parse_jwks,
    parse_max_age,
    report_bodies,
    room_batches,
)
from tests.conftest import API_KEY, FakeClock
from tests.gates import GateRunner, seed_rooms

ROOMS_PATH = "/api/v1/signalling/rooms"
JWKS_PATH = "/.well-known/jwks.json"
EVENTS_PATH = "/api/v1/attendance/events"


class Ticks:
    """A monotonic clock in seconds, driven by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
async def gate(gate_config: Any, clock: FakeClock,
               aiohttp_server: Callable[..., Any]) -> GateRunner:
    runner = GateRunner(gate_config, clock, aiohttp_server)
    await runner.start()
    return runner


@pytest.fixture
async def link(gate: GateRunner, ticks: Ticks) -> AsyncIterator[HttpGate]:
    link = HttpGate(gate.url, API_KEY, clock=ticks)
    await link.start()
    yield link
    await link.close()


async def join_token(gate: GateRunner, booking_id: str = "b-plain") -> str:
    async with gate.api() as api:
        response = await api.post(f"/api/v1/bookings/{booking_id}/links")
        assert response.status == 200, await response.text()
        token: str = (await response.json())["client"]["url"].split("#t=")[1]
    return token


def events(booking_id: str, count: int, prefix: str = "e") -> list[AttendanceReport]:
    at = datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)
    return [AttendanceReport(f"{prefix}-{i}", booking_id, "client",
                             "joined" if i % 2 == 0 else "left", at + timedelta(seconds=i))
            for i in range(count)]


# -- rooms ---------------------------------------------------------------------------


async def test_rooms_agree_with_the_in_process_gate(gate: GateRunner, link: HttpGate) -> None:
    """room() and rooms() answer what InProcessGate answers: plain, cancelled, rescheduled
    (changed_at to the microsecond) and unknown rooms."""
    rooms = await seed_rooms(gate)
    local = InProcessGate(gate.app)
    asked = [*rooms.values(), "no-such-room"]
    for room_id in asked:
        assert await link.room(room_id) == await local.room(room_id)
    assert await link.rooms(asked) == await local.rooms(asked)
    moved = await link.room(rooms["rescheduled"])
    cancelled = await link.room(rooms["cancelled"])
    assert moved is not None and moved.changed_at.microsecond != 0
    assert cancelled is not None and cancelled.cancelled
    assert await link.room("no-such-room") is None


async def test_revalidation_asks_in_batches_of_1000(gate: GateRunner, link: HttpGate) -> None:
    """rooms() of 1,503 rooms sends two requests and answers every room like the gate."""
    rooms = await seed_rooms(gate)
    asked = [*rooms.values(), *(f"unknown-{i}" for i in range(1500))]
    answer = await link.rooms(asked)
    assert gate.paths[ROOMS_PATH] == 2
    assert answer == await InProcessGate(gate.app).rooms(asked)
    assert sum(booking is not None for booking in answer.values()) == 3


async def test_ids_the_gate_never_makes_are_unknown_without_asking(gate: GateRunner,
                                                                   link: HttpGate) -> None:
    """A room id off the gate's alphabet (or a dot segment) is None, with no request."""
    assert await link.room("..") is None
    assert await link.room("a/b") is None
    assert await link.rooms(["x y", "."]) == {"x y": None, ".": None}
    assert not any(path.startswith(ROOMS_PATH) for path in gate.paths)


async def test_a_wrong_api_key_is_refused_not_retried(gate: GateRunner, ticks: Ticks,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """With a wrong key: report raises GateRefused(401 unauthorized); room and rooms raise
    GateUnavailable and log the refusal once a minute, never the key."""
    await seed_rooms(gate)
    wrong = "wrong-key-5f3a9c"
    link = HttpGate(gate.url, wrong, clock=ticks)
    try:
        with pytest.raises(GateRefused) as refused:
            await link.report(events("b-plain", 1))
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        caplog.set_level(logging.ERROR, logger="signalling.gate_http")
        for _ in range(3):
            with pytest.raises(GateUnavailable):
                await link.room("some-room")
        with pytest.raises(GateUnavailable):
            await link.rooms(["some-room"])
    finally:
        await link.close()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == ["the gate refused the room request (401 unauthorized): check the "
                        "gate URL and the API key",
                        "the gate refused the rooms request (401 unauthorized): check the "
                        "gate URL and the API key"]
    assert wrong not in caplog.text and API_KEY not in caplog.text


# -- attendance ----------------------------------------------------------------------


async def test_reports_are_stored_once_in_batches_of_500(gate: GateRunner,
                                                         link: HttpGate) -> None:
    """report() of 600 events sends two requests; the gate stores each event once, with
    its time to the microsecond, however often it is sent."""
    await seed_rooms(gate)
    sent = events("b-plain", 600)
    await link.report(sent)
    assert gate.paths[EVENTS_PATH] == 2
    await link.report(sent[:10])
    stored = (await gate.service.store.events_for(["b-plain"]))["b-plain"]
    assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in sent)
    assert {e.event_id: e.at for e in stored} == {e.event_id: e.at for e in sent}


@pytest.mark.parametrize(("event", "status", "code"), [
    (AttendanceReport("e-1", "b-unknown", "client", "joined",
                      datetime(2026, 11, 23, 9, tzinfo=UTC)), 404, "not_found"),
    (AttendanceReport("e-1", "b-plain", "client", "joined",
                      datetime(2026, 11, 23, 9, tzinfo=UTC), "r" * 65), 422, "invalid_request"),
    (AttendanceReport("e 1", "b-plain", "client", "joined",
                      datetime(2026, 11, 23, 9, tzinfo=UTC)), 422, "invalid_id"),
])
async def test_a_refused_report_raises_gate_refused(gate: GateRunner, link: HttpGate,
                                                    event: AttendanceReport, status: int,
                                                    code: str) -> None:
    """A report the gate answers with 4xx raises GateRefused with its status and code."""
    await seed_rooms(gate)
    with pytest.raises(GateRefused) as refused:
        await link.report([event])
    assert (refused.value.status, refused.value.code) == (status, code)


# -- verification keys ------------------------------------------------------------------


async def test_keys_are_cached_until_max_age(gate: GateRunner, link: HttpGate,
                                             ticks: Ticks) -> None:
    """The JWKS is fetched once, verifies a real join token, and is fetched again only
    once its max-age (300 s) has passed."""
    await seed_rooms(gate)
    token = await join_token(gate)
    key = await link.verification_key(tokens.key_id(token))
    assert key is not None
    assert tokens.verify(token, key).booking_id == "b-plain"
    ticks.advance(299)
    assert await link.verification_key(tokens.key_id(token)) is key
    assert gate.paths[JWKS_PATH] == 1
    ticks.advance(2)
    assert await link.verification_key(tokens.key_id(token)) is not None
    assert gate.paths[JWKS_PATH] == 2


async def test_an_unknown_kid_refetches_at_most_once_per_10_s(gate: GateRunner,
                                                              link: HttpGate,
                                                              ticks: Ticks) -> None:
    """Made-up kids are None; they trigger a refetch only 10 s after the previous one."""
    assert await link.verification_key(gate.service.tokens.kid) is not None
    fetches = []
    for step in (5, 5.5, 0.5, 4, 6):
        ticks.advance(step)
        assert await link.verification_key(f"made-up-{ticks.now}") is None
        fetches.append(gate.paths[JWKS_PATH])
    # t = 5, 10.5 (fetch), 11, 15, 21 (fetch)
    assert fetches == [1, 2, 2, 2, 3]


async def test_concurrent_joins_share_one_fetch(gate: GateRunner, link: HttpGate) -> None:
    """Fifty verification_key calls at once, on a cold cache, fetch the JWKS once."""
    kid = gate.service.tokens.kid
    keys = await asyncio.gather(*(link.verification_key(kid) for _ in range(50)))
    assert all(key is keys[0] is not None for key in keys)
    assert gate.paths[JWKS_PATH] == 1


async def test_a_rotation_is_followed(gate: GateRunner, link: HttpGate, ticks: Ticks) -> None:
    """After the gate rotates to a new key (the old one retired but published), a token of
    the new kid triggers a refetch, and tokens of both keys verify."""
    await seed_rooms(gate)
    old_token = await join_token(gate)
    assert await link.verification_key(tokens.key_id(old_token)) is not None
    await gate.stop()
    new_key = gate.config.var_dir / "signing_key_2.pem"
    load_or_create_key(new_key)
    await gate.start(dataclasses.replace(gate.config, signing_key_path=new_key,
                                         retired_key_paths=(gate.config.key_path,)))
    new_token = await join_token(gate)
    assert tokens.key_id(new_token) != tokens.key_id(old_token)
    ticks.advance(10)
    for token in (new_token, old_token):
        key = await link.verification_key(tokens.key_id(token))
        assert key is not None
        assert tokens.verify(token, key).booking_id == "b-plain"
    assert gate.paths[JWKS_PATH] == 2  # the first fetch, and one refetch for the new kid


# -- the gate away -------------------------------------------------------------------


async def test_known_rooms_are_served_while_the_gate_is_down(
        gate: GateRunner, link: HttpGate, ticks: Ticks,
        caplog: pytest.LogCaptureFixture) -> None:
    """Gate stopped: room() answers a room it knew from its cache, raises GateUnavailable
    for one it never saw; rooms() and report() raise GateUnavailable; the keys stay past
    their max-age; one log line says so, without the gate's address. Back: answers again."""
    rooms = await seed_rooms(gate)
    known = await link.room(rooms["plain"])
    kid = gate.service.tokens.kid
    key = await link.verification_key(kid)
    await gate.stop()
    caplog.set_level(logging.INFO, logger="signalling.gate_http")
    assert await link.room(rooms["plain"]) == known
    with pytest.raises(GateUnavailable):
        await link.room(rooms["cancelled"])
    with pytest.raises(GateUnavailable):
        await link.rooms([rooms["plain"]])
    with pytest.raises(GateUnavailable):
        await link.report(events("b-plain", 1))
    ticks.advance(400)
    assert await link.verification_key(kid) is key
    down = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert down == ["the gate cannot be reached (ClientConnectorError); serving known rooms "
                    "from the cache"]
    assert str(gate.port) not in caplog.text and "127.0.0.1" not in caplog.text
    await gate.start()
    cancelled = await link.room(rooms["cancelled"])
    assert cancelled is not None and cancelled.cancelled
    assert "the gate answers again" in caplog.text


async def test_no_keys_and_no_gate_is_unavailable(ticks: Ticks) -> None:
    """With nothing cached and nothing listening, verification_key raises GateUnavailable,
    and tries again only after 10 s."""
    link = HttpGate(f"http://127.0.0.1:{unused_port()}", API_KEY, clock=ticks)
    try:
        for _ in range(2):
            with pytest.raises(GateUnavailable) as error:
                await link.verification_key("k")
            assert error.value.close_code == 1013
        assert ticks.now - link._keys.last_attempt == 0  # one attempt so far
        ticks.advance(10)
        with pytest.raises(GateUnavailable):
            await link.verification_key("k")
        assert link._keys.last_attempt == ticks.now
    finally:
        await link.close()


async def test_a_gate_that_never_answers_times_out(ticks: Ticks) -> None:
    """A gate that accepts and stays silent costs one timeout: GateUnavailable, bounded."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = HttpGate(f"http://127.0.0.1:{port}", API_KEY, timeout=0.3, clock=ticks)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(GateUnavailable):
            await link.room("some-room")
        with pytest.raises(GateUnavailable):
            await link.report(events("b-1", 1))
        assert loop.time() - started < 3.0
    finally:
        await link.close()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_server_errors_are_unavailable_not_refused(aiohttp_server: Callable[..., Any],
                                                         ticks: Ticks) -> None:
    """A 503 (a proxy before a gate that is down) is GateUnavailable, for reports too."""
    async def down(request: web.Request) -> web.Response:
        return web.Response(status=503, text="<html>down</html>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", down)
    server = await aiohttp_server(app)
    link = HttpGate(f"http://127.0.0.1:{server.port}", API_KEY, clock=ticks)
    try:
        with pytest.raises(GateUnavailable):
            await link.report(events("b-1", 1))
        with pytest.raises(GateUnavailable):
            await link.room("some-room")
    finally:
        await link.close()


@pytest.mark.parametrize(("path", "answer"), [
    (ROOMS_PATH, {"rooms": {}}),
    (f"{ROOMS_PATH}/some-room", web.HTTPNotFound(text="<html>no such page</html>")),
    (ROOMS_PATH, {"rooms": {"some-room": {"room_id": "some-room"}}}),
    (ROOMS_PATH, {"rooms": []}),
    (ROOMS_PATH, "<html>a proxy's page</html>"),
    (f"{ROOMS_PATH}/some-room", {"room_id": "other-room"}),
    (f"{ROOMS_PATH}/some-room", ["not", "a", "room"]),
])
async def test_a_malformed_answer_is_unavailable_never_unknown(
        aiohttp_server: Callable[..., Any], ticks: Ticks, path: str, answer: Any) -> None:
    """An answer that is not the gate's (a room left out or half there, not JSON, a
    proxy's 404 page) is GateUnavailable: it must not pass for "no such room"."""
    async def odd(request: web.Request) -> web.Response:
        if isinstance(answer, web.Response):
            return answer
        if isinstance(answer, str):
            return web.Response(text=answer, content_type="text/html")
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("*", path, odd)
    server = await aiohttp_server(app)
    link = HttpGate(f"http://127.0.0.1:{server.port}", API_KEY, clock=ticks)
    try:
        with pytest.raises(GateUnavailable):
            if path == ROOMS_PATH:
                await link.rooms(["some-room"])
            else:
                await link.room("some-room")
    finally:
        await link.close()


async def test_a_closed_link_makes_no_requests(gate: GateRunner, ticks: Ticks) -> None:
    """After close(), calls raise GateUnavailable and open no new session."""
    link = HttpGate(gate.url, API_KEY, clock=ticks)
    await link.close()
    with pytest.raises(GateUnavailable):
        await link.room("some-room")
    assert link._session is None and gate.paths == {}


@pytest.mark.parametrize(("url", "key"), [
    ("ftp://gate.example", "k"), ("gate.example:8081", "k"), ("http://", "k"),
    ("http://user:secret@gate.example", "k"), ("http://gate.example/?key=x", "k"),
    ("http://gate.example", ""),
])
def test_a_bad_gate_url_or_key_is_refused_at_start(url: str, key: str) -> None:
    """An unusable URL, one with credentials or a query, or no key: ValueError."""
    with pytest.raises(ValueError, match=r"gate URL|API key") as error:
        HttpGate(url, key)
    assert "secret" not in str(error.value)


# -- pure parts ----------------------------------------------------------------------


@pytest.mark.parametrize(("header", "seconds"), [
    ("public, max-age=300", 300.0), ("max-age=60", 60.0), ('Max-Age="5", public', 5.0),
    ("no-cache", 0.0), ("public, no-store", 0.0), ("public", None), (None, None),
    ("s-maxage=10", None), ("max-age=abc", None),
])
def test_max_age_is_read_from_cache_control(header: str | None, seconds: float | None) -> None:
    """max-age in seconds, 0 for no-cache/no-store, None when the header says nothing."""
    assert parse_max_age(header) == seconds


def test_only_ed25519_signing_keys_are_taken_from_a_jwks() -> None:
    """parse_jwks keeps OKP/Ed25519 signature keys and skips everything else."""
    good = public_jwk(Ed25519PrivateKey.generate().public_key())
    other = public_jwk(Ed25519PrivateKey.generate().public_key())
    keys = parse_jwks({"keys": [
        good,
        {**other, "kid": "rsa", "kty": "RSA"},
        {**other, "kid": "x25519", "crv": "X25519"},
        {**other, "kid": "enc", "use": "enc"},
        {**other, "kid": "hs", "alg": "HS256"},
        {**other, "kid": "short", "x": "AAAA"},
        {**other, "kid": "bad", "x": "!!"},
        {**other, "kid": 7},
        "not a key",
    ]})
    assert list(keys) == [good["kid"]]
    assert public_jwk(keys[good["kid"]]) == good
    assert parse_jwks({"keys": "none"}) == {} and parse_jwks(None) == {}


def test_the_room_cache_forgets_the_least_recently_used() -> None:
    """At its size, the cache drops the room used longest ago; None forgets a room."""
    cache = RoomCache(2)
    a, b, c = (RoomBooking(r, "b", "p", "c", *[datetime(2026, 1, 1, tzinfo=UTC)] * 2, False,
                           *[datetime(2026, 1, 1, tzinfo=UTC)] * 3) for r in "abc")
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a
    cache.put("c", c)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (a, None, c)
    cache.put("a", None)
    assert cache.get("a") is None and len(cache) == 1


def test_the_key_schedule_limits_fetches() -> None:
    """Due at first and after max-age (at least the interval); an unknown kid only once
    per interval; a failure keeps the keys."""
    schedule = KeySchedule(refetch_interval=10.0)
    key = Ed25519PrivateKey.generate().public_key()
    assert schedule.wants_fetch("k", 0.0)
    schedule.fetched(0.0, {"k": key}, max_age=0.0)  # no-cache: still the 10 s floor
    assert not schedule.wants_fetch("k", 9.9) and not schedule.wants_fetch("other", 9.9)
    assert schedule.wants_fetch("k", 10.0) and schedule.wants_fetch("other", 10.0)
    schedule.fetched(10.0, {"k": key}, max_age=None)  # the default, 300 s
    assert not schedule.wants_fetch("k", 309.0) and schedule.wants_fetch("k", 310.0)
    schedule.failed(310.0)
    assert schedule.keys == {"k": key} and not schedule.wants_fetch("other", 319.0)


def test_room_batches_keep_within_count_and_size() -> None:
    """Batches hold at most 1000 ids and at most 48 KiB of them as JSON, in order."""
    short = [f"r{i}" for i in range(2500)]
    assert [len(b) for b in room_batches(short)] == [1000, 1000, 500]
    long = ["x" * 128] * 1000
    batches = list(room_batches(long))
    assert sum(map(len, batches)) == 1000 and len(batches) == 3
    assert all(len(json.dumps({"room_ids": b}, separators=(",", ":"))) <= 48 * 1024 + 20
               for b in batches)
    assert [r for b in room_batches(short) for r in b] == short


def test_report_bodies_keep_within_count_and_size() -> None:
    """Report bodies hold at most 500 events and 60 KiB, all events in order, once."""
    small = events("b", 1200)
    bodies = [json.loads(body) for body in report_bodies(small)]
    assert [len(b["events"]) for b in bodies] == [500, 500, 200]
    big = [dataclasses.replace(e, event_id="i" * 128, booking_id="b" * 128, reason="r" * 64)
           for e in events("b", 500)]
    raw = list(report_bodies(big))
    assert len(raw) > 1 and all(len(body) <= 60 * 1024 + 20 for body in raw)
    sent = [e["event_id"] for body in raw for e in json.loads(body)["events"]]
    assert len(sent) == 500
    assert [e["at"] for e in bodies[0]["events"][:1]] == ["2026-11-23T09:00:00.123456Z"]


@pytest.mark.parametrize(("room_id", "ok"), [
    ("Abc_-123", True), ("a.b:c", True), ("x" * 128, True), ("x" * 129, False), ("", False),
    (".", False), ("..", False), ("a/b", False), ("a b", False), ("é", False),
])
def test_room_ids_are_those_the_gate_makes(room_id: str, ok: bool) -> None:
    """is_room_id accepts the gate's id alphabet only, without bare dot segments."""
    assert is_room_id(room_id) is ok
