"""A real gate app on a fixed port of 127.0.0.1 that a test can stop and start again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port

from booking_gate.app import make_app
from booking_gate.config import GateConfig
from booking_gate.service import GateService
from tests.conftest import AUTH, FakeClock, booking_body, seed_people


class GateRunner:
    """``make_app(config)`` served on one port: ``stop()`` closes it (the port then refuses
    connections), ``start()`` serves a fresh app on the same database and port. ``paths``
    counts the requests the gate answered, by path."""

    def __init__(self, config: GateConfig, clock: FakeClock,
                 aiohttp_server: Callable[..., Any]) -> None:
        self.config = config
        self.clock = clock
        self._aiohttp_server = aiohttp_server
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: TestServer | None = None
        self.paths: dict[str, int] = {}

    async def start(self, config: GateConfig | None = None) -> None:
        self.config = config or self.config
        app = make_app(self.config, clock=self.clock)

        async def count(request: web.Request, response: web.StreamResponse) -> None:
            self.paths[request.path] = self.paths.get(request.path, 0) + 1

        app.on_response_prepare.append(count)
        self.server = await self._aiohttp_server(app, port=self.port)

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.close()
        self.server = None

    @property
    def service(self) -> GateService:
        from booking_gate.appkeys import SERVICE

        assert self.server is not None
        return self.server.app[SERVICE]

    @property
    def app(self) -> web.Application:
        assert self.server is not None
        return self.server.app

    def api(self) -> aiohttp.ClientSession:
        """A client of the gate's REST API (close it)."""
        return aiohttp.ClientSession(base_url=self.url, headers=AUTH)


async def seed_rooms(gate: GateRunner) -> dict[str, str]:
    """Bookings behind three rooms, ``plain``, ``cancelled`` and ``rescheduled`` (moved at
    a time with microseconds): their room ids by name."""
    async with gate.api() as api:
        await seed_people(api)  # type: ignore[arg-type]
        start = gate.clock.now + timedelta(hours=1)
        rooms = {}
        for offset, name in enumerate(("plain", "cancelled", "rescheduled")):
            response = await api.put(f"/api/v1/bookings/b-{name}",
                                     json=booking_body(start + timedelta(hours=2 * offset)))
            assert response.status == 201, await response.text()
            rooms[name] = (await response.json())["room_id"]
        gate.clock.advance(seconds=61.123456)
        response = await api.post("/api/v1/bookings/b-cancelled/cancel", json={"by": "client"})
        assert response.status == 200, await response.text()
        gate.clock.advance(seconds=1.654321)
        moved = start + timedelta(hours=5)
        response = await api.post("/api/v1/bookings/b-rescheduled/reschedule", json={
            "starts_at": moved.isoformat(), "ends_at": (moved + timedelta(minutes=50)
                                                        ).isoformat(), "by": "client"})
        assert response.status == 200, await response.text()
    return rooms


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded, in short steps) until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "not within the time limit"
        await asyncio.sleep(0.02)
