"""One ``carecall serve`` process per test, configured by the operator's environment
variables as in production, and the bookings the browser tests make on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Served, clean_env, request_json

__all__ = ["AUTH", "CLIENT", "KEY", "PROFESSIONAL", "Service", "request_json", "start_service"]

KEY = "lobby-test-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROFESSIONAL = "Dr Ada Lovelace"
CLIENT = "Bo Berg"

class Service:
    """One ``carecall serve`` process and the bookings made on it."""

    def __init__(self, served: Served, base: str, var_dir: Path) -> None:
        self.served = served
        self.base = base
        self.var_dir = var_dir  # its keys and, with the default --db, its SQLite file

    def api(self, method: str, path: str, body: Any = None, *, ok: bool = True) -> Any:
        status, data = request_json(method, self.base + path, body, AUTH)
        if ok:
            assert status in (200, 201), (status, data)
        return data

    def book(self, booking_id: str, start: datetime, minutes: int = 50, *,
             professional: str = "pro-a") -> dict[str, str]:
        """A booking between Dr Ada Lovelace (Berlin) and Bo Berg; its links by role."""
        self.api("PUT", f"/api/v1/professionals/{professional}", {
            "name": PROFESSIONAL, "email": "ada@example.org", "timezone": "Europe/Berlin",
            "session_minutes": 50, "buffer_minutes": 10,
            "availability": [{"weekday": d, "start": "00:00", "end": "23:59"}
                             for d in range(7)]})
        self.api("PUT", "/api/v1/clients/cli-b", {
            "name": CLIENT, "email": "bo@example.org", "timezone": "Europe/Berlin",
            "hub_id": None})
        self.api("PUT", f"/api/v1/bookings/{booking_id}", {
            "professional_id": professional, "client_id": "cli-b", "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=minutes)).isoformat(),
            "funding": "private", "source": "direct"})
        links = self.api("POST", f"/api/v1/bookings/{booking_id}/links")
        return {role: links[role]["url"] for role in ("professional", "client")}


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Served] = []

    def start(**env: str) -> Service:
        var_dir = tmp_path / f"var{len(started)}"
        served = Served(["serve", "--port", "0", "--api-key", KEY, "--var-dir", str(var_dir)],
                        tmp_path, clean_env(**env))
        started.append(served)
        return Service(served, served.ready(), var_dir)

    yield start
    for served in started:
        served.close()


