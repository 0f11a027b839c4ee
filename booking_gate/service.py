"""The gate's use cases: what each API call does, independent of HTTP.

Validation happens first (``validation``), rules are pure (``rules``), and every state
change is one store transaction. Listeners hear when a room must be locked (a booking
cancelled or rescheduled) so signalling can close its sockets at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from booking_gate import billing_csv, ics, notify, rules, webhooks
from booking_gate.erasure import PartyKind
from booking_gate.erasure_store import ErasureStore
from booking_gate.errors import Conflict, InvalidRequest, NotFound
from booking_gate.model import (
    REPORTED_KINDS,
    AttendanceEvent,
    Booking,
    BookingId,
    BookingStatus,
    Cancellation,
    Client,
    ClientId,
    CreditAccount,
    CreditState,
    EventId,
    EventKind,
    Funding,
    HubId,
    HubSettings,
    NewBooking,
    OutboxMessage,
    Outcome,
    Professional,
    ProfessionalId,
    Role,
    RoomId,
    Source,
)
from booking_gate.notify import BookingEvent
from booking_gate.rules import CreditEffect, Windows, format_time
from booking_gate.store import BookingFilter, Store
from booking_gate.tokens import TokenIssuer, join_url
from booking_gate.validation import (
    Body,
    parse_availability,
    parse_id,
    parse_time,
    parse_timezone,
    time_range,
)
from booking_gate.webhooks import BookedBy, DeliveryState

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
RoomLockListener = Callable[[RoomId, str], Awaitable[None]]

MAX_EVENTS_PER_BATCH = 500
# Longer than a signalling node's longest wait between two delivery attempts.
SETTLE_AFTER_START = timedelta(seconds=30)
MAX_ROOMS_PER_BATCH = 1000
MAX_SLOT_MINUTES = 24 * 60
MAX_EXPORT_LIMIT = 500
MAX_NOTICE_HOURS = 24 * 30
# How far back an erasure looks for a session still open (bookings last at most 24 h).
ERASE_LOOKBACK = timedelta(days=2)
# The CSV export reads the store this many bookings at a time.
CSV_PAGE = 100
# The professional's calendar feed covers this window around now.
FEED_PAST = timedelta(days=30)
FEED_AHEAD = timedelta(days=180)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _credit_target(outcome: Outcome, funding: Funding) -> CreditState:
    effect = rules.credit_effect(outcome, funding)
    if effect is CreditEffect.CONSUME:
        return CreditState.CONSUMED
    if effect is CreditEffect.RELEASE:
        return CreditState.RELEASED
    return CreditState.NONE


def _erased(field: str | None) -> Conflict:
    return Conflict("a party of this booking was erased; its id is a pseudonym now"
                    if field is None else "this id is the pseudonym of an erased person",
                    code="party_erased", field=field)


def _not_reported(kind: EventKind, field: str) -> InvalidRequest:
    return InvalidRequest(f"'kind' {kind.value} is not reported by signalling: the gate "
                          f"records it from its own endpoint", field=field)


def _reported_kind(event: Body) -> EventKind:
    kind = event.choice("kind", EventKind)
    if kind not in REPORTED_KINDS:
        raise _not_reported(kind, "kind")
    return kind


def booking_json(booking: Booking) -> dict[str, Any]:
    cancellation = None
    if booking.cancellation is not None:
        c = booking.cancellation
        cancellation = {"by": c.by.value, "at": format_time(c.at), "late": c.late,
                        "chargeable": c.chargeable}
    return {
        "booking_id": booking.booking_id, "professional_id": booking.professional_id,
        "client_id": booking.client_id, "starts_at": format_time(booking.starts_at),
        "ends_at": format_time(booking.ends_at), "funding": booking.funding.value,
        "source": booking.source.value, "status": booking.status.value,
        "room_id": booking.room_id, "cancellation": cancellation,
    }


def signalling_room_json(booking: Booking, window: tuple[datetime, datetime],
                         client_relay_only: bool = False) -> dict[str, Any]:
    """What a signalling node needs to admit parties to the booking's room; ``window`` is
    ``TokenIssuer.window(booking)``. ``changed_at`` keeps its microseconds: nodes compare
    it with token ``iat`` seconds. ``client_relay_only``: the client hides their IP (its
    own preference or its hub's), so its welcome asks for relay-only ICE."""
    opens_at, closes_at = window
    return {
        "room_id": booking.room_id, "booking_id": booking.booking_id,
        "professional_id": booking.professional_id, "client_id": booking.client_id,
        "starts_at": format_time(booking.starts_at), "ends_at": format_time(booking.ends_at),
        "cancelled": booking.status is BookingStatus.CANCELLED,
        "changed_at": format_time(booking.changed_at),
        "opens_at": format_time(opens_at), "closes_at": format_time(closes_at),
        "client_relay_only": client_relay_only,
    }


def professional_json(p: Professional) -> dict[str, Any]:
    return {"professional_id": p.professional_id, "name": p.name, "email": p.email,
            "timezone": p.timezone, "session_minutes": p.session_minutes,
            "buffer_minutes": p.buffer_minutes, "slot_minutes": p.slot_step,
            "cancellation_notice_hours": p.cancellation_notice_hours,
            "availability": list(p.availability)}


def client_json(c: Client) -> dict[str, Any]:
    return {"client_id": c.client_id, "name": c.name, "email": c.email,
            "timezone": c.timezone, "hub_id": c.hub_id, "hide_ip": c.hide_ip}


def hub_json(h: HubSettings) -> dict[str, Any]:
    return {"hub_id": h.hub_id, "clients_hide_ip": h.clients_hide_ip}


def credits_json(account: CreditAccount) -> dict[str, Any]:
    return {"client_id": account.client_id, "hub_id": account.hub_id,
            "balance": account.balance, "reserved": account.reserved}


def _encode_cursor(booking: Booking) -> str:
    raw = json.dumps([format_time(booking.starts_at), booking.booking_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _encode_id_cursor(message_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([message_id]).encode()).decode().rstrip("=")


def _decode_id_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        (message_id,) = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        message_id = None
    if isinstance(message_id, bool) or not isinstance(message_id, int) or message_id < 0:
        raise InvalidRequest("'cursor' is not a cursor this API returned", field="cursor")
    return message_id


def _limit(query: dict[str, str], default: int = 100) -> int:
    try:
        limit = int(query.get("limit", str(default)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_EXPORT_LIMIT:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_EXPORT_LIMIT}",
                             field="limit")
    return limit


def _only(query: dict[str, str], allowed: set[str]) -> None:
    for key in query:
        if key not in allowed:
            raise InvalidRequest(f"unknown query parameter '{key}'", field=key)


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """A validated ``GET /api/v1/attendance``."""

    start: datetime
    end: datetime
    hub_id: str | None
    outcome: Outcome | None
    limit: int
    after: tuple[datetime, str] | None


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        starts, booking_id = json.loads(raw)
        return parse_time(starts, "cursor"), parse_id(booking_id, "cursor")
    except (ValueError, TypeError, binascii.Error, InvalidRequest):
        raise InvalidRequest("'cursor' is not a cursor this API returned", field="cursor") from None


def _with_webhook(emails: notify.Notify, event: BookingEvent, previous: Booking | None,
                  booked_by: BookedBy, by: Role | None) -> notify.Notify:
    """``emails`` and the booking's webhook event, from one ``notify`` call."""

    def both(booking: Booking) -> Sequence[OutboxMessage]:
        data = booking_json(booking)
        if event is BookingEvent.CREATED:
            hook = webhooks.booking_created(data, booked_by, booking.created_at)
        elif event is BookingEvent.RESCHEDULED:
            was = booking_json(previous or booking)
            hook = webhooks.booking_rescheduled(data, was, (by or Role.CLIENT).value,
                                                booking.changed_at)
        else:
            at = booking.cancellation.at if booking.cancellation else booking.changed_at
            hook = webhooks.booking_cancelled(data, at)
        return [*emails(booking), hook]

    return both


class GateService:
    def __init__(self, store: Store, tokens: TokenIssuer, public_url: str, windows: Windows,
                 clock: Clock = utc_now) -> None:
        self.store = store
        self.erasures = ErasureStore(store.engine)
        self.tokens = tokens
        self.public_url = public_url
        self.windows = windows
        self.clock = clock
        # Until then, a record the window's end alone would make final stays pending:
        # after a start (an outage, say) signalling nodes deliver what they kept meanwhile.
        self.settled_at = clock() + SETTLE_AFTER_START
        self.room_lock_listeners: list[RoomLockListener] = []
        # Notification emails (notify.py): their sender, and who hears that some were queued.
        self.mail_from = "carecall@localhost"
        self.outbox_listeners: list[Callable[[], None]] = []
        # The webhook receiver (webhook_sender.py), or None: no webhooks.
        self.webhook_url: str | None = None

    # -- people ------------------------------------------------------------------

    async def put_professional(self, professional_id: str, data: object) -> dict[str, Any]:
        pid = parse_id(professional_id, "professional_id")
        existing = await self.store.get_professional(pid)
        if existing is not None and existing.erased_at is not None:
            raise _erased("professional_id")
        body = Body(data, {"name", "email", "timezone", "session_minutes", "buffer_minutes",
                           "slot_minutes", "cancellation_notice_hours", "availability"})
        session = body.integer("session_minutes", low=5, high=480, default=50)
        buffer = body.integer("buffer_minutes", low=0, high=240, default=10)
        slot = None
        if body.data.get("slot_minutes") is not None:
            # Never shorter than a session: a grid must not offer overlapping starts.
            slot = body.integer("slot_minutes", low=session, high=MAX_SLOT_MINUTES)
        professional = Professional(
            professional_id=ProfessionalId(pid), name=body.name(),
            email=body.email(), timezone=parse_timezone(body.data.get("timezone")),
            session_minutes=session, buffer_minutes=buffer,
            availability=tuple(w.to_json() for w in parse_availability(
                body.data.get("availability", []))),
            updated_at=self.clock(), slot_minutes=slot,
            cancellation_notice_hours=body.integer("cancellation_notice_hours", low=0,
                                                   high=MAX_NOTICE_HOURS,
                                                   default=rules.HUB_NOTICE_HOURS),
        )
        return professional_json(await self.store.put_professional(professional))

    async def _professional(self, professional_id: str, *, erased: bool = False
                            ) -> Professional:
        """The professional; an erased one only with ``erased`` (its bookings' terms)."""
        professional = await self.store.get_professional(parse_id(professional_id,
                                                                  "professional_id"))
        if professional is None or (professional.erased_at is not None and not erased):
            raise NotFound(f"unknown professional '{professional_id}'", field="professional_id")
        return professional

    async def add_block(self, professional_id: str, data: object) -> dict[str, Any]:
        await self._professional(professional_id)
        body = Body(data, {"starts_at", "ends_at", "reason"})
        starts_at, ends_at = time_range(body, max_hours=24 * 366)
        reason = body.text("reason", required=False)
        block = await self.store.add_block(professional_id, starts_at, ends_at, reason,
                                           self.clock())
        return {"block_id": block.block_id, "professional_id": block.professional_id,
                "starts_at": format_time(starts_at), "ends_at": format_time(ends_at),
                "reason": reason}

    async def delete_block(self, professional_id: str, block_id: str) -> None:
        await self._professional(professional_id)
        if not await self.store.delete_block(professional_id, parse_id(block_id, "block_id")):
            raise NotFound(f"unknown block '{block_id}'", field="block_id")

    async def put_client(self, client_id: str, data: object) -> dict[str, Any]:
        cid = parse_id(client_id, "client_id")
        existing = await self.store.get_client(cid)
        if existing is not None and existing.erased_at is not None:
            raise _erased("client_id")
        body = Body(data, {"name", "email", "timezone", "hub_id", "hide_ip"})
        hub = body.ident("hub_id", required=False)
        client = Client(
            client_id=ClientId(cid), name=body.name(), email=body.email(),
            timezone=parse_timezone(body.data.get("timezone")),
            hub_id=HubId(hub) if hub else None, updated_at=self.clock(),
            hide_ip=body.boolean("hide_ip"),
        )
        return client_json(await self.store.put_client(client))

    async def put_hub(self, hub_id: str, data: object) -> dict[str, Any]:
        hub = parse_id(hub_id, "hub_id")
        body = Body(data, {"clients_hide_ip"})
        settings = HubSettings(HubId(hub), body.boolean("clients_hide_ip"), self.clock())
        return hub_json(await self.store.put_hub(settings))

    async def get_hub(self, hub_id: str) -> dict[str, Any]:
        return hub_json(await self.store.get_hub(parse_id(hub_id, "hub_id")))

    async def require_client(self, client_id: str, field: str = "client_id") -> Client:
        client = await self.store.get_client(parse_id(client_id, field))
        if client is None or client.erased_at is not None:
            raise NotFound(f"unknown client '{client_id}'", field=field)
        return client

    # -- erasure (erasure.py) --------------------------------------------------------

    async def erase(self, kind: PartyKind, party_id: str) -> None:
        """Erase a client or a professional (GDPR art. 17); ``not_found`` when there is no
        such person, including one already erased (its id no longer exists)."""
        field = f"{kind.value}_id"
        pid = parse_id(party_id, field)
        now = self.clock()
        pseudonym = await self.erasures.erase(kind, pid, now)
        if pseudonym is None:
            raise NotFound(f"unknown {kind.value} '{party_id}'", field=field)
        self.outbox_changed()
        # A session in progress ends now: its rooms are closed (4403 not_a_party) here;
        # scale-out nodes see the party change at their next revalidation.
        mine = pseudonym if kind is PartyKind.CLIENT else None
        where = BookingFilter(
            professional_id=None if mine else pseudonym, client_id=mine,
            status=BookingStatus.CONFIRMED, start=now - ERASE_LOOKBACK,
            end=now + self.windows.join_early + timedelta(seconds=1))
        for booking in await self.store.list_bookings(where, None, MAX_EXPORT_LIMIT):
            opens_at, closes_at = self.tokens.window(booking)
            if opens_at <= now < closes_at:
                await self._lock_room(booking.room_id, "not_a_party")

    async def grant_credits(self, hub_id: str, data: object) -> dict[str, Any]:
        hub = parse_id(hub_id, "hub_id")
        body = Body(data, {"client_id", "credits"})
        client_id = body.req_ident("client_id")
        credits = body.integer("credits", low=1, high=10_000)
        client = await self.require_client(client_id)
        if client.hub_id != hub:
            raise InvalidRequest(
                f"client '{client_id}' does not belong to hub '{hub}'", field="client_id")
        account = await self.store.grant_credits(hub, client_id, credits, self.clock())
        self.outbox_changed()
        return credits_json(account)

    async def get_credits(self, client_id: str) -> dict[str, Any]:
        return credits_json(await self.store.get_credits(await self.require_client(client_id)))

    # -- bookings ----------------------------------------------------------------

    async def put_booking(self, booking_id: str, data: object) -> tuple[dict[str, Any], bool]:
        bid = parse_id(booking_id, "booking_id")
        body = Body(data, {"professional_id", "client_id", "starts_at", "ends_at", "funding",
                           "source"})
        professional_id = ProfessionalId(body.req_ident("professional_id"))
        client_id = ClientId(body.req_ident("client_id"))
        starts_at, ends_at = time_range(body)
        new = NewBooking(
            booking_id=BookingId(bid), professional_id=professional_id, client_id=client_id,
            starts_at=starts_at, ends_at=ends_at,
            funding=body.choice("funding", Funding), source=body.choice("source", Source),
        )
        await self._refuse_erased(professional_id, client_id)
        notices = await self.notifier(BookingEvent.CREATED, professional_id, client_id)
        booking, created = await self.store.create_booking(new, self.clock(), notify=notices)
        if created:
            self.outbox_changed()
            logger.info("booking created", extra={"booking_id": bid})
        return booking_json(booking), created

    async def _refuse_erased(self, professional_id: str, client_id: str) -> None:
        """An erased person books nothing: their pseudonym is ``not_found`` (an unknown id
        is left to the store, which refuses it in the booking's transaction)."""
        professional = await self.store.get_professional(professional_id)
        if professional is not None and professional.erased_at is not None:
            raise NotFound(f"unknown professional '{professional_id}'", field="professional_id")
        client = await self.store.get_client(client_id)
        if client is not None and client.erased_at is not None:
            raise NotFound(f"unknown client '{client_id}'", field="client_id")

    async def _booking(self, booking_id: str) -> Booking:
        booking = await self.store.get_booking(parse_id(booking_id, "booking_id"))
        if booking is None:
            raise NotFound(f"unknown booking '{booking_id}'", field="booking_id")
        return booking

    async def get_booking(self, booking_id: str) -> dict[str, Any]:
        return booking_json(await self._booking(booking_id))

    def _refuse_if_over(self, booking: Booking, now: datetime) -> None:
        if now >= booking.ends_at:
            raise Conflict("the session has already ended", code="not_modifiable", field=None)

    async def cancel(self, booking_id: str, data: object) -> dict[str, Any]:
        booking = await self._booking(booking_id)
        body = Body(data, {"by", "reason"})
        by = body.choice("by", Role)
        reason = body.text("reason", required=False)
        if booking.status is BookingStatus.CANCELLED:
            return booking_json(booking)  # idempotent: a retried cancel changes nothing
        now = self.clock()
        self._refuse_if_over(booking, now)
        professional = await self._professional(booking.professional_id, erased=True)
        notice = rules.notice_hours(booking, professional.cancellation_notice_hours)
        late, chargeable = rules.cancellation_terms(booking, by, now, notice)
        outcome = Outcome.LATE_CANCELLATION if chargeable else Outcome.CANCELLED
        notices = await self.notifier(BookingEvent.CANCELLED, booking.professional_id,
                                       booking.client_id)
        booking, changed = await self.store.cancel(
            booking.booking_id, Cancellation(by, now, late, chargeable, reason, notice),
            _credit_target(outcome, booking.funding), notify=notices)
        if changed:
            self.outbox_changed()
            logger.info("booking cancelled", extra={"booking_id": booking.booking_id})
            await self._record(booking, now)
            await self._lock_room(booking.room_id, "booking_cancelled")
        return booking_json(booking)

    async def cancellation_terms(self, booking_id: str, query: dict[str, str]
                                 ) -> dict[str, Any]:
        """What cancelling now would mean (``rules.quote_cancellation``, as cancel uses)."""
        booking = await self._booking(booking_id)
        _only(query, {"by"})
        by = Body({"by": query.get("by")}, {"by"}).choice("by", Role)
        if booking.status is BookingStatus.CANCELLED:
            raise Conflict("the booking is cancelled", code="booking_cancelled", field=None)
        now = self.clock()
        self._refuse_if_over(booking, now)
        professional = await self._professional(booking.professional_id, erased=True)
        return rules.quote_cancellation(booking, by, now,
                                        professional.cancellation_notice_hours).to_json()

    async def list_bookings(self, query: dict[str, str]) -> dict[str, Any]:
        """``GET /api/v1/bookings``: a page in (starts_at, booking_id) order."""
        _only(query, {"professional_id", "client_id", "hub_id", "status", "from", "to",
                      "limit", "cursor"})
        ids = {key: parse_id(query[key], key) if query.get(key) else None
               for key in ("professional_id", "client_id", "hub_id")}
        status = None
        if query.get("status"):
            status = Body({"status": query["status"]}, {"status"}).choice("status",
                                                                         BookingStatus)
        start = parse_time(query["from"], "from") if query.get("from") else None
        end = parse_time(query["to"], "to") if query.get("to") else None
        if start is not None and end is not None and end <= start:
            raise InvalidRequest("'to' must be after 'from'", code="invalid_time_range",
                                 field="to")
        limit = _limit(query)
        after = _decode_cursor(query["cursor"]) if query.get("cursor") else None
        where = BookingFilter(professional_id=ids["professional_id"],
                              client_id=ids["client_id"], hub_id=ids["hub_id"], status=status,
                              start=start, end=end)
        page = await self.store.list_bookings(where, after, limit + 1)
        more, page = len(page) > limit, page[:limit]
        return {"items": [booking_json(b) for b in page],
                "next_cursor": _encode_cursor(page[-1]) if more else None}

    async def reschedule(self, booking_id: str, data: object) -> dict[str, Any]:
        booking = await self._booking(booking_id)
        body = Body(data, {"starts_at", "ends_at", "by"})
        starts_at, ends_at = time_range(body)
        by = body.choice("by", Role)
        if booking.status is BookingStatus.CANCELLED:
            raise Conflict("the booking is cancelled", code="booking_cancelled", field=None)
        if booking.source is not Source.HUB:
            raise Conflict("only hub bookings can be rescheduled; cancel this one instead",
                           code="not_modifiable", field=None)
        now = self.clock()
        self._refuse_if_over(booking, now)
        notices = await self.notifier(BookingEvent.RESCHEDULED, booking.professional_id,
                                       booking.client_id, previous=booking, by=by)
        updated = await self.store.reschedule(booking.booking_id, starts_at, ends_at, now,
                                              notify=notices)
        self.outbox_changed()
        logger.info("booking rescheduled", extra={"booking_id": booking.booking_id})
        await self._lock_room(booking.room_id, "booking_rescheduled")
        return booking_json(updated)

    async def notifier(self, event: BookingEvent, professional_id: str, client_id: str,
                       previous: Booking | None = None, *,
                       booked_by: BookedBy = BookedBy.BOOKING_SYSTEM,
                       by: Role | None = None) -> notify.Notify | None:
        """The emails and the webhook event for ``event``, built in the store's transaction
        (``notify.py``, ``webhooks.py``)."""
        professional = await self.store.get_professional(professional_id)
        client = await self.store.get_client(client_id)
        if professional is None or client is None:
            return None  # the store refuses the change with not_found
        if professional.erased_at is not None or client.erased_at is not None:
            return None  # nobody to write to, and no event naming a pseudonym
        emails = notify.notifier(event, professional, client, mail_from=self.mail_from,
                                 previous=previous)
        return _with_webhook(emails, event, previous, booked_by, by)

    async def notifier_for_new(self, professional: Professional, client_id: str
                               ) -> notify.Notify | None:
        """The ``notify`` for ``Store.create_booking`` of a new booking of ``professional``.

        Await it before the store call, and call ``outbox_changed()`` once it committed.
        """
        client = await self.store.get_client(client_id)
        if client is None or client.erased_at is not None:
            return None  # the store refuses the booking with not_found
        emails = notify.notifier(BookingEvent.CREATED, professional, client,
                                 mail_from=self.mail_from)
        return _with_webhook(emails, BookingEvent.CREATED, None, BookedBy.BOOKING_SYSTEM, None)

    def outbox_changed(self) -> None:
        """Wake the senders: a committed change queued outbox messages."""
        for listener in self.outbox_listeners:
            listener()

    async def links(self, booking_id: str) -> dict[str, Any]:
        booking = await self._booking(booking_id)
        if booking.status is BookingStatus.CANCELLED:
            raise Conflict("the booking is cancelled", code="booking_cancelled", field=None)
        for party in (await self.store.get_professional(booking.professional_id),
                      await self.store.get_client(booking.client_id)):
            if party is None or party.erased_at is not None:
                raise _erased(None)
        now = self.clock()
        result = {}
        for role in Role:
            issued = self.tokens.issue(booking, role, now)
            result[role.value] = {"url": join_url(self.public_url, booking.room_id, issued.token),
                                  "expires_at": format_time(issued.expires_at)}
        return result

    async def _lock_room(self, room_id: RoomId, reason: str) -> None:
        for listener in self.room_lock_listeners:
            try:
                await listener(room_id, reason)
            except Exception:
                logger.exception("a room lock listener failed")

    # -- calendar feed (ics.py) ---------------------------------------------------

    async def calendar_url(self, professional_id: str, secret: bytes) -> dict[str, Any]:
        """The professional's feed URL, with its key: for calendar subscription."""
        professional = await self._professional(professional_id)
        pid = professional.professional_id
        key = ics.feed_key(secret, pid)
        return {"url": f"{self.public_url}/api/v1/professionals/{pid}/calendar.ics?key={key}"}

    async def calendar_feed(self, professional_id: str, key: str | None, secret: bytes
                            ) -> bytes:
        """The professional's bookings as iCalendar; a wrong key is ``not_found`` too."""
        if not ics.feed_key_matches(secret, professional_id, key):
            raise NotFound("no such calendar", field=None)
        professional = await self.store.get_professional(professional_id)
        if professional is None or professional.erased_at is not None:
            raise NotFound("no such calendar", field=None)
        now = self.clock()
        bookings = await self.store.list_confirmed(professional.professional_id,
                                                   now - FEED_PAST, now + FEED_AHEAD)
        return ics.professional_feed_ics(professional, bookings)

    async def room_admissions(self, room_ids: Sequence[str]) -> dict[str, tuple[Booking, bool]]:
        """For signalling's joins and revalidation: the booking behind each room that
        exists, and whether its client hides their IP (their own or their hub's setting,
        read now, in one query: a change applies from the next join)."""
        return await self.store.room_admissions(room_ids)

    async def relay_only_bookings(self, bookings: Sequence[Booking]) -> set[BookingId]:
        """Those of ``bookings`` whose client hides their IP (as ``room_admissions``)."""
        found = await self.room_admissions([b.room_id for b in bookings])
        return {booking.booking_id for booking, hides in found.values() if hides}

    # -- signalling nodes (api_signalling.py) ---------------------------------------

    async def signalling_room(self, room_id: str) -> dict[str, Any]:
        found = await self.room_admissions([parse_id(room_id, "room_id")])
        if room_id not in found:
            raise NotFound("unknown room", field="room_id")
        booking, relay_only = found[room_id]
        return signalling_room_json(booking, self.tokens.window(booking), relay_only)

    async def signalling_rooms(self, data: object) -> dict[str, Any]:
        """``{"rooms": {room_id: room or null}}`` for every id in ``{"room_ids": [...]}``."""
        body = Body(data, {"room_ids"})
        raw = body.data.get("room_ids")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ROOMS_PER_BATCH:
            raise InvalidRequest(
                f"'room_ids' must be a list of 1 to {MAX_ROOMS_PER_BATCH} room ids",
                field="room_ids")
        room_ids = [parse_id(room_id, f"room_ids[{index}]") for index, room_id in enumerate(raw)]
        found = await self.room_admissions(list(dict.fromkeys(room_ids)))  # each id once
        rooms: dict[str, Any] = dict.fromkeys(room_ids)
        for room_id, (booking, relay_only) in found.items():
            rooms[room_id] = signalling_room_json(booking, self.tokens.window(booking),
                                                  relay_only)
        return {"rooms": rooms}

    # -- attendance --------------------------------------------------------------

    async def ingest(self, events: Sequence[AttendanceEvent]) -> int:
        """Append attendance events (idempotent by event id); returns how many were new.

        Only what signalling reports (``REPORTED_KINDS``): a ``running_late`` notice is
        the gate's own, written by ``lobby.Lobby.running_late`` alone.
        """
        for index, e in enumerate(events):
            if e.kind not in REPORTED_KINDS:
                raise _not_reported(e.kind, f"events[{index}].kind")
        known = {e.booking_id for e in events}
        for booking_id in known:
            if await self.store.get_booking(booking_id) is None:
                raise NotFound(f"unknown booking '{booking_id}'", field="booking_id")
        return await self.store.add_events(events)

    async def ingest_json(self, data: object) -> dict[str, Any]:
        body = Body(data, {"events"})
        raw = body.data.get("events")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_EVENTS_PER_BATCH:
            raise InvalidRequest(
                f"'events' must be a list of 1 to {MAX_EVENTS_PER_BATCH} events", field="events")
        events = []
        for index, item in enumerate(raw):
            event = Body(item, {"event_id", "booking_id", "role", "kind", "at", "reason"})
            try:
                events.append(AttendanceEvent(
                    event_id=EventId(event.req_ident("event_id")),
                    booking_id=BookingId(event.req_ident("booking_id")),
                    role=event.choice("role", Role), kind=_reported_kind(event),
                    at=event.time("at"), reason=event.text("reason", max_len=64, required=False),
                ))
            except InvalidRequest as error:
                error.field = f"events[{index}].{error.field}"
                raise
        stored = await self.ingest(events)
        return {"received": len(events), "stored": stored}

    async def _record(self, booking: Booking, now: datetime,
                      events: Sequence[AttendanceEvent] | None = None,
                      stored: dict[str, Any] | None = None) -> dict[str, Any]:
        """The booking's attendance record, finalising (and settling credit) when due."""
        if stored is not None:
            # A record finalised under older rules lacks their newer fields.
            return rules.stored_record(stored)
        if events is None:
            events = (await self.store.events_for([booking.booking_id]))[booking.booking_id]
        record = rules.evaluate(booking, events, now, self.windows,
                                settled=now >= self.settled_at)
        if record.outcome is None:
            return record.to_json()
        final = await self.store.finalize(
            booking.booking_id, record.outcome.value, record.to_json(),
            _credit_target(record.outcome, booking.funding), now)
        self.outbox_changed()  # attendance.finalized, credits.changed
        return final

    async def attendance(self, booking_id: str) -> dict[str, Any]:
        booking = await self._booking(booking_id)
        stored = (await self.store.records_for([booking.booking_id])).get(booking.booking_id)
        record = await self._record(booking, self.clock(), stored=stored)
        record["overrides"] = self._audit_json(
            (await self.store.overrides_for([booking.booking_id]))[booking.booking_id])
        return record

    @staticmethod
    def _audit_json(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**entry, "at": format_time(entry["at"])} for entry in entries]

    async def override(self, booking_id: str, data: object, by: str) -> dict[str, Any]:
        booking = await self._booking(booking_id)
        body = Body(data, {"outcome", "reason", "by"})
        outcome = body.choice("outcome", Outcome)
        reason = body.req_text("reason")
        author = body.text("by", max_len=128, required=False) or by
        now = self.clock()
        bid = booking.booking_id
        events = (await self.store.events_for([bid]))[bid]
        # The outcome being overridden, finalising (and settling credit) first if due.
        current = await self._record(booking, now, events,
                                     (await self.store.records_for([bid])).get(bid))
        base = rules.evaluate(booking, events, now, self.windows)
        # A late cancellation overridden to cancelled is a waiver: its explanation names
        # who waived it.
        record = rules.overridden(base, outcome, booking.funding, reason, by=author,
                                  cancellation=booking.cancellation).to_json()
        await self.store.override(booking.booking_id, current["outcome"], record,
                                  _credit_target(outcome, booking.funding), reason, author, now)
        self.outbox_changed()
        logger.info("attendance overridden", extra={"booking_id": booking.booking_id})
        return await self.attendance(booking_id)

    def export_query(self, query: dict[str, str], *, csv: bool = False) -> ExportQuery:
        """Validate ``GET /api/v1/attendance``; a CSV export streams every row, so it
        takes no ``limit`` or ``cursor``."""
        _only(query, {"from", "to", "hub_id", "outcome", "limit", "cursor", "format"})
        if query.get("format") not in (None, "json", "csv"):
            raise InvalidRequest("'format' must be one of json, csv", field="format")
        if "from" not in query or "to" not in query:
            field = "from" if "from" not in query else "to"
            raise InvalidRequest(f"'{field}' is required", field=field)
        start, end = parse_time(query["from"], "from"), parse_time(query["to"], "to")
        if end <= start:
            raise InvalidRequest("'to' must be after 'from'", code="invalid_time_range",
                                 field="to")
        hub_id = parse_id(query["hub_id"], "hub_id") if query.get("hub_id") else None
        outcome = None
        if query.get("outcome"):
            outcome = Body({"outcome": query["outcome"]}, {"outcome"}).choice("outcome", Outcome)
        if csv:
            for key in ("limit", "cursor"):
                if key in query:
                    raise InvalidRequest(f"a CSV export streams every row: '{key}' is for "
                                         f"JSON pages only", field=key)
            return ExportQuery(start, end, hub_id, outcome, CSV_PAGE, None)
        limit = _limit(query)
        after = _decode_cursor(query["cursor"]) if query.get("cursor") else None
        return ExportQuery(start, end, hub_id, outcome, limit, after)

    async def _export_page(self, q: ExportQuery, after: tuple[datetime, str] | None
                           ) -> tuple[list[tuple[Booking, dict[str, Any]]], bool]:
        """One page of bookings with their records (finalised when due); more after it?"""
        page = await self.store.export_page(q.start, q.end, q.hub_id,
                                            q.outcome and q.outcome.value, after, q.limit + 1)
        more, page = len(page) > q.limit, page[:q.limit]
        ids = [b.booking_id for b in page]
        stored = await self.store.records_for(ids)
        events = await self.store.events_for([i for i in ids if i not in stored])
        audits = await self.store.overrides_for(ids)
        now = self.clock()
        rows = []
        for booking in page:
            record = await self._record(booking, now, events.get(booking.booking_id),
                                        stored.get(booking.booking_id))
            record["overrides"] = self._audit_json(audits[booking.booking_id])
            rows.append((booking, record))
        return rows, more

    async def export(self, query: dict[str, str]) -> dict[str, Any]:
        q = self.export_query(query)
        if q.outcome is not None:
            await self.finalize_due()
        rows, more = await self._export_page(q, q.after)
        return {"items": [record for _, record in rows],
                "next_cursor": _encode_cursor(rows[-1][0]) if more else None}

    async def export_csv(self, q: ExportQuery) -> AsyncIterator[bytes]:
        """The export as CSV, one chunk per page: the header first, then ``CSV_PAGE``
        bookings at a time, so memory stays bounded whatever the month holds."""
        if q.outcome is not None:
            await self.finalize_due()
        yield billing_csv.header()
        after = None
        while True:
            rows, more = await self._export_page(q, after)
            names = await self.store.professional_names([b.professional_id for b, _ in rows])
            yield billing_csv.encode(billing_csv.row(booking, record,
                                                     names.get(booking.professional_id))
                                     for booking, record in rows)
            if not more:
                return
            after = (rows[-1][0].starts_at, rows[-1][0].booking_id)

    # -- webhooks (webhook_sender.py delivers them) ---------------------------------

    async def deliveries(self, query: dict[str, str]) -> dict[str, Any]:
        _only(query, {"state", "limit", "cursor"})
        state = None
        if query.get("state"):
            state = Body({"state": query["state"]}, {"state"}).choice("state", DeliveryState)
        limit = _limit(query)
        after = _decode_id_cursor(query["cursor"]) if query.get("cursor") else None
        page = await self.store.deliveries(state, after, limit + 1)
        more, page = len(page) > limit, page[:limit]
        return {"items": [d.to_json() for d in page],
                "next_cursor": _encode_id_cursor(page[-1].message_id) if more else None}

    async def retry_delivery(self, webhook_id: str) -> dict[str, Any]:
        """An operator's retry: a failed (or pending) event is due now."""
        if not webhook_id or len(webhook_id) > 64:
            raise NotFound(f"unknown webhook '{webhook_id[:64]}'", field="webhook_id")
        delivery = await self.store.retry_delivery(webhook_id, self.clock())
        self.outbox_changed()
        logger.info("webhook retry requested", extra={"webhook_id": delivery.webhook_id})
        return delivery.to_json()

    async def webhook_status(self) -> dict[str, Any]:
        """Whether a receiver is configured and enabled (a 410 Gone disables it)."""
        if not self.webhook_url:
            return {"configured": False, "enabled": False, "disabled_at": None}
        disabled = await self.store.endpoint_disabled(webhooks.endpoint_key(self.webhook_url))
        return {"configured": True, "enabled": disabled is None,
                "disabled_at": None if disabled is None else format_time(disabled)}

    async def enable_webhooks(self) -> dict[str, Any]:
        """The operator's action after a 410 Gone: deliver to the receiver again."""
        if not self.webhook_url:
            raise Conflict("no webhook receiver is configured (CARECALL_WEBHOOK_URL)",
                           code="webhooks_not_configured", field=None)
        await self.store.set_endpoint_disabled(webhooks.endpoint_key(self.webhook_url),
                                               False, None, self.clock())
        self.outbox_changed()
        logger.info("webhook receiver enabled")
        return await self.webhook_status()

    async def finalize_due(self) -> int:
        """Finalise every record whose outcome can be decided now; returns how many."""
        now = self.clock()
        done = 0
        for booking in await self.store.due_for_finalization(now, limit=500):
            record = await self._record(booking, now)
            done += record["status"] == "final"
        return done
