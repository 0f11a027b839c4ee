"""Webhook events for the booking system: their bodies, signatures and delivery states.

Pure: no I/O and no clock (times are passed in). The store writes each event into the
outbox in the transaction of the change it reports (``Store._enqueue``);
``webhook_sender.py`` delivers them. Signing follows Standard Webhooks
(https://www.standardwebhooks.com): headers ``webhook-id``, ``webhook-timestamp`` (Unix
seconds of the attempt) and ``webhook-signature``, ``v1,<base64 HMAC-SHA256>`` over
``"{id}.{timestamp}.{body}"`` with the secret's bytes (``whsec_<base64>``); during a
secret rotation one ``v1,...`` entry per secret, separated by spaces.

Invariants:
- one event, one ``webhook_id``, chosen when it is written and sent unchanged with every
  attempt, so receivers deduplicate by it; the body's bytes are stored once and sent as
  stored, so every attempt signs the same body;
- bodies are ``{"type", "timestamp", "data"}``: ``timestamp`` is when the change
  happened (RFC 3339 UTC), ``data`` has the REST API's shapes;
- events with one ``order_key`` (one booking's; one client's credit changes) are
  delivered in the order they were written: a later one waits until every earlier one
  is delivered or failed for good;
- the delivery states move only along ``TRANSITIONS``:

      state      event     next        when
      pending    accepted  delivered   the receiver answered 2xx
      pending    refused   pending     any other answer, or none, within the horizon
      pending    gone      pending     410 Gone: the receiver is disabled until enabled
      pending    gave_up   failed      refused once the retry horizon has passed
      pending    retry     pending     an operator's retry: due now
      failed     retry     pending     an operator's retry: due now, for one attempt
                                       (past the horizon, a refusal fails it again)
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from booking_gate.errors import Conflict
from booking_gate.model import OutboxMessage
from booking_gate.rules import format_time

WEBHOOK = "webhook"  # the outbox kind
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
# Standard Webhooks: secrets of 24 to 64 bytes.
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
USER_AGENT = "carecall-webhooks/1"


class WebhookType(enum.StrEnum):
    BOOKING_CREATED = "booking.created"
    BOOKING_RESCHEDULED = "booking.rescheduled"
    BOOKING_CANCELLED = "booking.cancelled"
    ATTENDANCE_FINALIZED = "attendance.finalized"
    ATTENDANCE_OVERRIDDEN = "attendance.overridden"
    CREDITS_CHANGED = "credits.changed"


class BookedBy(enum.StrEnum):
    """Who made a booking: the booking system (the REST API), or the professional in a
    call ("book next session")."""

    BOOKING_SYSTEM = "booking_system"
    PROFESSIONAL = "professional"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryEvent(enum.StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    GONE = "gone"
    GAVE_UP = "gave_up"
    RETRY = "retry"


TRANSITIONS: Mapping[tuple[DeliveryState, DeliveryEvent], DeliveryState] = {
    (DeliveryState.PENDING, DeliveryEvent.ACCEPTED): DeliveryState.DELIVERED,
    (DeliveryState.PENDING, DeliveryEvent.REFUSED): DeliveryState.PENDING,
    (DeliveryState.PENDING, DeliveryEvent.GONE): DeliveryState.PENDING,
    (DeliveryState.PENDING, DeliveryEvent.GAVE_UP): DeliveryState.FAILED,
    (DeliveryState.PENDING, DeliveryEvent.RETRY): DeliveryState.PENDING,
    (DeliveryState.FAILED, DeliveryEvent.RETRY): DeliveryState.PENDING,
}


class DeliveryStateError(Conflict):
    """An event that its delivery's state does not allow (409)."""

    def __init__(self, state: DeliveryState, event: DeliveryEvent) -> None:
        code = "already_delivered" if state is DeliveryState.DELIVERED else "invalid_state"
        super().__init__(f"a {state.value} delivery cannot take '{event.value}'", code=code,
                         field=None)
        self.state = state
        self.event = event


def next_state(state: DeliveryState, event: DeliveryEvent) -> DeliveryState:
    """The state after ``event``; ``DeliveryStateError`` if ``TRANSITIONS`` has none."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise DeliveryStateError(state, event) from None


def attempt_event(status: int | None, created_at: datetime, now: datetime,
                  horizon: timedelta) -> DeliveryEvent:
    """What one attempt's answer means: ``status`` None when there was none (a refused
    connection, a timeout). Only a refusal once ``horizon`` has passed since
    ``created_at`` gives up."""
    if status is not None and 200 <= status < 300:
        return DeliveryEvent.ACCEPTED
    if status == 410:
        return DeliveryEvent.GONE
    if now - created_at >= horizon:
        return DeliveryEvent.GAVE_UP
    return DeliveryEvent.REFUSED


def retry_delay(attempts: int, first: timedelta, cap: timedelta, jitter: float) -> timedelta:
    """The wait after the ``attempts + 1``-th refusal: ``first`` doubling up to ``cap``,
    then scaled by ``0.5 + jitter / 2`` for ``jitter`` in [0, 1) ("equal jitter": never
    less than half, so receivers coming back are not hit by every sender at once)."""
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1) (got {jitter})")
    doublings = min(max(attempts, 0), 40)  # past any cap long before: no huge powers
    base = min(first * (1 << doublings), cap)
    return base * (0.5 + jitter / 2)


# -- events ------------------------------------------------------------------------


def new_webhook_id() -> str:
    """A fresh event id: ``msg_`` and 128 random bits."""
    return f"msg_{secrets.token_hex(16)}"


def booking_key(booking_id: str) -> str:
    return f"booking:{booking_id}"


def credits_key(client_id: str) -> str:
    return f"credits:{client_id}"


def event(event_type: WebhookType, data: Mapping[str, Any], at: datetime, order_key: str,
          webhook_id: str | None = None) -> OutboxMessage:
    """The outbox message of one webhook event."""
    body: dict[str, object] = {"type": event_type.value, "timestamp": format_time(at),
                               "data": dict(data)}
    return OutboxMessage(kind=WEBHOOK, payload=body, webhook_id=webhook_id or new_webhook_id(),
                         event_type=event_type.value, order_key=order_key)


def booking_created(booking: Mapping[str, Any], booked_by: BookedBy, at: datetime
                    ) -> OutboxMessage:
    """``data``: the booking (its ``source`` included) and ``booked_by``."""
    return event(WebhookType.BOOKING_CREATED, {**booking, "booked_by": booked_by.value}, at,
                 booking_key(str(booking["booking_id"])))


def booking_rescheduled(booking: Mapping[str, Any], previous: Mapping[str, Any], by: str,
                        at: datetime) -> OutboxMessage:
    """``data``: the moved booking, ``previous`` ``{starts_at, ends_at}`` and
    ``rescheduled_by``."""
    data = {**booking, "previous": {"starts_at": previous["starts_at"],
                                    "ends_at": previous["ends_at"]}, "rescheduled_by": by}
    return event(WebhookType.BOOKING_RESCHEDULED, data, at,
                 booking_key(str(booking["booking_id"])))


def booking_cancelled(booking: Mapping[str, Any], at: datetime) -> OutboxMessage:
    """``data``: the cancelled booking; its ``cancellation`` has ``late`` and
    ``chargeable``."""
    return event(WebhookType.BOOKING_CANCELLED, booking, at,
                 booking_key(str(booking["booking_id"])))


def attendance_finalized(record: Mapping[str, Any], at: datetime) -> OutboxMessage:
    """``data``: the final attendance record, as ``GET .../attendance`` returns it."""
    return event(WebhookType.ATTENDANCE_FINALIZED, record, at,
                 booking_key(str(record["booking_id"])))


def attendance_overridden(record: Mapping[str, Any], at: datetime) -> OutboxMessage:
    """``data``: the record after the override, its audit trail (``overrides``) included."""
    return event(WebhookType.ATTENDANCE_OVERRIDDEN, record, at,
                 booking_key(str(record["booking_id"])))


def credits_changed(*, client_id: str, hub_id: str | None, balance: int, reserved: int,
                    why: str, booking_id: str | None, note: str | None, at: datetime
                    ) -> OutboxMessage:
    """``data``: the client's credits as ``GET .../credits`` returns them, after the
    change, with ``why`` (the ledger's kind: grant, reserve, release, consume), the
    ``booking_id`` it concerns (null for a grant) and the ledger's ``note``."""
    data = {"client_id": client_id, "hub_id": hub_id, "balance": balance,
            "reserved": reserved, "why": why, "booking_id": booking_id, "note": note}
    return event(WebhookType.CREDITS_CHANGED, data, at, credits_key(client_id))


# -- signing -----------------------------------------------------------------------


def parse_secret(text: str, name: str = "CARECALL_WEBHOOK_SECRET") -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret; ValueError (never quoting it)."""
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"{name} must look like whsec_<base64>")
    raw = text.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} must be whsec_ followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"{name} must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes "
                         f"(got {len(key)})")
    return key


def new_secret() -> str:
    """A fresh ``whsec_`` secret of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One signature entry, ``v1,<base64 HMAC-SHA256 over "id.timestamp.body">``."""
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def signed_headers(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes
                   ) -> dict[str, str]:
    """The request headers of one attempt: one signature per key (the current first)."""
    if not keys:
        raise ValueError("at least one signing key is needed")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(key, webhook_id, timestamp, body) for key in keys),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


def endpoint_key(url: str) -> str:
    """The receiver's key in ``webhook_endpoints``: a hash, as a URL may hold a secret."""
    return hashlib.sha256(url.encode()).hexdigest()


def delivery_json(*, webhook_id: str, event_type: str, state: DeliveryState, attempts: int,
                  last_status: int | None, next_attempt_at: datetime | None
                  ) -> dict[str, Any]:
    """One item of ``GET /api/v1/webhooks/deliveries``; ``next_attempt_at`` only while
    pending."""
    return {
        "webhook_id": webhook_id, "type": event_type, "state": state.value,
        "attempts": attempts, "last_status": last_status,
        "next_attempt_at": (format_time(next_attempt_at)
                            if state is DeliveryState.PENDING and next_attempt_at else None),
    }
