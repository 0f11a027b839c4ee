"""Notification emails end to end: the gate's outbox, the mailer and a real SMTP server.

The SMTP server is aiosmtpd on 127.0.0.1; the gate runs with the fake clock, and the
tests drive the mailer's passes (``send_due``) instead of waiting for its timer. A commit
also wakes the mailer's own loop; passes hold one lock, so once ``send_due`` returns every
message due at the fake time has been handled, by whichever pass. The tests therefore
assert on the inbox and the outbox, not on which pass did the work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import unused_port
from aiosmtpd.controller import Controller
from icalendar import Calendar

from booking_gate.app import make_app
from booking_gate.appkeys import MAILER, SERVICE
from booking_gate.config import GateConfig
from booking_gate.model import (
    Booking,
    BookingId,
    BookingStatus,
    Client,
    ClientId,
    Funding,
    Professional,
    ProfessionalId,
    RoomId,
    Source,
)
from booking_gate.notify import BookingEvent, booking_emails
from tests.conftest import API_KEY, AUTH, FakeClock, GateClient, booking_body, seed_people

# aiosmtpd runs its own event loop in a thread; keep its deprecations out of our errors.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:aiosmtpd.*")

PRO, CLIENT = "pro@example.org", "client@example.org"


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(bytes(envelope.content))
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        # policy.default makes them EmailMessages (typeshed says Message).
        return [message_from_bytes(raw, policy=policy.default) for raw in self.raw]


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that the test can stop and start again."""

    def __init__(self) -> None:
        self.port = unused_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gate_config(db_url: str, tmp_path: Path, smtp: SmtpServer) -> GateConfig:
    # A long interval: the mailer's loop runs only when a commit wakes it.
    return GateConfig(db_url=db_url, public_url="https://care.example", api_key=API_KEY,
                      var_dir=tmp_path / "var", smtp_host="127.0.0.1", smtp_port=smtp.port,
                      mail_from="carecall@care.example", mail_interval=3600)


async def send_due(gate: GateClient) -> None:
    await gate.app[MAILER].send_due()


def invitation(message: EmailMessage) -> tuple[Any, Calendar]:
    """The message's one text/calendar attachment, and that calendar parsed."""
    (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    return part, Calendar.from_ical(part.get_content())


def body_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def by_recipient(inbox: Inbox) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for message in inbox.messages:
        found.setdefault(str(message["To"]), []).append(message)
    return found


async def book(gate: GateClient, clock: FakeClock, booking_id: str = "b-1",
               days: float = 2) -> datetime:
    start = clock.now + timedelta(days=days)
    response = await gate.put(f"/api/v1/bookings/{booking_id}", headers=AUTH,
                              json=booking_body(start))
    assert response.status == 201, await response.text()
    return start


async def test_a_new_booking_emails_each_party_an_invitation(
        gate: GateClient, clock: FakeClock, smtp: SmtpServer) -> None:
    """One email per party, with a REQUEST .ics: stable UID, SEQUENCE 0, local times."""
    await seed_people(gate)
    start = await book(gate, clock)
    await send_due(gate)
    mail = by_recipient(smtp.inbox)
    assert sorted(mail) == [CLIENT, PRO] and all(len(m) == 1 for m in mail.values())
    for address, other in ((PRO, "Cli Ent"), (CLIENT, "Dr Pro")):
        (message,) = mail[address]
        part, calendar = invitation(message)
        assert (part.get_param("method"), part.get_filename()) == ("REQUEST", "invite.ics")
        assert str(calendar["method"]) == "REQUEST"
        (event,) = calendar.walk("VEVENT")
        assert (str(event["uid"]), event.decoded("sequence")) == ("b-1@carecall", 0)
        assert event.decoded("dtstart") == start
        assert str(event["attendee"]) == f"mailto:{address}"
        text = body_text(message)
        assert f"with {other} is booked" in text
        # 08:00 UTC on 25 November is 09:00 in Oslo.
        assert "Wednesday 25 November 2026, 09:00 - 09:50 (Europe/Oslo)" in text
        assert "Wednesday 25 November 2026, 08:00 - 08:50 (UTC)" in text
        assert other not in str(message["Subject"])
        assert str(message["From"]) == "carecall@care.example"


async def test_reschedule_then_cancel_update_the_same_event(
        gate: GateClient, clock: FakeClock, smtp: SmtpServer) -> None:
    """Reschedule: REQUEST, SEQUENCE 1, new DTSTART; cancel: CANCEL with a higher SEQUENCE."""
    await seed_people(gate)
    await book(gate, clock)
    await send_due(gate)
    moved = clock.now + timedelta(days=3)
    body = booking_body(moved)
    response = await gate.post("/api/v1/bookings/b-1/reschedule", headers=AUTH, json={
        "starts_at": body["starts_at"], "ends_at": body["ends_at"], "by": "professional"})
    assert response.status == 200, await response.text()
    await send_due(gate)
    response = await gate.post("/api/v1/bookings/b-1/cancel", headers=AUTH,
                               json={"by": "client", "reason": "ill"})
    assert response.status == 200, await response.text()
    await send_due(gate)

    mail = by_recipient(smtp.inbox)
    assert sorted(mail) == [CLIENT, PRO]
    for address in (PRO, CLIENT):
        seen = []
        for message in mail[address]:
            part, calendar = invitation(message)
            (event,) = calendar.walk("VEVENT")
            seen.append((str(calendar["method"]), part.get_param("method"), str(event["uid"]),
                         event.decoded("sequence"), str(event["status"])))
        assert seen == [("REQUEST", "REQUEST", "b-1@carecall", 0, "CONFIRMED"),
                        ("REQUEST", "REQUEST", "b-1@carecall", 1, "CONFIRMED"),
                        ("CANCEL", "CANCEL", "b-1@carecall", 2, "CANCELLED")]
        rescheduled, cancelled = mail[address][1], mail[address][2]
        assert invitation(rescheduled)[1].walk("VEVENT")[0].decoded("dtstart") == moved
        assert invitation(cancelled)[0].get_filename() == "cancel.ics"
        assert "has moved" in body_text(rescheduled)
    client_text = body_text(mail[CLIENT][2])
    pro_text = body_text(mail[PRO][2])
    assert "cancelled by you" in client_text and "cancelled by Cli Ent" in pro_text


async def test_no_email_carries_a_join_link_token_or_room(
        gate: GateClient, clock: FakeClock, smtp: SmtpServer) -> None:
    """Neither the emails nor their calendars contain '#t=', a join token or the room id."""
    await seed_people(gate)
    await book(gate, clock)
    links = await (await gate.post("/api/v1/bookings/b-1/links", headers=AUTH)).json()
    room = (await (await gate.get("/api/v1/bookings/b-1", headers=AUTH)).json())["room_id"]
    tokens = [links[role]["url"].split("#t=")[1] for role in ("professional", "client")]
    await gate.post("/api/v1/bookings/b-1/cancel", headers=AUTH, json={"by": "professional"})
    await send_due(gate)
    assert len(smtp.inbox.raw) == 4
    for raw, message in zip(smtp.inbox.raw, smtp.inbox.messages, strict=True):
        texts = [raw.decode()] + [str(part.get_content()) for part in message.walk()
                                  if not part.is_multipart()]
        for text in texts:
            assert "#t=" not in text and room not in text and "/s/" not in text
            assert not any(token in text or token[:40] in text for token in tokens)


async def test_an_smtp_outage_delays_but_loses_no_email(
        gate: GateClient, clock: FakeClock, smtp: SmtpServer) -> None:
    """Server down: the emails stay queued with backoff; once it is up they go, once."""
    smtp.stop()
    await seed_people(gate)
    await book(gate, clock)
    await send_due(gate)
    store = gate.app[SERVICE].store
    far = clock.now + timedelta(days=30)
    queued = await store.due_outbox("email", far)
    assert len(queued) == 2 and all(attempts == 1 for _, _, attempts in queued)

    smtp.start()
    await send_due(gate)
    assert smtp.inbox.raw == []  # not due yet: the first retry waits 5 s
    clock.advance(seconds=5)
    await send_due(gate)
    assert sorted(by_recipient(smtp.inbox)) == [CLIENT, PRO]
    assert await store.due_outbox("email", far) == []

    clock.advance(days=2)
    await send_due(gate)
    assert len(smtp.inbox.raw) == 2


async def test_backoff_grows_while_the_server_stays_down(
        gate: GateClient, clock: FakeClock, smtp: SmtpServer) -> None:
    """Each failure puts the next attempt further off (5 s, 10 s, 20 s ...)."""
    smtp.stop()
    await seed_people(gate)
    await book(gate, clock)
    store = gate.app[SERVICE].store
    for attempts, wait in enumerate((5, 10, 20, 40), start=1):
        await send_due(gate)
        assert await store.due_outbox("email", clock.now + timedelta(seconds=wait - 1)) == []
        due = await store.due_outbox("email", clock.now + timedelta(seconds=wait))
        assert [a for _, _, a in due] == [attempts, attempts]
        clock.advance(seconds=wait)
    smtp.start()
    await send_due(gate)
    assert len(smtp.inbox.raw) == 2


async def test_without_smtp_host_emails_wait_in_the_outbox(
        tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """Email disabled: nothing is sent or dropped, and that is said once at INFO."""
    config = GateConfig(db_url=f"sqlite:///{tmp_path / 'gate.db'}", api_key=API_KEY,
                        var_dir=tmp_path / "var")
    caplog.set_level(logging.INFO, logger="booking_gate.mailer")
    gate: GateClient = await aiohttp_client(make_app(config, clock=clock))
    await seed_people(gate)
    await book(gate, clock)
    assert await gate.app[MAILER].send_due() == 0
    assert await gate.app[MAILER].send_due() == 0
    queued = await gate.app[SERVICE].store.due_outbox("email", clock.now)
    assert len(queued) == 2 and all(attempts == 0 for _, _, attempts in queued)
    said = [r for r in caplog.records if "email is disabled" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO


async def test_mailer_logs_no_addresses(gate: GateClient, clock: FakeClock, smtp: SmtpServer,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """Sent or failed, the mailer's logs carry ids and error classes, never addresses."""
    caplog.set_level(logging.DEBUG, logger="booking_gate")
    smtp.stop()
    await seed_people(gate)
    await book(gate, clock)
    await send_due(gate)
    smtp.start()
    clock.advance(minutes=1)
    await send_due(gate)
    assert len(smtp.inbox.raw) == 2
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "booking_gate.mailer")
    assert "SMTPConnectError" in logged and "sent" in logged
    assert "example.org" not in logged and "Dr Pro" not in logged


async def test_flush_is_bounded_and_keeps_what_it_could_not_send(
        gate: GateClient, clock: FakeClock) -> None:
    """A server that never answers: flush gives up in time; the emails stay queued."""
    writers: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _, writer: writers.append(writer),
                                        "127.0.0.1", 0)
    mailer = gate.app[MAILER]
    mailer.config = dataclasses.replace(mailer.config,
                                        smtp_port=silent.sockets[0].getsockname()[1])
    try:
        await seed_people(gate)
        await book(gate, clock)
        started = asyncio.get_running_loop().time()
        await mailer.flush(timeout=0.5)
        assert asyncio.get_running_loop().time() - started < 3
        # Unsent (the background pass may still hold them while its SMTP call hangs).
        assert await gate.app[SERVICE].store.unsent_outbox("email") == 2
    finally:
        for writer in writers:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_a_commit_wakes_the_mailer(gate: GateClient, clock: FakeClock,
                                         smtp: SmtpServer) -> None:
    """Without any explicit pass (the interval is an hour), the emails go out at once."""
    await seed_people(gate)
    await book(gate, clock)
    for _ in range(100):  # at most 5 s
        if len(smtp.inbox.raw) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(by_recipient(smtp.inbox)) == [CLIENT, PRO]


async def test_calendar_feed_needs_the_right_key(gate: GateClient, clock: FakeClock) -> None:
    """The feed URL's key opens an anonymous calendar; a wrong or missing key is 404."""
    await seed_people(gate)
    start = await book(gate, clock)
    await book(gate, clock, "b-2", days=3)
    await gate.post("/api/v1/bookings/b-2/cancel", headers=AUTH, json={"by": "client"})
    assert (await gate.get("/api/v1/professionals/pro-1/calendar-url")).status == 401
    response = await gate.get("/api/v1/professionals/pro-1/calendar-url", headers=AUTH)
    url = (await response.json())["url"]
    prefix = "https://care.example/api/v1/professionals/pro-1/calendar.ics?key="
    assert url.startswith(prefix)

    response = await gate.get(url.removeprefix("https://care.example"))
    assert response.status == 200
    assert response.content_type == "text/calendar"
    body = await response.read()
    events = Calendar.from_ical(body).walk("VEVENT")
    assert [(str(e["uid"]), e.decoded("dtstart")) for e in events] == [("b-1@carecall", start)]
    assert b"Cli Ent" not in body and CLIENT.encode() not in body

    key = url.removeprefix(prefix)
    wrong = [f"/api/v1/professionals/pro-1/calendar.ics?key={key[:-2]}xx",
             "/api/v1/professionals/pro-1/calendar.ics",
             f"/api/v1/professionals/pro-2/calendar.ics?key={key}"]
    bodies = []
    for path in wrong:
        response = await gate.get(path)
        bodies.append(await response.json())
        assert response.status == 404
    assert all(b == {"error": {"code": "not_found", "message": "no such calendar",
                               "field": None}} for b in bodies)
    response = await gate.get("/api/v1/professionals/nobody/calendar-url", headers=AUTH)
    assert response.status == 404


def test_times_are_in_each_recipients_own_time_zone() -> None:
    """notify.booking_emails: each party reads the time in its own zone, and in UTC."""
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    starts = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    booking = Booking(
        booking_id=BookingId("b-9"), professional_id=ProfessionalId("pro-1"),
        client_id=ClientId("cli-1"), hub_id=None, starts_at=starts,
        ends_at=starts + timedelta(minutes=50), funding=Funding.PRIVATE, source=Source.DIRECT,
        status=BookingStatus.CONFIRMED, room_id=RoomId("room"), created_at=at, changed_at=at)
    professional = Professional(ProfessionalId("pro-1"), "Dr Pro", PRO, "Europe/Oslo", 50, 10,
                                (), at)
    client = Client(ClientId("cli-1"), "Cli Ent", CLIENT, "America/New_York", None, at)
    pro_mail, client_mail = booking_emails(BookingEvent.CREATED, booking, professional, client,
                                           mail_from="carecall@care.example")
    assert (pro_mail.kind, pro_mail.payload["to"], client_mail.payload["to"]) == (
        "email", PRO, CLIENT)
    # Past midnight in Oslo, the evening before in New York.
    assert ("Tuesday 1 December 2026, 00:30 - 01:20 (Europe/Oslo)"
            in str(pro_mail.payload["text"]))
    assert ("Monday 30 November 2026, 18:30 - 19:20 (America/New_York)"
            in str(client_mail.payload["text"]))
    for mail in (pro_mail, client_mail):
        assert ("Monday 30 November 2026, 23:30 - Tuesday 1 December 2026, 00:20 (UTC)"
                in str(mail.payload["text"]))
        assert mail.payload["method"] == "REQUEST" and mail.payload["sequence"] == 0
    assert str(client_mail.payload["subject"]) == (
        "carecall session booked: Mon 30 Nov 2026, 18:30 (America/New_York)")
    assert str(pro_mail.payload["subject"]) == (
        "carecall session booked: Tue 1 Dec 2026, 00:30 (Europe/Oslo)")


async def test_claims_give_each_message_to_one_sender_until_its_lease_ends(
        gate: GateClient, clock: FakeClock) -> None:
    """Two senders claiming at once share the due emails without overlap; a lease that ran
    out, or a release, gives a message to the other; only its holder can mark it sent."""
    store = gate.app[SERVICE].store
    await gate.app[MAILER].close()  # the app's own mailer must not take part
    await seed_people(gate, credits=6)
    for number in range(6):
        await book(gate, clock, f"b-{number}", days=2 + number)
    lease = timedelta(minutes=2)
    first, second = await asyncio.gather(
        store.claim_outbox("email", "one", clock.now, lease, 8),
        store.claim_outbox("email", "two", clock.now, lease, 8))
    ids_one, ids_two = {m[0] for m in first}, {m[0] for m in second}
    assert not ids_one & ids_two and len(ids_one | ids_two) == 12
    assert await store.claim_outbox("email", "three", clock.now, lease, 50) == []
    taken = sorted(ids_one)[0] if ids_one else sorted(ids_two)[0]
    holder, other = ("one", "two") if ids_one else ("two", "one")
    assert not await store.mark_sent(taken, clock.now, other)
    assert await store.mark_sent(taken, clock.now, holder)
    assert await store.release_outbox("one") == len(ids_one) - (holder == "one")
    again = await store.claim_outbox("email", "three", clock.now, lease, 50)
    assert {m[0] for m in again} == ids_one - {taken}
    later = await store.claim_outbox("email", "four", clock.now + lease, lease, 50)
    assert {m[0] for m in later} == (ids_one | ids_two) - {taken}
    assert await store.unsent_outbox("email") == 11
