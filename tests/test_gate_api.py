"""The gate's REST API end to end through a real aiohttp server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import update

from booking_gate.appkeys import SERVICE
from booking_gate.db import schema as t
from tests.conftest import AUTH, FakeClock, GateClient, booking_body, seed_people


async def put_booking(gate: GateClient, booking_id: str, body: dict[str, Any]
                      ) -> tuple[int, dict[str, Any]]:
    response = await gate.put(f"/api/v1/bookings/{booking_id}", headers=AUTH, json=body)
    return response.status, await response.json()


async def credits(gate: GateClient) -> dict[str, Any]:
    response = await gate.get("/api/v1/clients/cli-1/credits", headers=AUTH)
    assert response.status == 200
    data: dict[str, Any] = await response.json()
    return data


async def test_requests_without_the_api_key_are_refused(gate: GateClient) -> None:
    """No key or a wrong key gives 401 unauthorized."""
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = await gate.get("/api/v1/bookings/b1", headers=headers)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"


async def test_bad_json_is_422_and_names_the_field(gate: GateClient) -> None:
    """Malformed JSON and wrong fields give 422 with the field named."""
    response = await gate.put("/api/v1/clients/c1", headers={**AUTH, "Content-Type":
                                                             "application/json"}, data=b"{")
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "invalid_request"
    response = await gate.put("/api/v1/clients/c1", headers=AUTH, json={
        "name": "A", "email": "a@example.org", "timezone": "Mars/Olympus", "hub_id": None})
    error = (await response.json())["error"]
    assert (response.status, error["field"]) == (422, "timezone")
    response = await gate.put("/api/v1/clients/bad%20id", headers=AUTH, json={})
    assert (await response.json())["error"] == {
        "code": "invalid_id", "message": "'client_id' must match [A-Za-z0-9._:-]{1,128}",
        "field": "client_id"}


async def test_same_booking_put_twice_is_201_then_200_with_the_same_room(
        gate: GateClient, clock: FakeClock) -> None:
    """PUT is idempotent: same body → 200 and the same room; another body → 409."""
    await seed_people(gate)
    body = booking_body(clock.now + timedelta(days=2))
    first_status, first = await put_booking(gate, "b-1", body)
    second_status, second = await put_booking(gate, "b-1", body)
    assert (first_status, second_status) == (201, 200)
    assert first["room_id"] == second["room_id"] and len(first["room_id"]) >= 22
    assert (await credits(gate))["reserved"] == 1
    status, changed = await put_booking(gate, "b-1", {**body, "funding": "private"})
    assert (status, changed["error"]["code"]) == (409, "booking_exists")


async def test_booking_errors_change_nothing(gate: GateClient, clock: FakeClock) -> None:
    """slot_taken, no_credits, invalid_time_range and not_found leave no trace."""
    await seed_people(gate, credits=1)
    start = clock.now + timedelta(days=2)
    assert (await put_booking(gate, "b-1", booking_body(start)))[0] == 201
    status, body = await put_booking(gate, "b-2", booking_body(start + timedelta(minutes=30),
                                                               funding="private"))
    assert (status, body["error"]["code"]) == (409, "slot_taken")
    status, body = await put_booking(gate, "b-3", booking_body(start + timedelta(hours=3)))
    assert (status, body["error"]["code"]) == (409, "no_credits")
    bad = booking_body(start)
    bad["ends_at"] = bad["starts_at"]
    status, body = await put_booking(gate, "b-4", bad)
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        422, "invalid_time_range", "ends_at")
    status, body = await put_booking(gate, "b-5", {**booking_body(start + timedelta(hours=5)),
                                                   "client_id": "nobody"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    for booking_id in ("b-2", "b-3", "b-4", "b-5"):
        response = await gate.get(f"/api/v1/bookings/{booking_id}", headers=AUTH)
        assert response.status == 404
    assert await credits(gate) == {"client_id": "cli-1", "hub_id": "acme", "balance": 0,
                                   "reserved": 1}


async def test_blocks_make_slots_taken_until_deleted(gate: GateClient, clock: FakeClock) -> None:
    """A block refuses overlapping bookings; deleting it frees the time."""
    await seed_people(gate)
    start = clock.now + timedelta(days=3)
    response = await gate.post("/api/v1/professionals/pro-1/blocks", headers=AUTH, json={
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat(),
        "reason": "training"})
    assert response.status == 201
    block_id = (await response.json())["block_id"]
    status, body = await put_booking(gate, "b-1", booking_body(start + timedelta(minutes=10)))
    assert (status, body["error"]["code"]) == (409, "slot_taken")
    response = await gate.delete(f"/api/v1/professionals/pro-1/blocks/{block_id}", headers=AUTH)
    assert response.status == 204
    assert (await put_booking(gate, "b-1", booking_body(start + timedelta(minutes=10))))[0] == 201


async def test_fifty_concurrent_overlapping_bookings_give_exactly_one_201(
        gate: GateClient, clock: FakeClock) -> None:
    """The database refuses double booking under a 50-way race."""
    await seed_people(gate, credits=0, hub=None)
    start = clock.now + timedelta(days=1)
    results = await asyncio.gather(*(
        put_booking(gate, f"race-{i}", booking_body(start + timedelta(minutes=i),
                                                    funding="private", source="direct"))
        for i in range(50)))
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 1
    assert statuses.count(409) == 49
    assert all(body["error"]["code"] == "slot_taken" for status, body in results
               if status == 409)


async def test_links_carry_a_verifiable_eddsa_token_in_the_fragment(
        gate: GateClient, clock: FakeClock) -> None:
    """Join links put an EdDSA token with the contract's claims in the URL fragment."""
    await seed_people(gate)
    start = clock.now + timedelta(hours=1)
    _, booking = await put_booking(gate, "b-1", booking_body(start))
    response = await gate.post("/api/v1/bookings/b-1/links", headers=AUTH)
    links = await response.json()
    jwks = await (await gate.get("/.well-known/jwks.json")).json()
    public_key = jwt.PyJWK(jwks["keys"][0]).key
    for role in ("professional", "client"):
        url = links[role]["url"]
        prefix = f"https://care.example/s/{booking['room_id']}#t="
        assert url.startswith(prefix)
        claims = jwt.decode(url.removeprefix(prefix), public_key, algorithms=["EdDSA"],
                            audience="carecall-signalling", issuer="carecall-gate",
                            options={"verify_nbf": False, "verify_exp": False,
                                     "verify_iat": False})
        assert claims["role"] == role and claims["room"] == booking["room_id"]
        assert claims["bkg"] == "b-1"
        assert claims["nbf"] == int((start - timedelta(seconds=900)).timestamp())
        assert claims["exp"] == int((start + timedelta(minutes=50, seconds=900)).timestamp())
    assert links["client"]["expires_at"].endswith("Z")


async def test_cancel_rules_and_credit_release(gate: GateClient, clock: FakeClock) -> None:
    """Timely cancel releases the credit; a late client cancel is chargeable and consumes it."""
    await seed_people(gate, credits=2)
    await put_booking(gate, "early", booking_body(clock.now + timedelta(days=3)))
    await put_booking(gate, "late", booking_body(clock.now + timedelta(hours=3)))
    assert await credits(gate) == {"client_id": "cli-1", "hub_id": "acme", "balance": 0,
                                   "reserved": 2}
    response = await gate.post("/api/v1/bookings/early/cancel", headers=AUTH,
                               json={"by": "client", "reason": "ill"})
    body = await response.json()
    assert body["status"] == "cancelled"
    assert body["cancellation"]["late"] is False and body["cancellation"]["chargeable"] is False
    response = await gate.post("/api/v1/bookings/late/cancel", headers=AUTH, json={"by": "client"})
    cancellation = (await response.json())["cancellation"]
    assert cancellation["late"] is True and cancellation["chargeable"] is True
    assert await credits(gate) == {"client_id": "cli-1", "hub_id": "acme", "balance": 1,
                                   "reserved": 0}
    record = await (await gate.get("/api/v1/bookings/late/attendance", headers=AUTH)).json()
    assert (record["status"], record["outcome"], record["billable"], record["payer"]) == (
        "final", "late_cancellation", True, "sponsor")
    response = await gate.post("/api/v1/bookings/late/links", headers=AUTH)
    assert (await response.json())["error"]["code"] == "booking_cancelled"


async def test_reschedule_only_for_hub_bookings(gate: GateClient, clock: FakeClock) -> None:
    """Hub bookings move; direct ones answer 409 not_modifiable."""
    await seed_people(gate)
    start = clock.now + timedelta(days=2)
    await put_booking(gate, "hub", booking_body(start))
    await put_booking(gate, "direct", booking_body(start + timedelta(hours=2), funding="private",
                                                   source="direct"))
    new_start = start + timedelta(days=1)
    response = await gate.post("/api/v1/bookings/hub/reschedule", headers=AUTH, json={
        "starts_at": new_start.isoformat(),
        "ends_at": (new_start + timedelta(minutes=50)).isoformat(), "by": "client"})
    assert response.status == 200
    assert (await response.json())["starts_at"] == new_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    response = await gate.post("/api/v1/bookings/direct/reschedule", headers=AUTH, json={
        "starts_at": new_start.isoformat(),
        "ends_at": (new_start + timedelta(minutes=50)).isoformat(), "by": "client"})
    assert (response.status, (await response.json())["error"]["code"]) == (409, "not_modifiable")


async def ingest(gate: GateClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = await gate.post("/api/v1/attendance/events", headers=AUTH, json={"events": events})
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def event(event_id: str, role: str, kind: str, at: Any) -> dict[str, Any]:
    return {"event_id": event_id, "booking_id": "b-1", "role": role, "kind": kind,
            "at": at.isoformat()}


async def test_the_same_event_id_ingested_100_times_is_stored_once(
        gate: GateClient, clock: FakeClock) -> None:
    """Attendance ingestion is idempotent by event id, even concurrently."""
    await seed_people(gate)
    await put_booking(gate, "b-1", booking_body(clock.now))
    results = await asyncio.gather(*(
        ingest(gate, [event("ev-1", "client", "joined", clock.now)]) for _ in range(100)))
    assert sum(r["stored"] for r in results) == 1
    record = await (await gate.get("/api/v1/bookings/b-1/attendance", headers=AUTH)).json()
    assert record["parties"]["client"]["intervals"] == [
        {"from": clock.now.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": None}]


async def test_brief_client_join_completes_and_consumes_the_credit(
        gate: GateClient, clock: FakeClock) -> None:
    """A client present 5 s with media connected is completed, billable, credit consumed."""
    await seed_people(gate, credits=1)
    start = clock.now
    await put_booking(gate, "b-1", booking_body(start))
    await ingest(gate, [
        event("e1", "professional", "joined", start),
        event("e2", "client", "joined", start + timedelta(seconds=60)),
        event("e3", "client", "media_connected", start + timedelta(seconds=62)),
        event("e4", "client", "left", start + timedelta(seconds=65)),
        event("e5", "professional", "left", start + timedelta(minutes=50)),
    ])
    pending = await (await gate.get("/api/v1/bookings/b-1/attendance", headers=AUTH)).json()
    assert (pending["status"], pending["outcome"]) == ("pending", None)
    clock.advance(minutes=50 + 15)
    record = await (await gate.get("/api/v1/bookings/b-1/attendance", headers=AUTH)).json()
    assert (record["status"], record["outcome"], record["billable"], record["payer"]) == (
        "final", "completed", True, "sponsor")
    assert record["parties"]["client"]["present_seconds"] == 5
    assert await credits(gate) == {"client_id": "cli-1", "hub_id": "acme", "balance": 0,
                                   "reserved": 0}


async def test_signalling_reports_media_failed_and_audio_only_over_http(
        gate: GateClient, clock: FakeClock) -> None:
    """POST /api/v1/attendance/events takes media_failed with its cause and
    media_connected with audio_only; the record splits the time and a record stored
    without the new fields (rules 1) reads them as 0."""
    await seed_people(gate, credits=2)
    start = clock.now
    await put_booking(gate, "b-1", booking_body(start))
    at = [start + timedelta(seconds=s) for s in (0, 1, 2, 10, 70, 100)]
    await ingest(gate, [
        event("e1", "professional", "joined", at[0]), event("e2", "client", "joined", at[1]),
        {**event("e3", "client", "media_failed", at[2]), "reason": "no_candidate_pair"},
        {**event("e4", "client", "media_connected", at[3]), "reason": "audio_only"},
        {**event("e5", "client", "media_connected", at[4]), "reason": "video"},
        event("e6", "client", "left", at[5])])
    clock.advance(hours=2)
    record = await (await gate.get("/api/v1/bookings/b-1/attendance", headers=AUTH)).json()
    assert (record["outcome"], record["rule_version"]) == ("completed", "carecall-rules/2")
    assert (record["audio_only_seconds"], record["video_seconds"]) == (60, 30)

    old = {key: value for key, value in record.items()
           if key not in ("video_seconds", "audio_only_seconds", "overrides")}
    async with gate.app[SERVICE].store.engine.begin() as conn:
        await conn.execute(update(t.attendance_records).where(
            t.attendance_records.c.booking_id == "b-1").values(
            record=json.dumps({**old, "rule_version": "carecall-rules/1"})))
    again = await (await gate.get("/api/v1/bookings/b-1/attendance", headers=AUTH)).json()
    assert (again["rule_version"], again["video_seconds"], again["audio_only_seconds"]) == (
        "carecall-rules/1", 0, 0)


async def test_override_is_audited_and_moves_the_credit(gate: GateClient, clock: FakeClock) -> None:
    """An override keeps who, when, from and to; a non-billable outcome gives the credit back."""
    await seed_people(gate, credits=1)
    await put_booking(gate, "b-1", booking_body(clock.now))
    await ingest(gate, [event("e1", "professional", "joined", clock.now)])
    clock.advance(hours=2)
    record = await (await gate.get("/api/v1/bookings/b-1/attendance", headers=AUTH)).json()
    assert (record["outcome"], record["payer"]) == ("client_no_show", "sponsor")
    response = await gate.post("/api/v1/bookings/b-1/attendance/override", headers=AUTH, json={
        "outcome": "technical_failure", "reason": "client's camera broke; ticket 42",
        "by": "ops@acme"})
    record = await response.json()
    assert (record["outcome"], record["billable"], record["payer"]) == (
        "technical_failure", False, None)
    assert record["overrides"] == [{
        "from": "client_no_show", "to": "technical_failure",
        "reason": "client's camera broke; ticket 42", "by": "ops@acme",
        "at": clock.now.strftime("%Y-%m-%dT%H:%M:%SZ")}]
    assert (await credits(gate))["balance"] == 1


async def test_billing_export_pages_in_start_order_and_filters(
        gate: GateClient, clock: FakeClock) -> None:
    """The export lists [from, to) by starts_at with a cursor, filterable by outcome and hub."""
    await seed_people(gate, credits=5)
    base = clock.now
    for i in range(5):
        await put_booking(gate, f"b-{i}", booking_body(base + timedelta(hours=i)))
    clock.advance(days=1)
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"from": base.isoformat(), "to": (base + timedelta(hours=4)).isoformat(),
                 "limit": "2"}
        if cursor:
            query["cursor"] = cursor
        page = await (await gate.get("/api/v1/attendance", headers=AUTH, params=query)).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i["booking_id"] for i in items] == ["b-0", "b-1", "b-2", "b-3"]
    assert {i["outcome"] for i in items} == {"both_no_show"}
    query = {"from": base.isoformat(), "to": (base + timedelta(days=1)).isoformat(),
             "outcome": "completed"}
    page = await (await gate.get("/api/v1/attendance", headers=AUTH, params=query)).json()
    assert page == {"items": [], "next_cursor": None}
    query = {"from": base.isoformat(), "to": (base + timedelta(days=1)).isoformat(),
             "hub_id": "other"}
    page = await (await gate.get("/api/v1/attendance", headers=AUTH, params=query)).json()
    assert page["items"] == []
    response = await gate.get("/api/v1/attendance", headers=AUTH, params={"from": "yesterday"})
    assert (await response.json())["error"]["field"] in ("from", "to")


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/api/v1/openapi.json",
                                  "/.well-known/jwks.json"])
async def test_operations_endpoints_need_no_key(gate: GateClient, path: str) -> None:
    """Health, metrics, OpenAPI and JWKS are public and answer 200."""
    response = await gate.get(path)
    assert response.status == 200
    if path == "/healthz":
        assert await response.json() == {"status": "ok"}


@pytest.mark.parametrize("email", ["a\x00@example.org", "a@example.org\r\nBcc: x@y.z",
                                   "a\u202e@example.org", "a@exa\tmple.org"])
async def test_an_email_with_a_control_character_is_422_and_nothing_is_stored(
        gate: GateClient, email: str) -> None:
    response = await gate.put("/api/v1/clients/c-ctl", headers=AUTH, json={
        "name": "A", "email": email, "timezone": "UTC", "hub_id": None})
    error = (await response.json())["error"]
    assert (response.status, error["field"]) == (422, "email")
    response = await gate.get("/api/v1/clients/c-ctl/credits", headers=AUTH)
    assert response.status == 404


async def test_a_name_is_kept_on_one_line_whatever_it_contains(gate: GateClient) -> None:
    """CR, LF, NUL and bidi overrides in a name become single spaces: the name cannot
    add a line to an email or a calendar entry; a name of nothing but them is 422."""
    response = await gate.put("/api/v1/clients/c-nl", headers=AUTH, json={
        "name": " Ann\r\nBcc: evil@example.org\x00\u202e ", "email": "ann@example.org",
        "timezone": "UTC", "hub_id": None})
    assert response.status in (200, 201), await response.text()
    assert (await response.json())["name"] == "Ann Bcc: evil@example.org"
    response = await gate.put("/api/v1/clients/c-nl2", headers=AUTH, json={
        "name": "\r\n\x00", "email": "ann@example.org", "timezone": "UTC", "hub_id": None})
    assert ((await response.json())["error"]["field"], response.status) == ("name", 422)
