"""Cancellation policies: 24 h for hub bookings, the professional's notice outside hubs,
the terms quoted before a cancel, and the professional's audited waiver, on both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import AUTH, FakeClock, GateClient, booking_body


async def call(gate: GateClient, method: str, path: str, body: Any = None,
               status: int = 200) -> Any:
    response = await gate.request(method, path, headers=AUTH, json=body)
    data = await response.json()
    assert response.status == status, data
    return data


async def put_professional(gate: GateClient, **extra: Any) -> dict[str, Any]:
    body = {"name": "Dr Pro", "email": "pro@example.org", "timezone": "Europe/Oslo",
            "availability": [{"weekday": d, "start": "00:00", "end": "24:00"}
                             for d in range(7)], **extra}
    data: dict[str, Any] = await call(gate, "PUT", "/api/v1/professionals/pro-1", body)
    return data


async def people(gate: GateClient, notice: int = 48) -> None:
    """pro-1 with ``notice`` hours outside hubs; cli-1 of hub acme (2 credits), cli-2 private."""
    await put_professional(gate, cancellation_notice_hours=notice)
    for client_id, hub in (("cli-1", "acme"), ("cli-2", None)):
        await call(gate, "PUT", f"/api/v1/clients/{client_id}", {
            "name": "Someone", "email": f"{client_id}@example.org",
            "timezone": "Europe/Oslo", "hub_id": hub})
    await call(gate, "POST", "/api/v1/hubs/acme/credits", {"client_id": "cli-1", "credits": 2})


def private_body(clock: FakeClock, hours: float) -> dict[str, Any]:
    return {**booking_body(clock.now + timedelta(hours=hours), funding="private",
                           source="direct"), "client_id": "cli-2"}


async def terms(gate: GateClient, booking_id: str, by: str) -> dict[str, Any]:
    data: dict[str, Any] = await call(
        gate, "GET", f"/api/v1/bookings/{booking_id}/cancellation-terms?by={by}")
    return data


async def test_the_professionals_notice_applies_outside_hubs_and_can_be_waived(
        gate: GateClient, clock: FakeClock) -> None:
    """48 h notice, the client cancels 30 h ahead: the terms said late and chargeable,
    the record is late_cancellation billed to the client; the professional's waiver makes
    it cancelled, in the audit trail and the explanation."""
    await people(gate, notice=48)
    await call(gate, "PUT", "/api/v1/bookings/p-1", private_body(clock, 30), 201)
    quoted = await terms(gate, "p-1", "client")
    assert quoted == {"late": True, "chargeable": True, "notice_hours": 48, "message": (
        "A cancellation fee may apply under your professional's terms: cancelling now is "
        "less than 48 hours before the start.")}
    by_professional = await terms(gate, "p-1", "professional")
    assert (by_professional["late"], by_professional["chargeable"]) == (True, False)

    booking = await call(gate, "POST", "/api/v1/bookings/p-1/cancel",
                         {"by": "client", "reason": "cannot come"})
    assert booking["cancellation"]["late"] is True
    assert booking["cancellation"]["chargeable"] is True
    record = await call(gate, "GET", "/api/v1/bookings/p-1/attendance")
    assert (record["status"], record["outcome"], record["billable"], record["payer"]) == (
        "final", "late_cancellation", True, "client")
    assert record["explanation"] == ("The client cancelled less than 48 hours before the "
                                     "start, so the session is billable to the client.")

    waived = await call(gate, "POST", "/api/v1/bookings/p-1/attendance/override", {
        "outcome": "cancelled", "reason": "family emergency", "by": "professional"})
    assert (waived["outcome"], waived["billable"], waived["payer"]) == (
        "cancelled", False, None)
    assert waived["explanation"] == (
        "The client cancelled less than 48 hours before the start; the charge was waived "
        "by the professional, so the session is not billable: family emergency.")
    (audit,) = waived["overrides"]
    assert {k: audit[k] for k in ("from", "to", "by", "reason")} == {
        "from": "late_cancellation", "to": "cancelled", "by": "professional",
        "reason": "family emergency"}
    assert await call(gate, "GET", "/api/v1/bookings/p-1/attendance") == waived


async def test_a_hub_booking_keeps_the_24_hour_rule(gate: GateClient, clock: FakeClock) -> None:
    """The same professional (48 h): a hub booking 30 h ahead is not late; 20 h is."""
    await people(gate, notice=48)
    await call(gate, "PUT", "/api/v1/bookings/h-1", booking_body(clock.now + timedelta(
        hours=30)), 201)
    quoted = await terms(gate, "h-1", "client")
    assert quoted == {"late": False, "chargeable": False, "notice_hours": 24, "message":
                      "Cancelling now is free of charge: the session is 24 hours or more "
                      "away."}
    booking = await call(gate, "POST", "/api/v1/bookings/h-1/cancel", {"by": "client"})
    assert booking["cancellation"]["late"] is False
    record = await call(gate, "GET", "/api/v1/bookings/h-1/attendance")
    assert (record["outcome"], record["billable"]) == ("cancelled", False)
    assert (await call(gate, "GET", "/api/v1/clients/cli-1/credits"))["balance"] == 2

    await call(gate, "PUT", "/api/v1/bookings/h-2", booking_body(clock.now + timedelta(
        hours=20)), 201)
    quoted = await terms(gate, "h-2", "client")
    assert (quoted["late"], quoted["chargeable"], quoted["notice_hours"]) == (True, True, 24)
    assert "under your hub's terms the session counts as used" in quoted["message"]


async def test_a_private_booking_with_enough_notice_is_free(
        gate: GateClient, clock: FakeClock) -> None:
    """49 h ahead of a 48 h notice: not late, cancelled, not billable."""
    await people(gate, notice=48)
    await call(gate, "PUT", "/api/v1/bookings/p-2", private_body(clock, 49), 201)
    assert (await terms(gate, "p-2", "client"))["late"] is False
    await call(gate, "POST", "/api/v1/bookings/p-2/cancel", {"by": "client"})
    record = await call(gate, "GET", "/api/v1/bookings/p-2/attendance")
    assert (record["outcome"], record["billable"]) == ("cancelled", False)
    assert record["explanation"].startswith("The client cancelled 48 hours or more")


async def test_the_notice_defaults_to_24_and_is_validated(gate: GateClient) -> None:
    """PUT without it stores 24; out of range or not a number is 422 naming the field."""
    assert (await put_professional(gate))["cancellation_notice_hours"] == 24
    assert (await put_professional(gate, cancellation_notice_hours=72))[
        "cancellation_notice_hours"] == 72
    for bad in (-1, 721, "48", True):
        response = await gate.put("/api/v1/professionals/pro-1", headers=AUTH, json={
            "name": "Dr Pro", "email": "pro@example.org", "timezone": "UTC",
            "cancellation_notice_hours": bad})
        error = (await response.json())["error"]
        assert (response.status, error["field"]) == (422, "cancellation_notice_hours")
        assert error["message"] == ("'cancellation_notice_hours' must be a whole number "
                                    "from 0 to 720")


@pytest.mark.parametrize(("query", "status", "code"), [
    ("", 422, "invalid_request"),
    ("?by=sponsor", 422, "invalid_request"),
    ("?by=client&when=now", 422, "invalid_request"),
])
async def test_terms_refuse_bad_queries(gate: GateClient, clock: FakeClock, query: str,
                                        status: int, code: str) -> None:
    """A missing or unknown `by`, or an unknown parameter, is refused."""
    await people(gate)
    await call(gate, "PUT", "/api/v1/bookings/p-1", private_body(clock, 30), 201)
    error = await call(gate, "GET", f"/api/v1/bookings/p-1/cancellation-terms{query}",
                       status=status)
    assert error["error"]["code"] == code


async def test_terms_of_a_cancelled_or_unknown_booking(gate: GateClient,
                                                       clock: FakeClock) -> None:
    """A cancelled booking is 409 booking_cancelled; an unknown one 404."""
    await people(gate)
    await call(gate, "PUT", "/api/v1/bookings/p-1", private_body(clock, 30), 201)
    await call(gate, "POST", "/api/v1/bookings/p-1/cancel", {"by": "professional"})
    error = await call(gate, "GET", "/api/v1/bookings/p-1/cancellation-terms?by=client",
                       status=409)
    assert error["error"]["code"] == "booking_cancelled"
    error = await call(gate, "GET", "/api/v1/bookings/nope/cancellation-terms?by=client",
                       status=404)
    assert error["error"]["code"] == "not_found"
