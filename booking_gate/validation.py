"""Validation of request bodies and identifiers, at the boundary and before any state change.

Every function here is pure: it turns untrusted JSON-decoded data into typed values or
raises ``InvalidRequest`` naming the offending field with an exact message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from booking_gate.errors import InvalidRequest

_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")
_CLOCK_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
# RFC 3339 section 5.6 date-time (fromisoformat alone accepts more than that).
_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

MAX_TEXT = 500
MAX_NAME = 200
MAX_AVAILABILITY = 100

E = TypeVar("E")


def is_control(char: str) -> bool:
    # Cc: C0/C1 controls incl. NUL, CR, LF, TAB; Cf: format (bidi overrides, zero
    # width); Zl/Zp: the Unicode line and paragraph separators.
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def one_line(text: str) -> str:
    """``text`` with control characters as spaces, whitespace runs as one, trimmed."""
    return " ".join("".join(" " if is_control(c) else c for c in text).split())


def parse_id(value: object, field: str) -> str:
    """An identifier chosen by the booking system: ``[A-Za-z0-9._:-]{1,128}``."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidRequest(
            f"'{field}' must match [A-Za-z0-9._:-]{{1,128}}", code="invalid_id", field=field
        )
    return value


def parse_time(value: object, field: str) -> datetime:
    """An RFC 3339 timestamp with an offset, returned as aware UTC."""
    if not isinstance(value, str) or len(value) > 40 or not _RFC3339_RE.fullmatch(value):
        raise InvalidRequest(
            f"'{field}' must be an RFC 3339 time such as 2026-01-31T09:00:00Z", field=field
        )
    # Python < 3.12 takes at most 6 fractional digits.
    value = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", value)
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        raise InvalidRequest(
            f"'{field}' must be an RFC 3339 time such as 2026-01-31T09:00:00Z (got {value!r})",
            field=field,
        ) from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest(f"'{field}' is out of range", field=field) from None


def parse_timezone(value: object, field: str = "timezone") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or ".." in value:
        raise InvalidRequest(f"'{field}' must be an IANA time zone name", field=field)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"'{field}' must be an IANA time zone name such as Europe/Oslo (got {value!r})",
            field=field,
        ) from None
    return value


class Body:
    """A JSON object from a request, read field by field; unknown fields are refused."""

    def __init__(self, data: object, allowed: set[str]) -> None:
        if not isinstance(data, dict):
            raise InvalidRequest("the request body must be a JSON object", field=None)
        for key in data:
            if key not in allowed:
                raise InvalidRequest(f"unknown field '{key}'", field=str(key))
        self.data: Mapping[str, Any] = data

    def _required(self, field: str) -> Any:
        if field not in self.data or self.data[field] is None:
            raise InvalidRequest(f"'{field}' is required", field=field)
        return self.data[field]

    def text(self, field: str, *, max_len: int = MAX_TEXT, required: bool = True) -> str | None:
        if not required and self.data.get(field) is None:
            return None
        value = self._required(field)
        if not isinstance(value, str) or not 1 <= len(value) <= max_len:
            raise InvalidRequest(
                f"'{field}' must be a string of 1 to {max_len} characters", field=field
            )
        return value

    def req_text(self, field: str, *, max_len: int = MAX_TEXT) -> str:
        value = self.text(field, max_len=max_len)
        assert value is not None
        return value

    def name(self, field: str = "name", *, max_len: int = 200) -> str:
        """A person's name on one line: control and format characters (CR, LF, NUL,
        bidi overrides, ...) become spaces, runs of spaces one, and the ends are trimmed,
        so a name cannot add a line to an email or a calendar entry."""
        value = one_line(self.req_text(field, max_len=max_len))
        if not value:
            raise InvalidRequest(f"'{field}' must contain letters, not only spaces",
                                 field=field)
        return value

    def email(self, field: str = "email") -> str:
        value = self.req_text(field, max_len=254)
        if not _EMAIL_RE.fullmatch(value) or any(is_control(c) for c in value):
            raise InvalidRequest(f"'{field}' must be an email address", field=field)
        return value

    def integer(self, field: str, *, low: int, high: int, default: int | None = None) -> int:
        if default is not None and self.data.get(field) is None:
            return default
        value = self._required(field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidRequest(
                f"'{field}' must be a whole number from {low} to {high}", field=field
            )
        return value

    def boolean(self, field: str, *, default: bool = False) -> bool:
        """A JSON true or false; ``default`` when absent or null. Never 0, 1 or "true"."""
        value = self.data.get(field)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidRequest(f"'{field}' must be true or false", field=field)
        return value

    def time(self, field: str) -> datetime:
        return parse_time(self._required(field), field)

    def ident(self, field: str, *, required: bool = True) -> str | None:
        if not required and self.data.get(field) is None:
            return None
        return parse_id(self._required(field), field)

    def req_ident(self, field: str) -> str:
        value = self.ident(field)
        assert value is not None
        return value

    def choice(self, field: str, enum_type: type[E]) -> E:
        value = self._required(field)
        members = [m.value for m in enum_type]  # type: ignore[attr-defined]
        if value not in members:
            raise InvalidRequest(
                f"'{field}' must be one of {', '.join(members)} (got {value!r})"[:300],
                field=field,
            )
        return enum_type(value)  # type: ignore[call-arg]


def time_range(body: Body, start_field: str = "starts_at", end_field: str = "ends_at",
               *, max_hours: int = 24) -> tuple[datetime, datetime]:
    starts_at, ends_at = body.time(start_field), body.time(end_field)
    if ends_at <= starts_at:
        raise InvalidRequest(
            f"'{end_field}' must be after '{start_field}'", code="invalid_time_range",
            field=end_field,
        )
    if (ends_at - starts_at).total_seconds() > max_hours * 3600:
        raise InvalidRequest(
            f"the range may last at most {max_hours} hours", code="invalid_time_range",
            field=end_field,
        )
    return starts_at, ends_at


@dataclass(frozen=True, slots=True)
class AvailabilityWindow:
    weekday: int  # 0 = Monday
    start: time
    end: time | None  # None: midnight at the end of the day ("24:00")

    def to_json(self) -> dict[str, Any]:
        return {
            "weekday": self.weekday,
            "start": self.start.strftime("%H:%M"),
            "end": "24:00" if self.end is None else self.end.strftime("%H:%M"),
        }


def _clock(value: object, field: str) -> time | None:
    if not isinstance(value, str) or not _CLOCK_RE.fullmatch(value):
        raise InvalidRequest(f"'{field}' must be a wall-clock time HH:MM", field=field)
    if value == "24:00":
        return None
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def parse_availability(value: object, field: str = "availability") -> list[AvailabilityWindow]:
    if not isinstance(value, list) or len(value) > MAX_AVAILABILITY:
        raise InvalidRequest(
            f"'{field}' must be a list of at most {MAX_AVAILABILITY} windows", field=field
        )
    windows = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        body = Body(item, {"weekday", "start", "end"}) if isinstance(item, dict) else None
        if body is None:
            raise InvalidRequest(f"'{where}' must be an object", field=where)
        weekday = body.integer("weekday", low=0, high=6)
        start = _clock(body.data.get("start"), f"{where}.start")
        end = _clock(body.data.get("end"), f"{where}.end")
        if start is None or (end is not None and end <= start):
            raise InvalidRequest(
                f"'{where}.end' must be after '{where}.start'", code="invalid_time_range",
                field=f"{where}.end",
            )
        windows.append(AvailabilityWindow(weekday, start, end))
    return windows
