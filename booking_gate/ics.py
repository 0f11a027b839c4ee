"""iCalendar (RFC 5545) documents for bookings: email invitations and the professional's feed.

Pure: no I/O, no clock; every time comes from the booking records.

Invariants:
- one booking is one event everywhere, with the UID ``{booking_id}@carecall``; the
  booking's ``sequence`` (grown by the store on every change of time or status) is its
  SEQUENCE, so calendars replace the older copy (RFC 5546 section 2.1.5);
- every date-time is written in UTC (``...Z``), so no VTIMEZONE is needed;
- no join link, token or room id is ever written: a calendar is copied, synced and
  shared far beyond its owner's control. A ``url`` with a fragment or query is refused;
- the feed names nobody: its SUMMARY is ``carecall session`` only, because a feed URL
  is a bearer secret that calendar apps keep and sync.

Feed keys are ``HMAC-SHA256(secret, professional_id)``: nothing is stored per professional,
and a leaked key opens one professional's feed only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from icalendar import Calendar, Event, vCalAddress, vText

from booking_gate.model import Booking, BookingStatus, Professional

PRODID = "-//carecall//booking gate//EN"
FEED_SUMMARY = "carecall session"
# Asked of subscribing clients; Google and Outlook poll at their own pace regardless.
FEED_REFRESH = timedelta(hours=1)

Method = Literal["REQUEST", "CANCEL"]


def event_uid(booking: Booking) -> str:
    """The event's UID: stable for the booking's whole life (RFC 5545 section 3.8.4.7)."""
    return f"{booking.booking_id}@carecall"


def last_change(booking: Booking) -> datetime:
    """When the booking last changed: the DTSTAMP of the event describing it."""
    if booking.cancellation is not None and booking.cancellation.at > booking.changed_at:
        return booking.cancellation.at
    return booking.changed_at


def _calendar(method: str | None) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    if method is not None:
        calendar.add("method", method)
    return calendar


def _event(booking: Booking, summary: str, *, cancelled: bool) -> Event:
    event = Event()
    event.add("uid", event_uid(booking))
    event.add("sequence", booking.sequence)
    event.add("dtstamp", last_change(booking))
    event.add("dtstart", booking.starts_at)
    event.add("dtend", booking.ends_at)
    event.add("summary", summary)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "TRANSPARENT" if cancelled else "OPAQUE")
    return event


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.fragment or parts.query or "#" in url:
        # A join link carries its token in the fragment: never let one into a calendar.
        raise ValueError("a calendar URL must have no query or fragment")


def booking_event_ics(booking: Booking, *, method: Method, organizer_email: str,
                      attendee_emails: Sequence[str], summary: str,
                      url: str | None = None) -> bytes:
    """An iTIP message (RFC 5546) announcing ``booking``: METHOD REQUEST or CANCEL.

    REQUEST creates or updates the event; CANCEL removes it. Both carry the same UID,
    and the booking's SEQUENCE tells the calendar which copy is newer.
    """
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"method must be REQUEST or CANCEL (got {method!r})")
    cancelled = method == "CANCEL" or booking.status is BookingStatus.CANCELLED
    calendar = _calendar(method)
    event = _event(booking, summary, cancelled=cancelled)
    organizer = vCalAddress(f"mailto:{organizer_email}")
    organizer.params["CN"] = vText("carecall")
    event.add("organizer", organizer)
    for email in attendee_emails:
        attendee = vCalAddress(f"mailto:{email}")
        attendee.params["ROLE"] = vText("REQ-PARTICIPANT")
        attendee.params["PARTSTAT"] = vText("ACCEPTED")
        # The booking system owns the booking: replies to carecall would go nowhere.
        attendee.params["RSVP"] = vText("FALSE")
        event.add("attendee", attendee)
    if url is not None:
        _check_url(url)
        event.add("url", url)
    calendar.add_component(event)
    return bytes(calendar.to_ical())


def professional_feed_ics(professional: Professional, bookings: Iterable[Booking]) -> bytes:
    """The professional's subscription feed: one anonymous event per booking.

    Cancelled bookings stay as STATUS:CANCELLED so that clients which keep an event
    they have once seen mark it cancelled instead of leaving it in place.
    """
    calendar = _calendar(None)
    calendar.add("x-wr-calname", "carecall")
    calendar.add("x-wr-timezone", professional.timezone)
    calendar.add("refresh-interval", FEED_REFRESH, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", "PT1H")
    for booking in sorted(bookings, key=lambda b: (b.starts_at, b.booking_id)):
        if booking.professional_id != professional.professional_id:
            continue
        calendar.add_component(_event(
            booking, FEED_SUMMARY, cancelled=booking.status is BookingStatus.CANCELLED))
    return bytes(calendar.to_ical())


# -- feed keys -------------------------------------------------------------------------


def feed_key(secret: bytes, professional_id: str) -> str:
    """The key in a professional's feed URL: URL-safe base64 of HMAC-SHA256."""
    digest = hmac.new(secret, professional_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def feed_key_matches(secret: bytes, professional_id: str, given: str | None) -> bool:
    """Constant-time check of a feed key given in a request."""
    if not given:
        return False
    expected = feed_key(secret, professional_id)
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace"))
