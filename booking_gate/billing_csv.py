"""The billing export as CSV (RFC 4180): its header, its rows, and cells made safe.

Pure: rows come from bookings and their attendance records; the API streams them page by
page (``api.export_attendance``), so an export never sits in memory whole.

Invariants:
- the header is ``HEADER``, always, in that order (docs/api.md documents it);
- the client appears by ``client_id`` only: never a name or an email (a sponsor must
  not learn whom its employees see);
- no cell starts with a character a spreadsheet would run as a formula (``=``, ``+``,
  ``-``, ``@``, tab, carriage return, line feed): such a cell gets a leading ``'``
  (OWASP's advice for CSV injection), whatever column it is in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from booking_gate.model import Booking
from booking_gate.rules import format_time

CONTENT_TYPE = "text/csv"
HEADER = (
    "booking_id", "professional_id", "professional_name", "client_id", "hub_id",
    "starts_at", "ends_at", "booked_minutes", "outcome", "billable", "payer",
    "together_minutes", "rule_version", "explanation", "video_seconds", "audio_only_seconds",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise(cell: str) -> str:
    """``cell``, prefixed with ``'`` when a spreadsheet would treat it as a formula."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


def row(booking: Booking, record: Mapping[str, Any], professional_name: str | None
        ) -> list[str]:
    """One booking's line: minutes are whole minutes, rounded down; a pending record has
    an empty outcome and payer and ``billable`` false. The two media columns, added last
    (rules 2) so that column positions readers rely on stay, are whole seconds: 0 for a
    record that predates them."""
    booked = int((booking.ends_at - booking.starts_at).total_seconds()) // 60
    cells = [
        booking.booking_id, booking.professional_id, professional_name or "",
        booking.client_id, booking.hub_id or "",
        format_time(booking.starts_at), format_time(booking.ends_at), str(booked),
        str(record.get("outcome") or ""), "true" if record.get("billable") else "false",
        str(record.get("payer") or ""), str(int(record.get("together_seconds") or 0) // 60),
        str(record.get("rule_version") or ""), str(record.get("explanation") or ""),
        str(int(record.get("video_seconds") or 0)),
        str(int(record.get("audio_only_seconds") or 0)),
    ]
    return [neutralise(cell) for cell in cells]


def encode(rows: Iterable[Sequence[str]]) -> bytes:
    """``rows`` as CSV lines (CRLF-terminated, quoted where needed), UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def header() -> bytes:
    return encode([HEADER])


def wants_csv(accept: str | None, fmt: str | None) -> bool:
    """CSV or JSON for ``GET /api/v1/attendance``: ``format`` decides when given;
    otherwise CSV when the ``Accept`` header ranks ``text/csv`` at least as high as
    ``application/json`` (RFC 9110 12.5.1 quality values; ``*/*`` is JSON)."""
    if fmt is not None:
        return fmt == "csv"
    csv_q = json_q = 0.0
    for part in (accept or "").split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == CONTENT_TYPE:
            csv_q = max(csv_q, q)
        elif media in ("application/json", "application/*", "*/*"):
            json_q = max(json_q, q)
    return csv_q > 0 and csv_q >= json_q
