"""Shared fixtures: a fake clock, databases (SQLite file, throwaway PostgreSQL) and the gate."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from booking_gate.app import make_app
from booking_gate.config import GateConfig

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
API_KEY = "test-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class FakeClock:
    """The server's clock, driven by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"carecall_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    import redis.asyncio as redis

    prefix = f"carecall-test-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gate.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def gate_config(db_url: str, tmp_path: Path) -> GateConfig:
    return GateConfig(db_url=db_url, public_url="https://care.example", api_key=API_KEY,
                      var_dir=tmp_path / "var")


GateClient = TestClient[Any, Any]


@pytest.fixture
async def gate(gate_config: GateConfig, clock: FakeClock,
               aiohttp_client: Callable[..., Any]) -> AsyncIterator[GateClient]:
    # aiohttp_client comes last so its clean-up runs before the database is dropped.
    client: GateClient = await aiohttp_client(make_app(gate_config, clock=clock))
    yield client


async def seed_people(gate: GateClient, *, credits: int = 3, hub: str | None = "acme") -> None:
    """A professional available 08:00-18:00 Oslo on weekdays and a client of ``hub``."""
    response = await gate.put("/api/v1/professionals/pro-1", headers=AUTH, json={
        "name": "Dr Pro", "email": "pro@example.org", "timezone": "Europe/Oslo",
        "session_minutes": 50, "buffer_minutes": 10,
        "availability": [{"weekday": d, "start": "08:00", "end": "18:00"} for d in range(5)],
    })
    assert response.status == 200, await response.text()
    response = await gate.put("/api/v1/clients/cli-1", headers=AUTH, json={
        "name": "Cli Ent", "email": "client@example.org", "timezone": "Europe/Oslo",
        "hub_id": hub,
    })
    assert response.status == 200, await response.text()
    if hub and credits:
        response = await gate.post(f"/api/v1/hubs/{hub}/credits", headers=AUTH,
                                   json={"client_id": "cli-1", "credits": credits})
        assert response.status == 200, await response.text()


def booking_body(start: datetime, minutes: int = 50, *, funding: str = "sponsored",
                 source: str = "hub") -> dict[str, Any]:
    return {"professional_id": "pro-1", "client_id": "cli-1",
            "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=minutes)
                                                        ).isoformat(),
            "funding": funding, "source": source}


# -- the whole service (gate + signalling in one app), as `carecall serve` runs it ------


@pytest.fixture
def signalling_config(tmp_path: Path) -> Any:
    from signalling.config import SignallingConfig

    return SignallingConfig(public_url="", var_dir=tmp_path / "var")


@pytest.fixture
async def service(tmp_path: Path, signalling_config: Any,
                  aiohttp_client: Callable[..., Any]) -> AsyncIterator[GateClient]:
    """gate + signalling on a real server on 127.0.0.1 with SQLite and the real clock."""
    yield await serve_in_process(tmp_path, signalling_config, aiohttp_client)


@pytest.fixture
async def timed(tmp_path: Path, signalling_config: Any, clock: FakeClock,
                aiohttp_client: Callable[..., Any]) -> AsyncIterator[GateClient]:
    """The whole service, as ``carecall serve`` runs it, on the fake clock."""
    yield await serve_in_process(tmp_path, signalling_config, aiohttp_client, clock=clock)


async def serve_in_process(tmp_path: Path, signalling_config: Any,
                           aiohttp_client: Callable[..., Any], *,
                           clock: Callable[[], datetime] | None = None) -> GateClient:
    """The whole service as ``carecall serve`` builds it, on a real port of 127.0.0.1
    (join links must name it), on ``clock`` if given (else the real one)."""
    from aiohttp.test_utils import TestServer, unused_port

    from carecall.serve import build_app

    port = unused_port()
    config = GateConfig(db_url=f"sqlite:///{tmp_path / 'gate.db'}",
                        public_url=f"http://127.0.0.1:{port}", api_key=API_KEY,
                        var_dir=tmp_path / "var")
    app = (build_app(config, signalling_config) if clock is None
           else build_app(config, signalling_config, clock=clock))
    client: GateClient = await aiohttp_client(TestServer(app, host="127.0.0.1", port=port))
    return client


async def book_now(client: GateClient, booking_id: str = "b-1", *, start_offset: float = 0,
                   minutes: int = 50) -> dict[str, Any]:
    """Seed people, a booking starting ``start_offset`` seconds from now, and its links."""
    from datetime import datetime

    response = await client.get("/api/v1/clients/cli-1/credits", headers=AUTH)
    if response.status == 404:
        await seed_people(client, credits=5)
    start = datetime.now(UTC) + timedelta(seconds=start_offset)
    response = await client.put(f"/api/v1/bookings/{booking_id}", headers=AUTH,
                                json=booking_body(start, minutes))
    assert response.status in (200, 201), await response.text()
    booking: dict[str, Any] = await response.json()
    links = await (await client.post(f"/api/v1/bookings/{booking_id}/links",
                                     headers=AUTH)).json()
    return {"booking": booking, "room_id": booking["room_id"],
            "professional": links["professional"]["url"].split("#t=")[1],
            "client": links["client"]["url"].split("#t=")[1],
            "links": {role: links[role]["url"] for role in ("professional", "client")}}


# -- browsers and TURN, for the tests that need them ---------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium with fake camera and microphone (tests/browser.py), per test."""
    from tests.browser import chromium

    async with chromium() as launched:
        yield launched


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A coturn on a free port with its own config, and its TURN-REST secret."""
    from tests.turn import running_coturn

    with running_coturn(tmp_path) as running:
        yield running


# ``carecall serve`` per test, for the browser tests (tests/service.py).
from tests.service import start_service  # noqa: E402,F401
