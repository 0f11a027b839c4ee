"""Attendance records become final on schedule through ``GateService.finalize_due``.

The clock is the test's: the record stays pending until ``ends_at`` plus the overrun
window (900 s by default), the background finaliser's ``finalize_due`` then stores the
outcome and settles the credit, and events that arrive afterwards change nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from booking_gate.appkeys import SERVICE
from booking_gate.service import GateService
from tests.conftest import AUTH, FakeClock, GateClient, booking_body, seed_people

OVERRUN = timedelta(seconds=900)
MINUTES = 50


def service_of(gate: GateClient) -> GateService:
    return gate.server.app[SERVICE]


async def credits(gate: GateClient) -> dict[str, Any]:
    response = await gate.get("/api/v1/clients/cli-1/credits", headers=AUTH)
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def attendance(gate: GateClient, booking_id: str = "b-1") -> dict[str, Any]:
    response = await gate.get(f"/api/v1/bookings/{booking_id}/attendance", headers=AUTH)
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def ingest(gate: GateClient, *events: tuple[str, str, str, datetime]) -> None:
    response = await gate.post("/api/v1/attendance/events", headers=AUTH, json={"events": [
        {"event_id": event_id, "booking_id": "b-1", "role": role, "kind": kind,
         "at": at.isoformat()} for event_id, role, kind, at in events]})
    assert response.status == 200, await response.text()


async def stored_outcome(gate: GateClient, booking_id: str = "b-1") -> str | None:
    """The outcome in the database, read past the API (whose GET finalises on read)."""
    records = await service_of(gate).store.records_for([booking_id])
    record = records.get(booking_id)
    return None if record is None else str(record["outcome"])


async def book(gate: GateClient, clock: FakeClock) -> datetime:
    """pro-1 and cli-1 (3 acme credits) and a sponsored booking b-1 starting now."""
    await seed_people(gate, credits=3)
    start = clock.now
    response = await gate.put("/api/v1/bookings/b-1", headers=AUTH,
                              json=booking_body(start, MINUTES))
    assert response.status == 201, await response.text()
    assert await credits(gate) == {"client_id": "cli-1", "hub_id": "acme", "balance": 2,
                                   "reserved": 1}
    return start


async def run_until_final(gate: GateClient, clock: FakeClock, start: datetime) -> None:
    """Pending up to one second before ends_at + overrun; finalize_due settles it on time."""
    service = service_of(gate)
    clock.now = start + timedelta(minutes=MINUTES) + OVERRUN - timedelta(seconds=1)
    assert await service.finalize_due() == 0
    assert await stored_outcome(gate) is None
    assert await credits(gate) == {"client_id": "cli-1", "hub_id": "acme", "balance": 2,
                                   "reserved": 1}
    clock.advance(seconds=1)
    assert await stored_outcome(gate) is None  # nothing finalised it behind our back
    assert await service.finalize_due() == 1
    assert await service.finalize_due() == 0  # already final: nothing left to do


@pytest.mark.parametrize("minutes_before_end", [MINUTES, 1])
async def test_record_stays_pending_before_the_overrun_window_closes(
        gate: GateClient, clock: FakeClock, minutes_before_end: int) -> None:
    """Before ends_at + overrun, finalize_due leaves a record pending with outcome null."""
    start = await book(gate, clock)
    await ingest(gate, ("e1", "professional", "joined", start))
    clock.now = start + timedelta(minutes=MINUTES) + OVERRUN - timedelta(
        minutes=minutes_before_end)
    assert await service_of(gate).finalize_due() == 0
    record = await attendance(gate)
    assert (record["status"], record["outcome"], record["billable"], record["payer"]) == (
        "pending", None, False, None)
    assert await stored_outcome(gate) is None
    assert (await credits(gate))["reserved"] == 1


async def test_both_no_show_is_finalised_on_schedule_and_releases_the_credit(
        gate: GateClient, clock: FakeClock) -> None:
    """Nobody joined: final both_no_show at ends_at + overrun, credit back to the balance."""
    start = await book(gate, clock)
    await run_until_final(gate, clock, start)
    assert await stored_outcome(gate) == "both_no_show"
    record = await attendance(gate)
    assert (record["status"], record["outcome"], record["billable"], record["payer"]) == (
        "final", "both_no_show", False, None)
    assert await credits(gate) == {"client_id": "cli-1", "hub_id": "acme", "balance": 3,
                                   "reserved": 0}


async def test_client_no_show_is_finalised_on_schedule_and_consumes_the_credit(
        gate: GateClient, clock: FakeClock) -> None:
    """Only the professional joined: final client_no_show, billable to the sponsor."""
    start = await book(gate, clock)
    await ingest(gate, ("e1", "professional", "joined", start + timedelta(minutes=1)),
                 ("e2", "professional", "left", start + timedelta(minutes=MINUTES)))
    await run_until_final(gate, clock, start)
    assert await stored_outcome(gate) == "client_no_show"
    record = await attendance(gate)
    assert (record["status"], record["outcome"], record["billable"], record["payer"]) == (
        "final", "client_no_show", True, "sponsor")
    assert await credits(gate) == {"client_id": "cli-1", "hub_id": "acme", "balance": 2,
                                   "reserved": 0}


@pytest.mark.parametrize("seen_before", [["professional"], []])
async def test_final_is_final_when_events_arrive_later(
        gate: GateClient, clock: FakeClock, seen_before: list[str]) -> None:
    """Events ingested after finalisation change neither the outcome nor the credit."""
    start = await book(gate, clock)
    for role in seen_before:
        await ingest(gate, (f"early-{role}", role, "joined", start))
    await run_until_final(gate, clock, start)
    final = await attendance(gate)
    account = await credits(gate)
    # Late-delivered reports of a full session inside the window: would be "completed".
    await ingest(gate, ("late-1", "professional", "joined", start),
                 ("late-2", "client", "joined", start + timedelta(minutes=2)),
                 ("late-3", "client", "media_connected", start + timedelta(minutes=3)),
                 ("late-4", "client", "left", start + timedelta(minutes=MINUTES)),
                 ("late-5", "professional", "left", start + timedelta(minutes=MINUTES)))
    clock.advance(days=1)
    assert await service_of(gate).finalize_due() == 0
    assert await attendance(gate) == final
    assert final["outcome"] == ("client_no_show" if seen_before else "both_no_show")
    assert await stored_outcome(gate) == final["outcome"]
    assert await credits(gate) == account
    response = await gate.get("/api/v1/attendance", headers=AUTH, params={
        "from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat()})
    assert [item["outcome"] for item in (await response.json())["items"]] == [final["outcome"]]


async def test_a_gate_just_started_waits_for_the_nodes_before_finalising(
        gate: GateClient, clock: FakeClock) -> None:
    """Right after start (the gate was away while the window closed), a record the window's
    end would finalise stays pending for SETTLE_AFTER_START; a report a node delivers
    meanwhile still counts; afterwards the record is final with it."""
    from booking_gate.service import SETTLE_AFTER_START

    start = await book(gate, clock)
    await ingest(gate, ("p-in", "professional", "joined", start),
                 ("c-in", "client", "joined", start + timedelta(minutes=1)),
                 ("p-media", "professional", "media_connected", start + timedelta(minutes=1)),
                 ("c-out", "client", "left", start + timedelta(minutes=MINUTES)))
    service = service_of(gate)
    # The window closed while the gate was away; it has just started again.
    clock.now = start + timedelta(minutes=MINUTES) + OVERRUN + timedelta(minutes=5)
    service.settled_at = clock.now + SETTLE_AFTER_START
    assert await service.finalize_due() == 0
    pending = await attendance(gate)
    assert (pending["status"], pending["outcome"]) == ("pending", None)
    await ingest(gate, ("p-out", "professional", "left", start + timedelta(minutes=MINUTES + 1)))
    final = await attendance(gate)  # both gone: final at once
    assert (final["status"], final["outcome"]) == ("final", "completed")
    assert final["parties"]["professional"]["intervals"][0]["to"] is not None
