"""GET /api/v1/bookings: filters, (starts_at, booking_id) order and cursor pages, on both
backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import AUTH, FakeClock, GateClient


async def call(gate: GateClient, method: str, path: str, body: Any = None,
               status: int = 200) -> Any:
    response = await gate.request(method, path, headers=AUTH, json=body)
    data = await response.json()
    assert response.status == status, data
    return data


async def seed(gate: GateClient, clock: FakeClock) -> list[dict[str, Any]]:
    """Two professionals, two clients (one of hub acme), eight bookings, some at the same
    time (ties ordered by booking id), one cancelled."""
    for pro in ("pro-1", "pro-2"):
        await call(gate, "PUT", f"/api/v1/professionals/{pro}", {
            "name": "Dr", "email": f"{pro}@example.org", "timezone": "UTC"})
    for client, hub in (("cli-1", "acme"), ("cli-2", None)):
        await call(gate, "PUT", f"/api/v1/clients/{client}", {
            "name": "C", "email": f"{client}@example.org", "timezone": "UTC", "hub_id": hub})
    await call(gate, "POST", "/api/v1/hubs/acme/credits", {"client_id": "cli-1", "credits": 9})
    made = []
    for n in range(8):
        start = clock.now + timedelta(days=1, hours=n // 2)  # pairs start together
        pro, client = ("pro-1", "cli-1") if n % 2 == 0 else ("pro-2", "cli-2")
        made.append(await call(gate, "PUT", f"/api/v1/bookings/b-{7 - n}", {
            "professional_id": pro, "client_id": client, "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=50)).isoformat(),
            "funding": "sponsored" if client == "cli-1" else "private",
            "source": "hub" if client == "cli-1" else "direct"}, 201))
    cancelled = await call(gate, "POST", "/api/v1/bookings/b-5/cancel", {"by": "client"})
    made = [cancelled if b["booking_id"] == "b-5" else b for b in made]
    return sorted(made, key=lambda b: (b["starts_at"], b["booking_id"]))


async def every_page(gate: GateClient, query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await call(gate, "GET", f"/api/v1/bookings?{query}"
                          + (f"&cursor={cursor}" if cursor else ""))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_pages_of_two_list_every_booking_once_in_order(
        gate: GateClient, clock: FakeClock) -> None:
    """limit=2 pages give exactly the bookings, by (starts_at, booking_id)."""
    every = await seed(gate, clock)
    assert await every_page(gate, "limit=2") == every
    first = await call(gate, "GET", "/api/v1/bookings?limit=3")
    assert first["items"] == every[:3] and first["next_cursor"]
    # Ties at one start come in booking id order.
    assert [b["booking_id"] for b in every[:2]] == ["b-6", "b-7"]


async def test_filters_narrow_the_list(gate: GateClient, clock: FakeClock) -> None:
    """By professional, client, hub, status and [from, to) on starts_at."""
    every = await seed(gate, clock)

    def where(**match: str) -> list[dict[str, Any]]:
        return [b for b in every if all(b[k] == v for k, v in match.items())]

    assert await every_page(gate, "professional_id=pro-1&limit=1") == where(
        professional_id="pro-1")
    assert await every_page(gate, "client_id=cli-2") == where(client_id="cli-2")
    assert await every_page(gate, "hub_id=acme") == where(client_id="cli-1")
    assert await every_page(gate, "status=cancelled") == where(status="cancelled")
    assert await every_page(gate, "status=confirmed&client_id=cli-2") == [
        b for b in where(client_id="cli-2") if b["status"] == "confirmed"]
    start = clock.now + timedelta(days=1, hours=1)
    end = start + timedelta(hours=2)
    window = "from={}&to={}".format(*(t.isoformat().replace("+", "%2B") for t in (start, end)))
    assert await every_page(gate, window) == every[2:6]
    assert await every_page(gate, "client_id=nobody") == []


@pytest.mark.parametrize(("query", "field", "code"), [
    ("status=lost", "status", "invalid_request"),
    ("limit=0", "limit", "invalid_request"),
    ("limit=501", "limit", "invalid_request"),
    ("cursor=abc", "cursor", "invalid_request"),
    ("client_id=a%20b", "client_id", "invalid_id"),
    ("from=yesterday", "from", "invalid_request"),
    ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "to", "invalid_time_range"),
    ("sort=desc", "sort", "invalid_request"),
])
async def test_bad_queries_are_refused(gate: GateClient, query: str, field: str,
                                       code: str) -> None:
    """Each bad parameter is a 422 naming it."""
    error = (await call(gate, "GET", f"/api/v1/bookings?{query}", status=422))["error"]
    assert (error["field"], error["code"]) == (field, code)
