"""Bulk gate data for PostgreSQL: professionals, clients, credits, bookings, attendance.

    python -m bench.seed postgresql://postgres@127.0.0.1:5432/DB [--bookings N]

The schema must exist already (``carecall gate`` creates it when it starts on the
empty database). Rows go in with COPY (asyncpg ``copy_records_to_table``), then the
tables are analysed. What it writes, for ``N`` bookings:

- ``N // 100`` professionals (10,000 for 1,000,000), each available every day from
  08:00 to 18:00 UTC on the default hourly grid (50-minute sessions, 10-minute buffer);
- two clients per professional, half of them in one of ten hubs with a credit account;
- 100 bookings per professional on that grid, drawn over the 300 days before now and
  the 60 days after, none within three hours of now (so a benchmark can book the
  present itself), never two at once for one professional; 5 % are cancelled;
- for every cancelled booking, its final record; for every other booking whose
  window has closed, four attendance events and the final
  record ``rules.evaluate`` makes of them, except for the last six hours', which
  the finaliser still has to settle.

Progress goes to stderr. The ids are made up; nothing here is personal data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from booking_gate import rules
from booking_gate.model import (
    AttendanceEvent,
    Booking,
    BookingId,
    BookingStatus,
    ClientId,
    EventId,
    EventKind,
    Funding,
    HubId,
    ProfessionalId,
    Role,
    RoomId,
    Source,
)
from booking_gate.rules import Windows, format_time

HUBS = 10
PAST_DAYS, FUTURE_DAYS = 300, 60
FIRST_HOUR, HOURS = 8, 10  # grid starts 08:00 .. 17:00 UTC
SESSION = timedelta(minutes=50)
KEEP_CLEAR = timedelta(hours=3)
CANCELLED_SHARE = 0.05
WINDOWS = Windows(join_early=timedelta(seconds=900), overrun=timedelta(seconds=900))
AVAILABILITY = json.dumps([{"weekday": d, "start": "08:00", "end": "18:00"} for d in range(7)])
BATCH = 50_000


@dataclass(frozen=True, slots=True)
class Sizes:
    bookings: int
    professionals: int

    @property
    def per_professional(self) -> int:
        return self.bookings // self.professionals


def professional_id(index: int) -> str:
    return f"pro-{index:05d}"


def client_id(index: int) -> str:
    return f"cli-{index:06d}"


def hub_of(client: int) -> str | None:
    """Clients of even index belong to a hub."""
    return f"hub-{client % HUBS}" if client % 2 == 0 else None


def _template(sponsored: bool) -> tuple[str, datetime, datetime]:
    """A final record of a completed session as ``rules.evaluate`` writes it, with the
    booking id and times replaced by placeholders: evaluating a million bookings one by
    one would take longer than loading them."""
    starts = datetime(2001, 2, 3, 4, 0, tzinfo=UTC)
    ends = starts + SESSION
    booking = Booking(
        BookingId("TEMPLATE-ID"), ProfessionalId("p"), ClientId("c"),
        HubId("h") if sponsored else None, starts, ends,
        Funding.SPONSORED if sponsored else Funding.PRIVATE,
        Source.HUB if sponsored else Source.DIRECT, BookingStatus.CONFIRMED, RoomId("r"),
        starts, starts)
    events = [AttendanceEvent(EventId(f"e{n}"), booking.booking_id, role, kind, starts, reason)
              for n, (role, kind, reason) in enumerate(_events())]
    record = rules.evaluate(booking, events, ends + timedelta(days=1), WINDOWS).to_json()
    assert record["status"] == "final"
    text = json.dumps(record).replace("TEMPLATE-ID", "@BID@")
    for placeholder, at in (("@W@", ends + WINDOWS.overrun), ("@S@", starts), ("@E@", ends)):
        text = text.replace(format_time(at), placeholder)
    return text, starts, ends


def _events() -> list[tuple[Role, EventKind, str | None]]:
    return [(Role.PROFESSIONAL, EventKind.JOINED, None), (Role.CLIENT, EventKind.JOINED, None),
            (Role.PROFESSIONAL, EventKind.MEDIA_CONNECTED, "video"),
            (Role.CLIENT, EventKind.MEDIA_CONNECTED, "video")]


def _bookings(sizes: Sizes, now: datetime, rng: random.Random
              ) -> Iterator[tuple[tuple[Any, ...], str | None]]:
    """(bookings row, outcome of its final record or None) for every booking."""
    first_day = (now - timedelta(days=PAST_DAYS)).replace(hour=0, minute=0, second=0,
                                                          microsecond=0)
    grid = [first_day + timedelta(days=d, hours=FIRST_HOUR + h)
            for d in range(PAST_DAYS + FUTURE_DAYS) for h in range(HOURS)]
    grid = [s for s in grid if abs(s - now) > KEEP_CLEAR]
    settled_before = now - timedelta(hours=6)
    clients = 2 * sizes.professionals
    serial = 0
    for p in range(sizes.professionals):
        pid = professional_id(p)
        for starts in sorted(rng.sample(grid, sizes.per_professional)):
            serial += 1
            c = rng.randrange(clients)
            hub = hub_of(c)
            ends = starts + SESSION
            cancelled = rng.random() < CANCELLED_SHARE
            over = ends + WINDOWS.overrun <= now
            created = starts - timedelta(days=7)
            if hub is None:
                funding, source, credit = "private", "direct", "none"
            else:
                funding, source = "sponsored", "hub"
                credit = "released" if cancelled else "consumed" if over else "reserved"
            row = (f"bkg-{serial:07d}", pid, client_id(c), hub, starts, ends, funding, source,
                   "cancelled" if cancelled else "confirmed", secrets.token_urlsafe(16),
                   created, created, credit,
                   "client" if cancelled else None, created if cancelled else None,
                   False if cancelled else None, False if cancelled else None,
                   None, None, 0, 24 if cancelled else None)
            outcome = None
            if cancelled:  # the finaliser settles a cancellation within 30 s
                outcome = "cancelled"
            elif over and starts < settled_before:
                outcome = "completed"
            yield (*row, outcome is not None), outcome


BOOKING_COLUMNS = ("booking_id", "professional_id", "client_id", "hub_id", "starts_at",
                   "ends_at", "funding", "source", "status", "room_id", "created_at",
                   "changed_at", "credit_state", "cancelled_by", "cancelled_at", "cancel_late",
                   "cancel_chargeable", "cancel_reason", "idempotency_key", "ics_sequence",
                   "cancel_notice_hours", "finalized")


# As migration 0001 creates it.
NO_OVERLAP = ("ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist "
              "(professional_id WITH =, tstzrange(starts_at, ends_at) WITH &&) "
              "WHERE (status = 'confirmed')")


def _cancelled_record(booking_id: str) -> str:
    # Cancelled in time by the client: what ``rules.evaluate`` says of it, minus its
    # parties (nobody joined). Kept simple: the export only reads it back.
    return json.dumps({
        "booking_id": booking_id, "status": "final", "outcome": "cancelled",
        "billable": False, "payer": None, "rule_version": rules.RULE_VERSION,
        "explanation": "cancelled by the client with enough notice",
        "parties": {r.value: {"joined": False, "first_joined_at": None, "present_seconds": 0,
                              "intervals": []} for r in Role},
        "together_seconds": 0, "media_connected": False, "video_seconds": 0,
        "audio_only_seconds": 0, "notices": []})


async def seed(url: str, bookings: int, professionals: int | None = None,
               seed_value: int = 15) -> dict[str, int]:
    """Load the data into the (migrated, empty) database at ``url``; the row counts."""
    import asyncpg

    sizes = Sizes(bookings, professionals or max(1, bookings // 100))
    rng = random.Random(seed_value)
    now = datetime.now(UTC)
    began = time.monotonic()

    def progress(what: str) -> None:
        print(f"seed: {what} ({time.monotonic() - began:.1f} s)", file=sys.stderr, flush=True)

    templates = {sponsored: _template(sponsored)[0] for sponsored in (True, False)}
    counts = {"professionals": sizes.professionals, "clients": 2 * sizes.professionals}
    conn = await asyncpg.connect(url)
    try:
        # The rows are consistent by construction: skip the foreign-key triggers (a
        # superuser's setting, this connection only), which would triple the load time.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        # The overlap exclusion checks each row against a GiST index as it arrives, which
        # makes COPY ten times slower; built once at the end it verifies the same thing.
        await conn.execute("ALTER TABLE bookings DROP CONSTRAINT bookings_no_overlap")
        await conn.copy_records_to_table("professionals", columns=(
            "professional_id", "name", "email", "timezone", "session_minutes",
            "buffer_minutes", "slot_minutes", "availability", "updated_at",
            "cancellation_notice_hours"), records=[
            (professional_id(p), f"Professional {p}", f"pro{p}@example.invalid", "UTC", 50, 10,
             None, AVAILABILITY, now, 24) for p in range(sizes.professionals)])
        await conn.copy_records_to_table("clients", columns=(
            "client_id", "name", "email", "timezone", "hub_id", "updated_at", "hide_ip"),
            records=[(client_id(c), f"Client {c}", f"client{c}@example.invalid", "UTC",
                      hub_of(c), now, False) for c in range(counts["clients"])])
        await conn.copy_records_to_table("credit_accounts", columns=(
            "client_id", "hub_id", "balance", "reserved"), records=[
            (client_id(c), hub_of(c), 10_000, 0) for c in range(counts["clients"])
            if hub_of(c) is not None])
        progress(f"{sizes.professionals} professionals, {counts['clients']} clients")
        rows: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        records: list[tuple[Any, ...]] = []
        counts.update(bookings=0, events=0, records=0)

        async def flush() -> None:
            await conn.copy_records_to_table("bookings", columns=BOOKING_COLUMNS, records=rows)
            await conn.copy_records_to_table("attendance_events", columns=(
                "event_id", "booking_id", "role", "kind", "at", "reason"), records=events)
            await conn.copy_records_to_table("attendance_records", columns=(
                "booking_id", "outcome", "record", "finalized_at"), records=records)
            counts["bookings"] += len(rows)
            counts["events"] += len(events)
            counts["records"] += len(records)
            rows.clear()
            events.clear()
            records.clear()
            progress(f"{counts['bookings']:,} bookings, {counts['events']:,} events, "
                     f"{counts['records']:,} records")

        for row, outcome in _bookings(sizes, now, rng):
            rows.append(row)
            bid, starts, ends = row[0], row[4], row[5]
            if outcome == "completed":
                for n, (role, kind, reason) in enumerate(_events()):
                    events.append((f"{bid}:{n}", bid, role.value, kind.value, starts, reason))
                text = (templates[row[3] is not None].replace("@BID@", bid)
                        .replace("@S@", format_time(starts)).replace("@E@", format_time(ends))
                        .replace("@W@", format_time(ends + WINDOWS.overrun)))
                records.append((bid, outcome, text, ends + WINDOWS.overrun))
            elif outcome == "cancelled":
                records.append((bid, outcome, _cancelled_record(bid), ends + WINDOWS.overrun))
            if len(rows) >= BATCH:
                await flush()
        if rows:
            await flush()
        await conn.execute(NO_OVERLAP)
        progress("overlap constraint built")
        for table in ("professionals", "clients", "credit_accounts", "bookings",
                      "attendance_events", "attendance_records"):
            await conn.execute(f"ANALYZE {table}")
        progress("analysed")
    finally:
        await conn.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="postgresql://... of a database the gate has migrated")
    parser.add_argument("--bookings", type=int, default=1_000_000)
    parser.add_argument("--professionals", type=int, default=None,
                        help="default: bookings / 100")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(seed(args.url, args.bookings, args.professionals))))


if __name__ == "__main__":
    main()
