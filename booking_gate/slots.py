"""Free session slots of a professional: pure, no I/O, the current time passed in.

Rules, for the local dates ``date(now in timezone) .. + days - 1``:

- the professional's weekly ``availability`` windows (``{"weekday": 0..6, "start":
  "HH:MM", "end": "HH:MM" | "24:00"}``, 0 = Monday, wall-clock in ``timezone``) of
  the same weekday are merged first when they overlap or touch; a window never
  continues into the next day (``24:00`` ends it);
- in each window, candidate starts are the window start plus whole multiples of
  ``slot_minutes`` of wall-clock time (the professional's grid; by default
  ``session_minutes + buffer_minutes``, so a 50-minute session with a 10-minute buffer
  starts on the hour; it is never shorter than a session, so a grid never overlaps
  itself by design); a candidate at a local time that does not
  exist (a spring-forward gap) is skipped, and an ambiguous one (a fall-back hour)
  means its first occurrence;
- a slot lasts ``session_minutes`` of real time and must lie inside the window's real
  span: from the first instant the local clock reads the start to the first instant
  it reads the end or later (an end inside a repeated fall-back hour is its first
  pass; an end inside a gap is the moment the clock jumps over it). So a slot whose
  real length carries it past the window end across a change of offset is dropped;
- where a spring-forward makes a candidate begin before the previous one ends, the
  later candidate is dropped, so the grid never overlaps itself;
- a slot is free when it starts at or after ``now``, overlaps no block, and its
  interval widened by ``buffer_minutes`` on both sides overlaps no confirmed booking.
  Intervals are half-open ``[start, end)``: touching is not overlapping.

Invariants of ``free_slots``' result: every datetime is aware UTC; slots are sorted by
``starts_at``, unique and pairwise non-overlapping; each is exactly ``session_minutes``
long; all lie inside ``search_range(timezone, now, days)``. The grid depends only on
the availability, the zone, the dates and ``slot_minutes``, never on bookings, blocks or
buffers.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MIN_SESSION_MINUTES = 5
MAX_DAYS = 60

_CLOCK_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_DAY = 24 * 60
_SECOND = timedelta(seconds=1)

Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Slot:
    starts_at: datetime  # aware UTC
    ends_at: datetime  # aware UTC, starts_at + session_minutes


def free_slots(
    *,
    timezone: str,
    availability: Sequence[Mapping[str, object]],
    session_minutes: int,
    buffer_minutes: int,
    slot_minutes: int,
    bookings: Sequence[tuple[datetime, datetime]],
    blocks: Sequence[tuple[datetime, datetime]],
    now: datetime,
    days: int,
) -> list[Slot]:
    """The professional's free slots on ``days`` local dates from the one of ``now``.

    ``bookings`` are the confirmed bookings and ``blocks`` the blocked times, as
    ``(start, end)`` pairs of aware datetimes; only those near ``search_range`` matter.
    Raises ``ValueError`` on bad input.
    """
    zone = _zone(timezone)
    _check_days(days)
    _check_aware(now, "now")
    session = _minutes(session_minutes, "session_minutes", MIN_SESSION_MINUTES)
    buffer = _minutes(buffer_minutes, "buffer_minutes", 0)
    step = _minutes(slot_minutes, "slot_minutes", session_minutes)
    weekly = _merged_windows(availability)
    busy = _merge(
        [*_intervals(blocks, "blocks", timedelta(0)), *_intervals(bookings, "bookings", buffer)]
    )
    busy_starts = [start for start, _ in busy]
    return [
        slot
        for slot in _grid(zone, weekly, session, step, _first_date(zone, now), days)
        if slot.starts_at >= now and not _overlaps(busy, busy_starts, slot)
    ]


def search_range(timezone: str, now: datetime, days: int) -> tuple[datetime, datetime]:
    """The UTC span ``[start, end)`` of the local dates ``free_slots`` looks at.

    Every slot lies inside it; fetch bookings over it widened by the buffer.
    """
    zone = _zone(timezone)
    _check_days(days)
    _check_aware(now, "now")
    first = _first_date(zone, now)
    midnight = datetime.combine(first, time())
    return _instant(midnight, zone), _instant(midnight + timedelta(days=days), zone)


# -- the grid -------------------------------------------------------------------------


def _grid(
    zone: tzinfo,
    weekly: Mapping[int, list[tuple[int, int]]],
    session: timedelta,
    step: timedelta,
    first: date,
    days: int,
) -> list[Slot]:
    """Every slot the availability offers, sorted, before bookings, blocks and ``now``."""
    step_minutes = int(step.total_seconds()) // 60
    candidates: list[Slot] = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        midnight = datetime.combine(day, time())
        for start_minute, end_minute in weekly.get(day.weekday(), []):
            window_end = _instant(midnight + timedelta(minutes=end_minute), zone)
            for minute in range(start_minute, end_minute, step_minutes):
                local = midnight + timedelta(minutes=minute)
                if not _exists(local, zone):
                    continue
                starts_at = local.replace(tzinfo=zone).astimezone(UTC)
                ends_at = starts_at + session
                if ends_at > window_end:
                    break  # later candidates end later still
                candidates.append(Slot(starts_at, ends_at))
    candidates.sort(key=lambda slot: slot.starts_at)
    grid: list[Slot] = []
    for slot in candidates:
        if not grid or slot.starts_at >= grid[-1].ends_at:
            grid.append(slot)
    return grid


def _exists(local: datetime, zone: tzinfo) -> bool:
    """Whether the naive wall-clock time ``local`` is ever read on a clock in ``zone``."""
    there = local.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    return there.replace(tzinfo=None) == local


def _instant(local: datetime, zone: tzinfo) -> datetime:
    """The first instant the clock in ``zone`` reads the naive ``local`` or later, in UTC.

    An existing time gives its first occurrence (fold 0); a time inside a gap gives the
    instant the clock jumps over it.
    """
    after = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _exists(local, zone):
        return after
    # In a gap, fold 0 applies the offset from before the change (an instant after it)
    # and fold 1 the offset from after it (an instant before it): bisect between them.
    before = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while after - before > _SECOND:
        middle = before + _SECOND * ((after - before) // _SECOND // 2)
        if middle.astimezone(zone).replace(tzinfo=None) >= local:
            after = middle
        else:
            before = middle
    return after


def _first_date(zone: tzinfo, now: datetime) -> date:
    return now.astimezone(zone).date()


# -- busy time ------------------------------------------------------------------------


def _intervals(
    pairs: Sequence[tuple[datetime, datetime]], name: str, widen: timedelta
) -> list[Interval]:
    intervals = []
    for index, (start, end) in enumerate(pairs):
        where = f"{name}[{index}]"
        _check_aware(start, f"{where} start")
        _check_aware(end, f"{where} end")
        if end <= start:
            raise ValueError(f"{where} must end after it starts (got {start} to {end})")
        intervals.append((start.astimezone(UTC) - widen, end.astimezone(UTC) + widen))
    return intervals


def _merge(intervals: list[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals covering the same instants (touching ones joined)."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlaps(busy: list[Interval], busy_starts: list[datetime], slot: Slot) -> bool:
    # Of disjoint sorted intervals, only the last one starting before the slot ends
    # can reach into it.
    index = bisect_left(busy_starts, slot.ends_at) - 1
    return index >= 0 and busy[index][1] > slot.starts_at


# -- validation -----------------------------------------------------------------------


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone must be an IANA time zone name (got {name!r})")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone must be an IANA time zone name such as Europe/Oslo (got {name!r})"
        ) from None


def _check_days(days: object) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be a whole number from 1 to {MAX_DAYS} (got {days!r})")


def _minutes(value: object, name: str, low: int) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a whole number of at least {low} (got {value!r})")
    return timedelta(minutes=value)


def _check_aware(value: object, name: str) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (got {value!r})")


def _clock(value: object, where: str) -> int:
    """Minutes after midnight of ``"HH:MM"`` (``"24:00"`` is 1440)."""
    if not isinstance(value, str) or not _CLOCK_RE.fullmatch(value):
        raise ValueError(f"{where} must be a wall-clock time HH:MM (got {value!r})")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _merged_windows(
    availability: Sequence[Mapping[str, object]],
) -> dict[int, list[tuple[int, int]]]:
    """Per weekday, the sorted, disjoint ``(start, end)`` minutes of its windows."""
    by_weekday: dict[int, list[tuple[int, int]]] = {}
    for index, window in enumerate(availability):
        where = f"availability[{index}]"
        if not isinstance(window, Mapping):
            raise ValueError(f"{where} must be a mapping (got {window!r})")
        weekday = window.get("weekday")
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise ValueError(
                f"{where}.weekday must be a whole number from 0 to 6 (got {weekday!r})"
            )
        start = _clock(window.get("start"), f"{where}.start")
        end = _clock(window.get("end"), f"{where}.end")
        if start == _DAY:
            raise ValueError(f"{where}.start must be a wall-clock time before 24:00")
        if end <= start:
            raise ValueError(
                f"{where}.end must be after {where}.start "
                f"(got {window.get('start')!r} to {window.get('end')!r})"
            )
        by_weekday.setdefault(weekday, []).append((start, end))
    merged: dict[int, list[tuple[int, int]]] = {}
    for weekday, windows in by_weekday.items():
        runs: list[tuple[int, int]] = []
        for start, end in sorted(windows):
            if runs and start <= runs[-1][1]:
                runs[-1] = (runs[-1][0], max(runs[-1][1], end))
            else:
                runs.append((start, end))
        merged[weekday] = runs
    return merged
