"""booking_gate.ics: iCalendar invitations and the professional's feed, without I/O."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from booking_gate import ics
from booking_gate.model import (
    Booking,
    BookingId,
    BookingStatus,
    Cancellation,
    ClientId,
    Funding,
    Professional,
    ProfessionalId,
    Role,
    RoomId,
    Source,
)

CREATED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
STARTS = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ROOM = RoomId("r00mSecretR00mSecretR00m")


def booking(booking_id: str = "b-1", *, starts: datetime = STARTS, sequence: int = 0,
            cancelled_at: datetime | None = None) -> Booking:
    cancellation = None
    if cancelled_at is not None:
        cancellation = Cancellation(Role.CLIENT, cancelled_at, late=False, chargeable=False)
    return Booking(
        booking_id=BookingId(booking_id), professional_id=ProfessionalId("pro-1"),
        client_id=ClientId("cli-1"), hub_id=None, starts_at=starts,
        ends_at=starts + timedelta(minutes=50), funding=Funding.PRIVATE, source=Source.HUB,
        status=BookingStatus.CANCELLED if cancellation else BookingStatus.CONFIRMED,
        room_id=ROOM, created_at=CREATED, changed_at=CREATED, cancellation=cancellation,
        sequence=sequence)


PRO = Professional(
    professional_id=ProfessionalId("pro-1"), name="Dr Pro", email="pro@example.org",
    timezone="Europe/Oslo", session_minutes=50, buffer_minutes=10, availability=(),
    updated_at=CREATED)


def invite(b: Booking, method: str = "REQUEST", url: str | None = None) -> Calendar:
    raw = ics.booking_event_ics(b, method=method,  # type: ignore[arg-type]
                                organizer_email="carecall@care.example",
                                attendee_emails=["client@example.org"],
                                summary="carecall session", url=url)
    return Calendar.from_ical(raw)


def test_request_has_the_rfc5545_and_itip_fields() -> None:
    """A REQUEST carries PRODID, VERSION 2.0, METHOD and one VEVENT with UTC times."""
    calendar = invite(booking())
    assert str(calendar["version"]) == "2.0" and str(calendar["prodid"]) == ics.PRODID
    assert str(calendar["method"]) == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    assert str(event["uid"]) == "b-1@carecall"
    assert event.decoded("sequence") == 0
    assert event.decoded("dtstart") == STARTS and event.decoded("dtstart").tzinfo is not None
    assert event.decoded("dtend") == STARTS + timedelta(minutes=50)
    assert event.decoded("dtstamp") == CREATED
    assert str(event["status"]) == "CONFIRMED" and str(event["summary"]) == "carecall session"
    assert str(event["organizer"]) == "mailto:carecall@care.example"
    assert str(event["attendee"]) == "mailto:client@example.org"
    assert b"DTSTART:20261130T090000Z" in calendar.to_ical()


def test_uid_is_stable_and_sequence_follows_the_booking() -> None:
    """A moved booking keeps its UID and announces the store's higher SEQUENCE."""
    first = invite(booking()).walk("VEVENT")[0]
    moved = invite(booking(starts=STARTS + timedelta(hours=2), sequence=1)).walk("VEVENT")[0]
    assert first["uid"] == moved["uid"]
    assert (first.decoded("sequence"), moved.decoded("sequence")) == (0, 1)
    assert moved.decoded("dtstart") == STARTS + timedelta(hours=2)


def test_cancel_is_method_cancel_with_status_cancelled() -> None:
    """CANCEL marks the event cancelled; its DTSTAMP is the cancellation time."""
    at = CREATED + timedelta(days=1)
    calendar = invite(booking(sequence=2, cancelled_at=at), "CANCEL")
    (event,) = calendar.walk("VEVENT")
    assert str(calendar["method"]) == "CANCEL"
    assert (str(event["status"]), event.decoded("sequence")) == ("CANCELLED", 2)
    assert event.decoded("dtstamp") == at


def test_no_room_or_token_and_no_url_with_a_fragment() -> None:
    """Nothing of the room is written, and a link with a query or fragment is refused."""
    raw = ics.booking_event_ics(booking(), method="REQUEST", organizer_email="c@x.example",
                                attendee_emails=[], summary="carecall session")
    assert ROOM.encode() not in raw and b"#t=" not in raw
    for url in (f"https://care.example/s/{ROOM}#t=eyJtoken", "https://care.example/?t=x"):
        with pytest.raises(ValueError, match="no query or fragment"):
            invite(booking(), url=url)
    plain = invite(booking(), url="https://care.example/help").walk("VEVENT")[0]
    assert str(plain["url"]) == "https://care.example/help"


def test_unknown_method_is_refused() -> None:
    """Only REQUEST and CANCEL are iTIP methods this module writes."""
    with pytest.raises(ValueError, match="REQUEST or CANCEL"):
        invite(booking(), "PUBLISH")


def test_feed_lists_bookings_anonymously_with_cancelled_ones_marked() -> None:
    """The feed has no METHOD, one event per booking, no names and STATUS per booking."""
    later = booking("b-2", starts=STARTS + timedelta(days=1))
    gone = booking("b-3", starts=STARTS + timedelta(days=2), sequence=1,
                   cancelled_at=CREATED + timedelta(hours=1))
    other = dataclasses.replace(booking("b-4"), professional_id=ProfessionalId("pro-2"))
    raw = ics.professional_feed_ics(PRO, [later, gone, booking(), other])
    calendar = Calendar.from_ical(raw)
    assert "method" not in calendar
    events = calendar.walk("VEVENT")
    assert [str(e["uid"]) for e in events] == ["b-1@carecall", "b-2@carecall", "b-3@carecall"]
    assert [str(e["status"]) for e in events] == ["CONFIRMED", "CONFIRMED", "CANCELLED"]
    assert {str(e["summary"]) for e in events} == {"carecall session"}
    for secret in (b"Dr Pro", b"pro@example.org", b"cli-1", ROOM.encode(), b"ATTENDEE"):
        assert secret not in raw


def test_feed_keys_are_per_professional_and_checked_in_constant_time() -> None:
    """HMAC keys: stable for one secret and id, different per id and per secret."""
    secret = bytes(range(32))
    key = ics.feed_key(secret, "pro-1")
    assert key == ics.feed_key(secret, "pro-1") and len(key) == 43
    assert key != ics.feed_key(secret, "pro-2") != ics.feed_key(b"x" * 32, "pro-1")
    assert ics.feed_key_matches(secret, "pro-1", key)
    for wrong in (None, "", key[:-1], ics.feed_key(secret, "pro-2"), "ä" * 43):
        assert not ics.feed_key_matches(secret, "pro-1", wrong)
