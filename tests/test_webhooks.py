"""booking_gate.webhooks: Standard Webhooks signatures (checked with the standardwebhooks
library), secrets, the delivery state table, backoff with jitter, event bodies."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from booking_gate import webhooks
from booking_gate.errors import Conflict
from booking_gate.webhooks import (
    TRANSITIONS,
    BookedBy,
    DeliveryEvent,
    DeliveryState,
    WebhookType,
    attempt_event,
    next_state,
    parse_secret,
    retry_delay,
    signed_headers,
)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
BODY = b'{"type":"booking.created","timestamp":"2026-11-23T08:00:00Z","data":{}}'


def test_a_signature_verifies_with_the_standardwebhooks_library() -> None:
    """The headers of one attempt verify with the library, for the real current time."""
    secret = webhooks.new_secret()
    stamp = int(datetime.now(UTC).timestamp())
    headers = signed_headers([parse_secret(secret)], "msg_1", stamp, BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    assert headers["webhook-signature"] == Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(stamp, tz=UTC), BODY.decode())


def test_a_changed_body_id_or_secret_does_not_verify() -> None:
    """Tampering with the body or the id, or another secret, fails verification."""
    secret = webhooks.new_secret()
    stamp = int(datetime.now(UTC).timestamp())
    headers = signed_headers([parse_secret(secret)], "msg_1", stamp, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"created", b"cancelled"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(BODY, headers)


def test_a_rotation_carries_two_signatures_each_verifying() -> None:
    """With a previous secret, two space-separated v1 entries: either secret verifies."""
    current, previous = webhooks.new_secret(), webhooks.new_secret()
    stamp = int(datetime.now(UTC).timestamp())
    headers = signed_headers([parse_secret(current), parse_secret(previous)], "msg_9", stamp,
                             BODY)
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    for secret in (current, previous):
        assert Webhook(secret).verify(BODY, headers)["type"] == "booking.created"


@pytest.mark.parametrize(("secret", "message"), [
    ("abc", "must look like whsec_<base64>"),
    ("whsec_!!!notbase64", "must be whsec_ followed by base64"),
    ("whsec_" + base64.b64encode(b"short").decode(), "must hold 24 to 64 bytes (got 5)"),
    ("whsec_" + base64.b64encode(b"x" * 65).decode(), "must hold 24 to 64 bytes (got 65)"),
])
def test_bad_secrets_are_refused_without_quoting_them(secret: str, message: str) -> None:
    """A malformed secret is a ValueError naming the variable, never the value."""
    with pytest.raises(ValueError, match="CARECALL_WEBHOOK_SECRET") as caught:
        parse_secret(secret)
    assert message in str(caught.value)
    assert secret not in str(caught.value)


def test_unpadded_base64_secrets_are_accepted() -> None:
    """whsec_ secrets without = padding (as some providers print them) work."""
    key = b"k" * 32
    secret = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert parse_secret(secret) == key


def test_the_state_table_is_the_documented_one() -> None:
    """Delivered is terminal; failed only leaves by an operator's retry."""
    assert next_state(DeliveryState.PENDING, DeliveryEvent.ACCEPTED) is DeliveryState.DELIVERED
    assert next_state(DeliveryState.PENDING, DeliveryEvent.GAVE_UP) is DeliveryState.FAILED
    assert next_state(DeliveryState.FAILED, DeliveryEvent.RETRY) is DeliveryState.PENDING
    assert not any(state is DeliveryState.DELIVERED for state, _ in TRANSITIONS)
    with pytest.raises(Conflict) as caught:
        next_state(DeliveryState.DELIVERED, DeliveryEvent.RETRY)
    assert caught.value.code == "already_delivered"
    assert caught.value.message == "a delivered delivery cannot take 'retry'"
    with pytest.raises(Conflict, match="a failed delivery cannot take 'accepted'"):
        next_state(DeliveryState.FAILED, DeliveryEvent.ACCEPTED)


@pytest.mark.parametrize(("status", "age_hours", "expected"), [
    (200, 30, DeliveryEvent.ACCEPTED),
    (204, 0, DeliveryEvent.ACCEPTED),
    (410, 30, DeliveryEvent.GONE),
    (500, 1, DeliveryEvent.REFUSED),
    (None, 23.9, DeliveryEvent.REFUSED),
    (301, 23.9, DeliveryEvent.REFUSED),
    (500, 24, DeliveryEvent.GAVE_UP),
    (None, 48, DeliveryEvent.GAVE_UP),
])
def test_attempt_outcomes(status: int | None, age_hours: float,
                          expected: DeliveryEvent) -> None:
    """2xx delivers, 410 disables, anything else retries until 24 h have passed."""
    created = NOW - timedelta(hours=age_hours)
    assert attempt_event(status, created, NOW, timedelta(hours=24)) is expected


def test_backoff_doubles_to_its_cap_with_equal_jitter() -> None:
    """5 s, 10 s, 20 s ... capped, each scaled into [half, whole] by the jitter."""
    first, cap = timedelta(seconds=5), timedelta(hours=1)
    assert [retry_delay(n, first, cap, 0.999999).total_seconds() // 1 for n in range(4)] == [
        4, 9, 19, 39]
    assert retry_delay(0, first, cap, 0.0) == timedelta(seconds=2.5)
    assert retry_delay(200, first, cap, 0.0) == cap / 2
    assert retry_delay(200, first, cap, 0.5) == cap * 0.75
    with pytest.raises(ValueError, match="jitter"):
        retry_delay(1, first, cap, 1.0)


def test_backoff_reaches_the_horizon_in_a_bounded_number_of_attempts() -> None:
    """With the defaults, 24 h of retries take a few dozen attempts, never thousands."""
    elapsed, attempts = timedelta(), 0
    while elapsed < timedelta(hours=24):
        elapsed += retry_delay(attempts, timedelta(seconds=5), timedelta(hours=1), 0.0)
        attempts += 1
    assert 30 < attempts < 70


def test_event_bodies_and_keys() -> None:
    """A body is {type, timestamp, data} in RFC 3339 UTC; keys group one booking's."""
    booking = {"booking_id": "b-1", "source": "hub", "starts_at": "2026-11-24T09:00:00Z"}
    message = webhooks.booking_created(booking, BookedBy.PROFESSIONAL, NOW)
    assert message.kind == webhooks.WEBHOOK
    assert message.payload == {"type": "booking.created", "timestamp": "2026-11-23T08:00:00Z",
                               "data": {**booking, "booked_by": "professional"}}
    assert message.order_key == "booking:b-1" and message.event_type == "booking.created"
    assert message.webhook_id is not None and message.webhook_id.startswith("msg_")
    other = webhooks.booking_cancelled(booking, NOW)
    assert other.webhook_id != message.webhook_id and other.order_key == message.order_key
    credits = webhooks.credits_changed(client_id="c-1", hub_id="acme", balance=2, reserved=1,
                                       why="reserve", booking_id="b-1", note=None, at=NOW)
    assert credits.order_key == "credits:c-1"
    assert credits.payload["data"] == {"client_id": "c-1", "hub_id": "acme", "balance": 2,
                                       "reserved": 1, "why": "reserve", "booking_id": "b-1",
                                       "note": None}
    assert {t.value for t in WebhookType} == {
        "booking.created", "booking.rescheduled", "booking.cancelled", "attendance.finalized",
        "attendance.overridden", "credits.changed"}


def test_delivery_items_show_the_next_attempt_only_while_pending() -> None:
    """A delivered or failed item has next_attempt_at null."""
    item = webhooks.delivery_json(webhook_id="msg_1", event_type="booking.created",
                                  state=DeliveryState.PENDING, attempts=2, last_status=503,
                                  next_attempt_at=NOW)
    assert item == {"webhook_id": "msg_1", "type": "booking.created", "state": "pending",
                    "attempts": 2, "last_status": 503,
                    "next_attempt_at": "2026-11-23T08:00:00Z"}
    done = webhooks.delivery_json(webhook_id="msg_1", event_type="booking.created",
                                  state=DeliveryState.DELIVERED, attempts=3, last_status=200,
                                  next_attempt_at=NOW)
    assert done["next_attempt_at"] is None


def test_the_openapi_document_describes_every_type_and_the_new_shapes() -> None:
    """Its webhooks section has one POST per type; the terms, the bookings page and the
    deliveries page the service builds validate against their schemas."""
    from jsonschema import Draft202012Validator

    from booking_gate.openapi import openapi_document
    from booking_gate.rules import CancellationTerms

    doc = openapi_document("https://gate.example")
    assert set(doc["webhooks"]) == {t.value for t in WebhookType}
    for event_type, item in doc["webhooks"].items():
        assert set(item) == {"post"}
        assert {p["name"] for p in item["post"]["parameters"]} == {
            "webhook-id", "webhook-timestamp", "webhook-signature"}
        assert event_type in item["post"]["summary"]

    def valid(name: str, instance: object) -> bool:
        root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        return Draft202012Validator(
            root, format_checker=Draft202012Validator.FORMAT_CHECKER).is_valid(instance)

    terms = CancellationTerms(True, True, 48, "A cancellation fee may apply.").to_json()
    assert valid("CancellationTerms", terms)
    assert not valid("CancellationTerms", {**terms, "notice_hours": -1})
    item = webhooks.delivery_json(webhook_id="msg_1", event_type="credits.changed",
                                  state=DeliveryState.FAILED, attempts=30, last_status=None,
                                  next_attempt_at=NOW)
    assert valid("WebhookDeliveryPage", {"items": [item], "next_cursor": None})
    assert not valid("WebhookDelivery", {**item, "state": "lost"})
    assert valid("BookingPage", {"items": [], "next_cursor": "abc"})
    export = doc["paths"]["/api/v1/attendance"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"application/json", "text/csv"}
    assert "`professional_name`" in export["text/csv"]["schema"]["description"]
