"""In-call "book next session", the credit ledger and credit requests, on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from booking_gate.openapi import openapi_document
from tests.conftest import AUTH, FakeClock, GateClient, booking_body, seed_people


async def booked_room(gate: GateClient, clock: FakeClock, *, credits: int = 3,
                      booking_id: str = "b-1") -> dict[str, Any]:
    """A booking that starts now (Monday 09:00 in Oslo) and its two join tokens."""
    await seed_people(gate, credits=credits)
    response = await gate.put(f"/api/v1/bookings/{booking_id}", headers=AUTH,
                              json=booking_body(clock.now))
    assert response.status == 201, await response.text()
    booking = await response.json()
    links = await (await gate.post(f"/api/v1/bookings/{booking_id}/links", headers=AUTH)).json()
    return {"room": booking["room_id"], "booking": booking,
            **{role: links[role]["url"].split("#t=")[1] for role in ("professional", "client")}}


def validator(name: str) -> Draft202012Validator:
    """The OpenAPI document's schema ``name``, resolving its references."""
    root = {"$ref": f"#/components/schemas/{name}",
            "components": openapi_document("https://gate.example/")["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def slots(gate: GateClient, room: dict[str, Any], role: str = "professional"
                ) -> dict[str, Any]:
    response = await gate.get(f"/api/v1/rooms/{room['room']}/next-slots",
                              headers=bearer(room[role]), params={"days": "14"})
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def book_next(gate: GateClient, room: dict[str, Any], starts_at: str, key: str,
                    role: str = "professional") -> tuple[int, dict[str, Any]]:
    response = await gate.post(f"/api/v1/rooms/{room['room']}/next-booking",
                               headers=bearer(room[role]),
                               json={"starts_at": starts_at, "idempotency_key": key})
    return response.status, await response.json()


async def test_next_slots_respect_the_current_booking_and_its_buffer(
        gate: GateClient, clock: FakeClock) -> None:
    """Slots are in the professional's zone, after now, clear of the booking plus buffer."""
    room = await booked_room(gate, clock)
    data = await slots(gate, room)
    assert data["timezone"] == "Europe/Oslo"
    # 08:00 UTC is 09:00 in Oslo; the booking holds 09:00-09:50 plus a 10-minute buffer,
    # so on the default grid (session + buffer: hourly from 08:00 local) the first free
    # slot is 10:00 local.
    assert data["slots"][0] == {"starts_at": "2026-11-23T09:00:00Z",
                                "ends_at": "2026-11-23T09:50:00Z"}
    assert all(s["starts_at"] >= "2026-11-23T09:00:00Z" for s in data["slots"])
    client_view = await slots(gate, room, "client")
    assert client_view == data


async def test_next_slots_name_the_client_the_length_and_the_credits_left(
        gate: GateClient, clock: FakeClock) -> None:
    """next-slots says whom and how the panel books: the client's first name only, the
    session length, and the free sponsored balance, which the next booking then spends."""
    room = await booked_room(gate, clock, credits=3)  # b-1 holds one of the three
    data = await slots(gate, room)
    assert (data["client_first_name"], data["session_minutes"],
            data["sponsored_credits_left"]) == ("Cli", 50, 2)
    assert [e.message for e in validator("NextSlots").iter_errors(data)] == []
    status, booking = await book_next(gate, room, data["slots"][0]["starts_at"], "k-1")
    assert (status, booking["funding"]) == (201, "sponsored")
    assert (await slots(gate, room))["sponsored_credits_left"] == 1
    # The client's page may read the same answer: their own first name and balance.
    assert (await slots(gate, room, "client"))["sponsored_credits_left"] == 1


@pytest.mark.parametrize("case,status,code", [
    ("no-token", 401, "unauthorized"), ("forged", 401, "unauthorized"),
    ("other-room", 403, "forbidden")])
async def test_next_slots_need_a_token_of_this_room(gate: GateClient, clock: FakeClock,
                                                    case: str, status: int, code: str) -> None:
    """Without a valid join token of this room the in-call API refuses."""
    room = await booked_room(gate, clock)
    headers = {"no-token": {}, "forged": bearer(room["professional"][:-4] + "AAAA"),
               "other-room": bearer(room["professional"])}[case]
    path_room = "x" * 32 if case == "other-room" else room["room"]
    response = await gate.get(f"/api/v1/rooms/{path_room}/next-slots", headers=headers)
    assert (response.status, (await response.json())["error"]["code"]) == (status, code)


async def test_the_professional_books_the_next_session_idempotently(
        gate: GateClient, clock: FakeClock) -> None:
    """A free slot → 201 a new sponsored booking; the same key → 200 the same booking;
    the client's token → 403; a time that is not a free slot → 409 slot_taken."""
    room = await booked_room(gate, clock)
    first_slot = (await slots(gate, room))["slots"][0]["starts_at"]
    status, booking = await book_next(gate, room, first_slot, "key-1", role="client")
    assert (status, booking["error"]["code"]) == (403, "forbidden")
    status, booking = await book_next(gate, room, first_slot, "key-1")
    assert status == 201
    assert booking["booking_id"] != "b-1" and booking["room_id"] != room["room"]
    assert (booking["professional_id"], booking["client_id"], booking["funding"]) == (
        "pro-1", "cli-1", "sponsored")
    assert booking["starts_at"] == first_slot
    again_status, again = await book_next(gate, room, first_slot, "key-1")
    assert (again_status, again["booking_id"]) == (200, booking["booking_id"])
    assert first_slot not in [s["starts_at"] for s in (await slots(gate, room))["slots"]]
    status, error = await book_next(gate, room, "2026-11-23T09:31:00Z", "key-2")
    assert (status, error["error"]["code"]) == (409, "slot_taken")


async def put_morning_professional(gate: GateClient, **extra: Any) -> dict[str, Any]:
    """pro-1 with 50-minute sessions, a 10-minute buffer and Mondays 09:00-12:00 in Oslo."""
    response = await gate.put("/api/v1/professionals/pro-1", headers=AUTH, json={
        "name": "Dr Pro", "email": "pro@example.org", "timezone": "Europe/Oslo",
        "session_minutes": 50, "buffer_minutes": 10,
        "availability": [{"weekday": 0, "start": "09:00", "end": "12:00"}], **extra})
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


async def test_the_default_grid_is_the_fifty_minute_hour(
        gate: GateClient, clock: FakeClock) -> None:
    """50 + 10 minutes, 09:00-12:00: slots at 09:00, 10:00, 11:00; booking 10:00 leaves
    09:00 and 11:00 free; the stored professional says slot_minutes 60."""
    clock.now = clock.now - timedelta(days=7)  # a week before booked_room's Monday
    room = await booked_room(gate, clock)
    assert (await put_morning_professional(gate))["slot_minutes"] == 60
    monday = "2026-11-23T{}:00Z"  # 09:00 Oslo is 08:00 UTC in November
    free = [s["starts_at"] for s in (await slots(gate, room))["slots"]]
    assert free[-3:] == [monday.format("08:00"), monday.format("09:00"),
                         monday.format("10:00")]
    status, _ = await book_next(gate, room, monday.format("09:00"), "ten")
    assert status == 201
    free = [s["starts_at"] for s in (await slots(gate, room))["slots"]]
    assert free[-2:] == [monday.format("08:00"), monday.format("10:00")]


async def test_slot_minutes_sets_the_grid_and_is_never_shorter_than_a_session(
        gate: GateClient, clock: FakeClock) -> None:
    """slot_minutes 90 → 09:00 and 10:30; 49 (< 50-minute sessions) → 422 naming the field,
    and the stored professional is unchanged."""
    clock.now = clock.now - timedelta(days=7)
    room = await booked_room(gate, clock)
    assert (await put_morning_professional(gate, slot_minutes=90))["slot_minutes"] == 90
    free = [s["starts_at"] for s in (await slots(gate, room))["slots"]]
    assert free[-2:] == ["2026-11-23T08:00:00Z", "2026-11-23T09:30:00Z"]
    response = await gate.put("/api/v1/professionals/pro-1", headers=AUTH, json={
        "name": "Dr Pro", "email": "pro@example.org", "timezone": "Europe/Oslo",
        "session_minutes": 50, "slot_minutes": 49})
    error = (await response.json())["error"]
    assert (response.status, error["code"], error["field"]) == (
        422, "invalid_request", "slot_minutes")
    assert error["message"] == "'slot_minutes' must be a whole number from 50 to 1440"
    free_after = [s["starts_at"] for s in (await slots(gate, room))["slots"]]
    assert free_after == free


async def test_twenty_concurrent_next_bookings_for_one_slot_give_one_201(
        gate: GateClient, clock: FakeClock) -> None:
    """The database lets exactly one of 20 racing requests have the slot."""
    room = await booked_room(gate, clock, credits=30)
    slot = (await slots(gate, room))["slots"][3]["starts_at"]
    results = await asyncio.gather(*(book_next(gate, room, slot, f"race-{i}")
                                     for i in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 1 and statuses.count(409) == 19, statuses
    assert {body["error"]["code"] for status, body in results if status == 409} == {
        "slot_taken"}


async def test_without_credits_left_the_next_session_is_self_paid(
        gate: GateClient, clock: FakeClock) -> None:
    """The last credit went to the current booking: the next one is private."""
    room = await booked_room(gate, clock, credits=1)
    data = await slots(gate, room)
    assert data["sponsored_credits_left"] == 0  # what the panel shows as "self-paid"
    slot = data["slots"][0]["starts_at"]
    status, booking = await book_next(gate, room, slot, "k")
    assert (status, booking["funding"]) == (201, "private")
    credits = await (await gate.get("/api/v1/clients/cli-1/credits", headers=AUTH)).json()
    assert (credits["balance"], credits["reserved"]) == (0, 1)


async def ingest(gate: GateClient, events: list[tuple[str, str, Any]]) -> None:
    if not events:
        return
    body = {"events": [{"event_id": f"e{i}", "booking_id": "b-1", "role": role, "kind": kind,
                        "at": at.isoformat()} for i, (role, kind, at) in enumerate(events)]}
    response = await gate.post("/api/v1/attendance/events", headers=AUTH, json=body)
    assert response.status == 200, await response.text()


LEDGER_CASES = {
    # outcome: (events as (role, kind, minutes after start), cancel by, expected balance)
    "completed": ([("professional", "joined", 0), ("client", "joined", 1),
                   ("client", "media_connected", 2)], None, 2),
    "client_no_show": ([("professional", "joined", 0)], None, 2),
    "professional_no_show": ([("client", "joined", 0)], None, 3),
    "technical_failure": ([("professional", "joined", 0), ("client", "joined", 1)], None, 3),
    "both_no_show": ([], None, 3),
    "late_cancellation": ([], "client", 2),
    "cancelled": ([], "professional", 3),
}


@pytest.mark.parametrize("outcome", list(LEDGER_CASES))
async def test_the_ledger_consumes_or_releases_the_credit_for_every_outcome(
        gate: GateClient, clock: FakeClock, outcome: str) -> None:
    """Billable outcomes consume the booking's credit, the others give it back."""
    events, cancel_by, balance = LEDGER_CASES[outcome]
    await seed_people(gate, credits=3)
    start = clock.now + timedelta(hours=1)
    await gate.put("/api/v1/bookings/b-1", headers=AUTH, json=booking_body(start))
    if cancel_by:
        response = await gate.post("/api/v1/bookings/b-1/cancel", headers=AUTH,
                                   json={"by": cancel_by})
        assert response.status == 200
    await ingest(gate, [(role, kind, start + timedelta(minutes=m)) for role, kind, m in events])
    clock.advance(hours=3)
    record = await (await gate.get("/api/v1/bookings/b-1/attendance", headers=AUTH)).json()
    assert (record["status"], record["outcome"]) == ("final", outcome)
    history = await (await gate.get("/api/v1/clients/cli-1/credits/history",
                                    headers=AUTH)).json()
    assert (history["balance"], history["reserved"]) == (balance, 0)
    kinds = [entry["kind"] for entry in history["entries"]]
    assert kinds == ["grant", "reserve", "consume" if balance == 2 else "release"]


async def test_credit_requests_hide_the_client_and_grant_on_approval(
        gate: GateClient, clock: FakeClock) -> None:
    """The hub sees a recommendation, never the client; approving grants that client."""
    await seed_people(gate, credits=1)
    response = await gate.post("/api/v1/hubs/acme/credit-requests", headers=AUTH, json={
        "client_email": "CLIENT@example.org", "professional_email": "pro@example.org",
        "credits": 4, "note": "progress is good; four more sessions recommended"})
    assert response.status == 201, await response.text()
    created = await response.json()
    listing = await (await gate.get("/api/v1/hubs/acme/credit-requests", headers=AUTH,
                                    params={"status": "pending"})).json()
    assert [item["request_id"] for item in listing["items"]] == [created["request_id"]]
    text = str(listing)
    for secret in ("cli-1", "client@example.org", "Cli Ent"):
        assert secret.lower() not in text.lower()
    assert listing["items"][0]["professional"] == {"name": "Dr Pro"}
    path = f"/api/v1/hubs/acme/credit-requests/{created['request_id']}"
    approved = await (await gate.post(f"{path}/approve", headers=AUTH)).json()
    assert (approved["status"], approved["granted"]) == ("approved", 4)
    again = await gate.post(f"{path}/approve", headers=AUTH)
    assert again.status == 200
    credits = await (await gate.get("/api/v1/clients/cli-1/credits", headers=AUTH)).json()
    assert credits["balance"] == 5
    declined = await gate.post(f"{path}/decline", headers=AUTH)
    assert (declined.status, (await declined.json())["error"]["code"]) == (
        409, "already_decided")
    unknown = await gate.post("/api/v1/hubs/other/credit-requests", headers=AUTH, json={
        "client_email": "client@example.org", "professional_email": "pro@example.org"})
    assert (unknown.status, (await unknown.json())["error"]["field"]) == (404, "client_email")


async def test_a_token_from_before_a_reschedule_stays_dead_after_moving_back(
        gate: GateClient, clock: FakeClock) -> None:
    """Moving a booking away and back to the same window does not revive old links."""
    original_start = clock.now
    room = await booked_room(gate, clock)
    clock.advance(seconds=5)
    for start in (original_start + timedelta(days=1), original_start):
        response = await gate.post("/api/v1/bookings/b-1/reschedule", headers=AUTH, json={
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=50)).isoformat(), "by": "client"})
        assert response.status == 200, await response.text()
    back = await (await gate.get("/api/v1/bookings/b-1", headers=AUTH)).json()
    assert (back["starts_at"], back["ends_at"]) == (room["booking"]["starts_at"],
                                                    room["booking"]["ends_at"])
    response = await gate.get(f"/api/v1/rooms/{room['room']}/next-slots",
                              headers=bearer(room["professional"]))
    assert (response.status, (await response.json())["error"]["code"]) == (403, "forbidden")
