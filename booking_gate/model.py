"""The booking gate's domain types: identifiers, enums and immutable records.

Invariants:
- every datetime held by these records is timezone-aware UTC;
- identifiers are opaque strings validated at the boundary (``validation.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import NewType

BookingId = NewType("BookingId", str)
ProfessionalId = NewType("ProfessionalId", str)
ClientId = NewType("ClientId", str)
HubId = NewType("HubId", str)
RoomId = NewType("RoomId", str)
EventId = NewType("EventId", str)


class Role(enum.StrEnum):
    PROFESSIONAL = "professional"
    CLIENT = "client"


class Funding(enum.StrEnum):
    SPONSORED = "sponsored"
    PRIVATE = "private"


class Source(enum.StrEnum):
    HUB = "hub"
    DIRECT = "direct"
    ON_REQUEST = "on_request"


class BookingStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    CLIENT_NO_SHOW = "client_no_show"
    PROFESSIONAL_NO_SHOW = "professional_no_show"
    BOTH_NO_SHOW = "both_no_show"
    TECHNICAL_FAILURE = "technical_failure"
    LATE_CANCELLATION = "late_cancellation"
    CANCELLED = "cancelled"


class Payer(enum.StrEnum):
    SPONSOR = "sponsor"
    CLIENT = "client"


class EventKind(enum.StrEnum):
    """What signalling reports about one party of a room, and the notices parties send.

    ``RUNNING_LATE`` is written by the gate itself (``POST /api/v1/rooms/{room_id}/running-late``,
    ``lobby.py``), never by signalling; its event's ``reason`` holds the minutes as a
    decimal string ("5", "10" or "15"). It is a notice, not presence: the rules count
    only ``JOINED``/``LEFT`` as being in the room.
    """

    JOINED = "joined"
    LEFT = "left"
    # ``reason`` "video" or "audio_only": whether this party sends video. A new one while
    # connected means the party started or stopped sending video. None (signalling
    # older than rules 2): video.
    MEDIA_CONNECTED = "media_connected"
    MEDIA_DISCONNECTED = "media_disconnected"
    # The party's media path could not be set up; ``reason`` is the cause the peer
    # named (``FAILURE_CAUSES``), or None when it named none.
    MEDIA_FAILED = "media_failed"
    RUNNING_LATE = "running_late"


# ``media_connected`` reasons (``EventKind.MEDIA_CONNECTED``).
VIDEO, AUDIO_ONLY = "video", "audio_only"
# The causes a ``media_failed`` event may name (signalling.messages.MEDIA_CAUSES).
FAILURE_CAUSES = ("no_candidate_pair", "no_relay_candidate", "dtls_failed",
                  "permission_denied", "unknown")

# The kinds a signalling node may report (``GateService.ingest``): not the notices.
REPORTED_KINDS = frozenset(EventKind) - {EventKind.RUNNING_LATE}


class RecordStatus(enum.StrEnum):
    PENDING = "pending"
    FINAL = "final"


@dataclass(frozen=True, slots=True)
class Cancellation:
    by: Role
    at: datetime
    late: bool
    chargeable: bool
    reason: str | None = None
    # The notice the policy asked for when it was cancelled (rules.notice_hours).
    notice_hours: int = 24


@dataclass(frozen=True, slots=True)
class Booking:
    booking_id: BookingId
    professional_id: ProfessionalId
    client_id: ClientId
    hub_id: HubId | None
    starts_at: datetime
    ends_at: datetime
    funding: Funding
    source: Source
    status: BookingStatus
    room_id: RoomId
    created_at: datetime
    # When the booking's times last changed; tokens issued before it are stale.
    changed_at: datetime
    cancellation: Cancellation | None = None
    # iCalendar SEQUENCE: grows with every change of time or status.
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class AttendanceEvent:
    """One fact reported by signalling, timestamped by a server clock."""

    event_id: EventId
    booking_id: BookingId
    role: Role
    kind: EventKind
    at: datetime
    reason: str | None = None


class CreditState(enum.StrEnum):
    """The one credit a sponsored booking holds, if any."""

    NONE = "none"
    RESERVED = "reserved"
    CONSUMED = "consumed"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Professional:
    professional_id: ProfessionalId
    name: str
    email: str
    timezone: str
    session_minutes: int
    buffer_minutes: int
    availability: tuple[dict[str, object], ...]  # [{"weekday", "start", "end"}]
    updated_at: datetime
    # The grid of bookable starts from each availability window's start.
    slot_minutes: int | None = None
    # The notice a cancellation of a booking outside hubs needs not to be late.
    cancellation_notice_hours: int = 24
    # Set once erased (``erasure.py``): the id is then a pseudonym, name and email empty.
    erased_at: datetime | None = None

    @property
    def slot_step(self) -> int:
        """``slot_minutes``, or by default a session and its buffer (the 50-minute hour)."""
        return self.slot_minutes or self.session_minutes + self.buffer_minutes


@dataclass(frozen=True, slots=True)
class Client:
    client_id: ClientId
    name: str
    email: str
    timezone: str
    hub_id: HubId | None
    updated_at: datetime
    # "Hide my IP": the professional's side never learns this client's address (the
    # client connects through a relay only; docs/security.md).
    hide_ip: bool = False
    # Set once erased, as for professionals.
    erased_at: datetime | None = None

    @property
    def first_name(self) -> str:
        """The first word of the name, all the call pages show; "" once erased."""
        words = self.name.split()
        return words[0] if words else ""


@dataclass(frozen=True, slots=True)
class HubSettings:
    """A hub's settings; a hub nobody configured has the defaults."""

    hub_id: HubId
    clients_hide_ip: bool = False  # "Hide my IP" for every client of the hub
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Block:
    block_id: str
    professional_id: ProfessionalId
    starts_at: datetime
    ends_at: datetime
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CreditAccount:
    client_id: ClientId
    hub_id: HubId | None
    balance: int  # credits free to book
    reserved: int  # credits held by confirmed, not yet settled bookings


@dataclass(frozen=True, slots=True)
class NewBooking:
    booking_id: BookingId
    professional_id: ProfessionalId
    client_id: ClientId
    starts_at: datetime
    ends_at: datetime
    funding: Funding
    source: Source
    idempotency_key: str | None = None
    # Sponsored if a credit is left, else private (the in-call "book next session").
    fallback_private: bool = False

    def same_content(self, booking: Booking) -> bool:
        return (
            self.professional_id == booking.professional_id
            and self.client_id == booking.client_id
            and self.starts_at == booking.starts_at
            and self.ends_at == booking.ends_at
            and self.funding is booking.funding
            and self.source is booking.source
        )


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """Something to deliver later (an email, a webhook), stored with the change it reports.

    A webhook event also has its stable ``webhook_id``, its ``event_type`` and the
    ``order_key`` of the events that must reach the receiver in order (one booking's).
    """

    kind: str
    payload: dict[str, object]
    webhook_id: str | None = None
    event_type: str | None = None
    order_key: str | None = None
