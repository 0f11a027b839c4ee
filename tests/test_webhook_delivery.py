"""Webhooks end to end in one process: the gate's outbox, its sender and a real receiver.

The receiver is an aiohttp server on 127.0.0.1 that verifies each delivery with the
``standardwebhooks`` library. The gate runs on SQLite and PostgreSQL; tests with a fake
clock drive the sender's passes (``deliver_due``) instead of waiting for its timer (the
sender's own loop may run a pass too: passes hold one lock, so once ``deliver_due``
returns every event due at the fake time has been handled, by whichever pass).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from booking_gate.app import make_app
from booking_gate.appkeys import SERVICE, WEBHOOKS
from booking_gate.config import GateConfig
from booking_gate.openapi import openapi_document
from tests.conftest import AUTH, FakeClock, GateClient, booking_body, seed_people
from tests.webhook_receiver import SECRET, Receiver

DOC = openapi_document("https://gate.example")


def webhook_validator(event_type: str) -> Draft202012Validator:
    schema = DOC["webhooks"][event_type]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    root = {**schema, "components": DOC["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    await hooks.start()
    try:
        yield hooks
    finally:
        await hooks.stop()


@pytest.fixture
def clock() -> FakeClock:
    # Near the real time: the receiver checks webhook-timestamp against it.
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hook_config(gate_config: GateConfig, receiver: Receiver) -> GateConfig:
    # A long interval: the sender's loop runs when a commit wakes it, or when driven.
    return dataclasses.replace(
        gate_config, webhook_url=receiver.url, webhook_secret=SECRET,
        webhook_interval=3600, webhook_timeout=5.0)


@pytest.fixture
async def gate(hook_config: GateConfig, clock: FakeClock,
               aiohttp_client: Callable[..., Any]) -> GateClient:
    client: GateClient = await aiohttp_client(make_app(hook_config, clock=clock))
    return client


async def deliver(gate: GateClient) -> int:
    delivered: int = await gate.app[WEBHOOKS].deliver_due()
    return delivered


async def call(gate: GateClient, method: str, path: str, body: Any = None,
               status: int = 200) -> Any:
    response = await gate.request(method, path, headers=AUTH, json=body)
    data = await response.json()
    assert response.status == status, data
    return data


async def deliveries(gate: GateClient, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = await call(gate, "GET", "/api/v1/webhooks/deliveries?" + "&".join(
            f"{k}={v}" for k, v in query.items()))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_every_event_type_carries_the_rest_shapes(
        gate: GateClient, clock: FakeClock, receiver: Receiver) -> None:
    """Each type arrives signed, fits its OpenAPI webhook schema, and its data is what
    the REST API answers; one booking's events arrive in order."""
    await seed_people(gate, credits=3)
    start = clock.now + timedelta(days=2)
    created = await call(gate, "PUT", "/api/v1/bookings/b-1", booking_body(start), 201)
    moved = booking_body(start + timedelta(days=1))
    rescheduled = await call(gate, "POST", "/api/v1/bookings/b-1/reschedule", {
        "starts_at": moved["starts_at"], "ends_at": moved["ends_at"], "by": "professional"})
    await call(gate, "PUT", "/api/v1/bookings/b-2", booking_body(start + timedelta(hours=2)),
               201)
    cancelled = await call(gate, "POST", "/api/v1/bookings/b-2/cancel", {"by": "client"})
    finalized = await call(gate, "GET", "/api/v1/bookings/b-2/attendance")
    # A session that ended an hour ago: final (both no-show) once the gate has settled.
    await call(gate, "PUT", "/api/v1/bookings/b-3",
               booking_body(clock.now - timedelta(hours=2)), 201)
    clock.advance(seconds=31)
    no_show = await call(gate, "GET", "/api/v1/bookings/b-3/attendance")
    assert no_show["outcome"] == "both_no_show"
    overridden = await call(gate, "POST", "/api/v1/bookings/b-3/attendance/override",
                            {"outcome": "completed", "reason": "met by phone", "by": "ops"})
    credits = await call(gate, "GET", "/api/v1/clients/cli-1/credits")
    await deliver(gate)

    assert receiver.invalid == [] and receiver.refused == []
    assert len(set(receiver.ids())) == len(receiver.ids()) == 15
    for hook in receiver.received:
        errors = [e.message for e in webhook_validator(hook.type).iter_errors(hook.body)]
        assert errors == [], (hook.type, errors)
        assert hook.body["timestamp"].endswith("Z")
    by_booking = [(h.type, h.data["booking_id"]) for h in receiver.received
                  if h.type != "credits.changed"]
    for booking_id, types in (
            ("b-1", ["booking.created", "booking.rescheduled"]),
            ("b-2", ["booking.created", "booking.cancelled", "attendance.finalized"]),
            ("b-3", ["booking.created", "attendance.finalized", "attendance.overridden"])):
        assert [t for t, b in by_booking if b == booking_id] == types
    first = receiver.of_type("booking.created")[0].data
    assert first == {**created, "booked_by": "booking_system"}
    move = receiver.of_type("booking.rescheduled")[0].data
    assert move == {**rescheduled, "previous": {"starts_at": created["starts_at"],
                                                "ends_at": created["ends_at"]},
                    "rescheduled_by": "professional"}
    (cancel,) = receiver.of_type("booking.cancelled")
    assert cancel.data == cancelled and cancel.data["cancellation"]["late"] is False
    finals = {h.data["booking_id"]: h.data for h in receiver.of_type("attendance.finalized")}
    assert finals["b-2"] == finalized and finals["b-3"] == no_show
    (override,) = receiver.of_type("attendance.overridden")
    assert override.data == overridden and override.data["overrides"][0]["by"] == "ops"
    whys = [(h.data["why"], h.data["booking_id"]) for h in receiver.of_type("credits.changed")]
    assert whys == [("grant", None), ("reserve", "b-1"), ("reserve", "b-2"),
                    ("release", "b-2"), ("reserve", "b-3"), ("release", "b-3"),
                    ("consume", "b-3")]
    last = receiver.of_type("credits.changed")[-1].data
    assert {k: last[k] for k in credits} == credits


async def test_a_refused_event_is_retried_then_failed_past_the_horizon_then_retried(
        gate: GateClient, clock: FakeClock, receiver: Receiver) -> None:
    """503s: pending with growing attempts for 24 h, then failed; an operator's retry
    (202) delivers it, with the webhook-id of every earlier attempt."""
    receiver.fresh = False  # the fake clock leaves real time behind
    receiver.status = 503
    await seed_people(gate, credits=0, hub=None)
    await call(gate, "PUT", "/api/v1/bookings/b-1",
               booking_body(clock.now + timedelta(days=3), funding="private",
                            source="direct"), 201)
    await deliver(gate)
    (item,) = await deliveries(gate)
    assert (item["type"], item["state"], item["attempts"], item["last_status"]) == (
        "booking.created", "pending", 1, 503)
    for _ in range(23):
        clock.advance(hours=1)  # the backoff's cap: every retry is due again
        await deliver(gate)
    (item,) = await deliveries(gate, state="pending")
    assert item["attempts"] == 24 and item["next_attempt_at"] is not None
    clock.advance(hours=1, seconds=1)
    await deliver(gate)
    assert await deliveries(gate, state="pending") == []
    (failed,) = await deliveries(gate, state="failed")
    assert failed["webhook_id"] == item["webhook_id"] and failed["next_attempt_at"] is None
    assert set(receiver.refused) == {item["webhook_id"]} and len(receiver.refused) == 25
    clock.advance(hours=5)
    await deliver(gate)
    assert len(receiver.refused) == 25  # a failed event is not attempted again

    receiver.status = 200
    retried = await call(gate, "POST", f"/api/v1/webhooks/deliveries/{item['webhook_id']}"
                         "/retry", status=202)
    assert (retried["state"], retried["webhook_id"]) == ("pending", item["webhook_id"])
    await deliver(gate)
    assert receiver.ids() == [item["webhook_id"]]
    (done,) = await deliveries(gate, state="delivered")
    assert (done["attempts"], done["last_status"]) == (26, 204)
    again = await call(gate, "POST", f"/api/v1/webhooks/deliveries/{item['webhook_id']}"
                       "/retry", status=409)
    assert again["error"]["code"] == "already_delivered"
    missing = await call(gate, "POST", "/api/v1/webhooks/deliveries/msg_nope/retry",
                         status=404)
    assert missing["error"]["code"] == "not_found"


async def test_410_gone_stops_deliveries_until_enabled(
        gate: GateClient, clock: FakeClock, receiver: Receiver) -> None:
    """A 410 disables the receiver for every gate; nothing is attempted until the
    operator enables it; then everything arrives, nothing lost."""
    await seed_people(gate, credits=0, hub=None)
    receiver.status = 410
    body = booking_body(clock.now + timedelta(days=3), funding="private", source="direct")
    await call(gate, "PUT", "/api/v1/bookings/b-1", body, 201)
    await deliver(gate)
    assert receiver.attempts == 1
    status = await call(gate, "GET", "/api/v1/webhooks")
    assert (status["configured"], status["enabled"]) == (True, False)
    assert status["disabled_at"] is not None
    await call(gate, "POST", "/api/v1/bookings/b-1/cancel", {"by": "professional"})
    clock.advance(minutes=2)  # past any retry; within the receiver's 5-minute tolerance
    await deliver(gate)
    assert receiver.attempts == 1 and receiver.received == []
    assert {d["state"] for d in await deliveries(gate)} == {"pending"}

    receiver.status = 200
    assert (await call(gate, "POST", "/api/v1/webhooks/enable"))["enabled"] is True
    await deliver(gate)
    assert [h.type for h in receiver.received] == [
        "booking.created", "booking.cancelled", "attendance.finalized"]
    assert len(await deliveries(gate, state="delivered")) == 3


async def test_deliveries_page_filter_and_refuse_bad_queries(
        gate: GateClient, clock: FakeClock, receiver: Receiver) -> None:
    """limit and cursor page through every event once, oldest first; bad input is 422."""
    await seed_people(gate, credits=5)
    for n in range(3):
        await call(gate, "PUT", f"/api/v1/bookings/b-{n}",
                   booking_body(clock.now + timedelta(days=2, hours=n)), 201)
    await deliver(gate)  # settled: the pages below see the same states
    everything = await deliveries(gate)
    assert len(everything) == 7  # a grant, then a reservation and a booking each
    paged = await deliveries(gate, limit="2")
    assert paged == everything
    assert [d["type"] for d in everything[:3]] == [
        "credits.changed", "credits.changed", "booking.created"]
    for query, field in (("state=lost", "state"), ("limit=0", "limit"),
                         ("cursor=zzz", "cursor"), ("colour=red", "colour")):
        error = await call(gate, "GET", f"/api/v1/webhooks/deliveries?{query}", status=422)
        assert error["error"]["field"] == field


async def test_metrics_count_events_by_state_and_the_oldest_pending(
        gate: GateClient, clock: FakeClock, receiver: Receiver) -> None:
    """/metrics shows pending events and their age while the receiver refuses, then
    delivered ones."""
    await seed_people(gate, credits=0, hub=None)
    receiver.status = 500
    await call(gate, "PUT", "/api/v1/bookings/b-1",
               booking_body(clock.now + timedelta(days=3), funding="private",
                            source="direct"), 201)
    await deliver(gate)
    clock.advance(seconds=90)

    async def scrape() -> str:
        response = await gate.get("/metrics")
        return await response.text()

    text = await scrape()
    assert 'carecall_webhook_events{state="pending"} 1.0' in text
    assert 'carecall_webhook_events{state="delivered"} 0.0' in text
    assert "carecall_webhook_oldest_pending_seconds 90.0" in text
    receiver.status = 200
    await deliver(gate)
    text = await scrape()
    assert 'carecall_webhook_events{state="delivered"} 1.0' in text
    assert 'carecall_webhook_events{state="pending"} 0.0' in text
    assert "carecall_webhook_oldest_pending_seconds 0.0" in text


async def test_a_rotation_signs_with_both_secrets(
        gate_config: GateConfig, clock: FakeClock, aiohttp_client: Callable[..., Any]
) -> None:
    """With CARECALL_WEBHOOK_SECRET_PREVIOUS set, every delivery verifies with either."""
    from booking_gate.webhooks import new_secret

    previous = new_secret()
    hooks = Receiver(secrets=(SECRET, previous))
    await hooks.start()
    try:
        config = dataclasses.replace(gate_config, webhook_url=hooks.url,
                                     webhook_secret=SECRET, webhook_previous_secret=previous,
                                     webhook_interval=3600)
        gate: GateClient = await aiohttp_client(make_app(config, clock=clock))
        await seed_people(gate, credits=1)
        await gate.app[WEBHOOKS].deliver_due()
        assert hooks.invalid == [] and len(hooks.received) == 1
        assert len(hooks.received[0].signatures) == 2
    finally:
        await hooks.stop()


async def test_without_a_receiver_no_event_is_written(
        gate_config: GateConfig, clock: FakeClock, aiohttp_client: Callable[..., Any]
) -> None:
    """No CARECALL_WEBHOOK_URL: no webhook rows, status says so, enable is 409."""
    gate: GateClient = await aiohttp_client(make_app(gate_config, clock=clock))
    await seed_people(gate, credits=2)
    await call(gate, "PUT", "/api/v1/bookings/b-1",
               booking_body(clock.now + timedelta(days=2)), 201)
    assert (await call(gate, "GET", "/api/v1/webhooks/deliveries"))["items"] == []
    assert (await call(gate, "GET", "/api/v1/webhooks")) == {
        "configured": False, "enabled": False, "disabled_at": None}
    error = await call(gate, "POST", "/api/v1/webhooks/enable", status=409)
    assert error["error"]["code"] == "webhooks_not_configured"
    assert await gate.app[SERVICE].store.webhook_counts() is not None


async def test_an_in_call_next_booking_reaches_the_receiver_within_two_seconds(
        hook_config: GateConfig, receiver: Receiver, aiohttp_client: Callable[..., Any]
) -> None:
    """The professional books the next session in the call: booking.created (booked by
    the professional, with its source) arrives within 2 s, and the bookings list shows it."""
    gate: GateClient = await aiohttp_client(make_app(hook_config))  # the real clock
    await seed_people(gate, credits=3)
    now = datetime.now(UTC).replace(microsecond=0)
    booking = await call(gate, "PUT", "/api/v1/bookings/b-1", booking_body(now), 201)
    links = await call(gate, "POST", "/api/v1/bookings/b-1/links")
    token = links["professional"]["url"].split("#t=")[1]
    bearer = {"Authorization": f"Bearer {token}"}
    room = booking["room_id"]
    response = await gate.get(f"/api/v1/rooms/{room}/next-slots", headers=bearer)
    slot = (await response.json())["slots"][0]["starts_at"]
    await receiver.wait_for(3, timeout=5)  # the grant, the reservation, b-1
    seen = len(receiver.received)

    started = time.monotonic()
    response = await gate.post(f"/api/v1/rooms/{room}/next-booking", headers=bearer,
                               json={"starts_at": slot, "idempotency_key": "k-1"})
    assert response.status == 201, await response.text()
    new = await response.json()
    await receiver.wait_for(seen + 2, timeout=2.0)  # its reservation and booking.created
    elapsed = time.monotonic() - started
    (event,) = [h for h in receiver.of_type("booking.created")
                if h.data["booking_id"] == new["booking_id"]]
    assert elapsed < 2.0
    assert event.data == {**new, "booked_by": "professional"}
    assert event.data["source"] == "hub" and receiver.invalid == []

    listed = await call(gate, "GET", "/api/v1/bookings?client_id=cli-1")
    assert [b["booking_id"] for b in listed["items"]] == ["b-1", new["booking_id"]]
    assert listed["items"][1] == new and listed["next_cursor"] is None


async def test_a_stopping_gate_gives_back_what_it_holds(
        gate: GateClient, clock: FakeClock, receiver: Receiver) -> None:
    """close() releases this process's claims: another gate may take them at once."""
    from booking_gate.webhook_sender import WebhookSender

    receiver.status = 500
    await gate.app[WEBHOOKS].close()  # this test plays the senders itself
    await seed_people(gate, credits=1)
    store = gate.app[SERVICE].store
    later = clock.now + timedelta(hours=1)  # past any retry the app's sender scheduled
    sender = WebhookSender(store, gate.app[WEBHOOKS].config, clock)
    held = await store.claim_webhooks(sender.owner, later, timedelta(minutes=5), 10)
    assert len(held) == 1
    assert await store.claim_webhooks("someone-else", later, timedelta(minutes=5), 10) == []
    await sender.close()
    again = await store.claim_webhooks("someone-else", later, timedelta(minutes=5), 10)
    assert [e.webhook_id for e in again] == [e.webhook_id for e in held]
