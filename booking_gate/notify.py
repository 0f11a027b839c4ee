"""The emails announcing a booking's changes to both parties, as outbox messages.

Pure: no I/O, no clock. The service builds a ``Notify`` callback with ``notifier`` before
it calls the store, closing over the professional and the client (immutable records); the
store calls it inside the booking's transaction, so the emails are stored with the change
they report, or not at all. ``mailer.py`` sends them later.

Invariants:
- every event produces exactly one email per party, each with its own iCalendar part
  (``ics.py``) that lists that party only;
- no email carries a join link, token or room id: a join link is a bearer credential and
  mailboxes are forwarded, synced and searched. The text says where to get the link;
- subjects name nobody (they show on lock screens); times are given in the recipient's
  own time zone, always named, and in the body in UTC too.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from booking_gate.ics import Method, booking_event_ics
from booking_gate.model import Booking, Client, OutboxMessage, Professional, Role

# The store's ``Notify`` (spelt out here so this module does not import the store).
Notify = Callable[[Booking], Sequence[OutboxMessage]]

EMAIL = "email"
ICS_SUMMARY = "carecall session"

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


class BookingEvent(enum.StrEnum):
    CREATED = "booking_created"
    CANCELLED = "booking_cancelled"
    RESCHEDULED = "booking_rescheduled"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _day(moment: datetime) -> str:
    return (f"{_WEEKDAYS[moment.weekday()]} {moment.day} {_MONTHS[moment.month - 1]} "
            f"{moment.year}")


def _span(starts_at: datetime, ends_at: datetime, zone: ZoneInfo) -> str:
    start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
    until = f"{end:%H:%M}" if end.date() == start.date() else f"{_day(end)}, {end:%H:%M}"
    return f"{_day(start)}, {start:%H:%M} - {until}"


def format_when(starts_at: datetime, ends_at: datetime, timezone: str) -> str:
    """Two lines: the session in ``timezone`` (named), then in UTC."""
    local = _span(starts_at, ends_at, _zone(timezone))
    utc = _span(starts_at, ends_at, ZoneInfo("UTC"))
    return f"{local} ({timezone})\n{utc} (UTC)"


def _short(moment: datetime, timezone: str) -> str:
    """``Mon 30 Nov 2026, 18:30 (America/New_York)``: a subject's time names its zone."""
    zone = _zone(timezone)
    local = moment.astimezone(zone)
    return f"{_WEEKDAYS[local.weekday()][:3]} {local.day} {_MONTHS[local.month - 1][:3]} " \
           f"{local.year}, {local:%H:%M} ({zone.key})"


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


_JOINING = (
    "To join, use the personal join link from your booking system. For your privacy, join\n"
    "links are never sent by email: if you cannot find yours, ask your booking system for it."
)


def _text(event: BookingEvent, booking: Booking, role: Role, name: str, other: str,
          timezone: str, previous: Booking | None) -> str:
    when = _indent(format_when(booking.starts_at, booking.ends_at, timezone))
    lines = [f"Hello {name},", ""]
    if event is BookingEvent.CREATED:
        lines += [f"Your carecall session with {other} is booked.", "", "When:", when, "",
                  _JOINING]
    elif event is BookingEvent.RESCHEDULED:
        lines += [f"Your carecall session with {other} has moved.", "", "New time:", when]
        if previous is not None:
            lines += ["", "Was:", _indent(format_when(previous.starts_at, previous.ends_at,
                                                      timezone))]
        lines += ["", "Join links issued before this change no longer work.", _JOINING]
    else:
        by = booking.cancellation.by if booking.cancellation is not None else None
        who = "" if by is None else " by you" if by is role else f" by {other}"
        lines += [f"Your carecall session with {other} has been cancelled{who}.", "",
                  "It was planned for:", when, "", "Its join links no longer work."]
    lines += ["", "The attached calendar file updates the session in your calendar.", "",
              "-- carecall", ""]
    return "\n".join(lines)


_SUBJECTS = {
    BookingEvent.CREATED: "carecall session booked",
    BookingEvent.RESCHEDULED: "carecall session moved",
    BookingEvent.CANCELLED: "carecall session cancelled",
}


def booking_emails(event: BookingEvent, booking: Booking, professional: Professional,
                   client: Client, *, mail_from: str, previous: Booking | None = None
                   ) -> list[OutboxMessage]:
    """One email for the professional and one for the client, announcing ``event``."""
    method: Method = "CANCEL" if event is BookingEvent.CANCELLED else "REQUEST"
    parties = (
        (Role.PROFESSIONAL, professional.name, professional.email, professional.timezone,
         client.name),
        (Role.CLIENT, client.name, client.email, client.timezone, professional.name),
    )
    messages = []
    for role, name, email, timezone, other in parties:
        ics = booking_event_ics(booking, method=method, organizer_email=mail_from,
                                attendee_emails=[email], summary=ICS_SUMMARY)
        payload: dict[str, Any] = {
            "event": event.value, "booking_id": booking.booking_id, "role": role.value,
            "to": email,
            "subject": f"{_SUBJECTS[event]}: {_short(booking.starts_at, timezone)}",
            "text": _text(event, booking, role, name, other, timezone, previous),
            "ics": ics.decode("utf-8"), "method": method, "sequence": booking.sequence,
            "filename": "cancel.ics" if method == "CANCEL" else "invite.ics",
        }
        messages.append(OutboxMessage(kind=EMAIL, payload=payload))
    return messages


def notifier(event: BookingEvent, professional: Professional, client: Client, *,
             mail_from: str, previous: Booking | None = None) -> Notify:
    """The store's ``notify`` callback for ``event``, closing over both parties."""

    def notify(booking: Booking) -> Sequence[OutboxMessage]:
        return booking_emails(event, booking, professional, client, mail_from=mail_from,
                              previous=previous)

    return notify
