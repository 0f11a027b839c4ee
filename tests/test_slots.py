"""Free session slots (booking_gate.slots): grid, buffers, blocks, DST, validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booking_gate.slots import Slot, free_slots, search_range

MONDAY = date(2026, 11, 23)
EVERY_DAY_9_TO_5 = [{"weekday": day, "start": "09:00", "end": "17:00"} for day in range(7)]


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def mon(hhmm: str) -> datetime:
    """A UTC instant on MONDAY from "HH:MM"."""
    hours, minutes = hhmm.split(":")
    return utc(MONDAY.year, MONDAY.month, MONDAY.day, int(hours), int(minutes))


def slots(
    availability: Sequence[Mapping[str, object]],
    *,
    now: datetime,
    zone: str = "UTC",
    session: int = 50,
    buffer: int = 0,
    slot: int | None = None,
    bookings: Sequence[tuple[datetime, datetime]] = (),
    blocks: Sequence[tuple[datetime, datetime]] = (),
    days: int = 1,
) -> list[Slot]:
    """Free slots on a grid of ``slot`` minutes (the session's length unless given)."""
    return free_slots(
        timezone=zone,
        availability=availability,
        session_minutes=session,
        buffer_minutes=buffer,
        slot_minutes=session if slot is None else slot,
        bookings=bookings,
        blocks=blocks,
        now=now,
        days=days,
    )


def starts(result: list[Slot]) -> list[str]:
    return [slot.starts_at.strftime("%H:%M") for slot in result]


def window(start: str, end: str, weekday: int = 0) -> dict[str, object]:
    return {"weekday": weekday, "start": start, "end": end}


def assert_well_formed(result: list[Slot], session: int) -> None:
    for slot in result:
        assert slot.starts_at.tzinfo is UTC and slot.ends_at.tzinfo is UTC
        assert slot.ends_at - slot.starts_at == timedelta(minutes=session)
    for earlier, later in pairwise(result):
        assert earlier.ends_at <= later.starts_at


# -- the grid -------------------------------------------------------------------------

GRID_CASES = [
    # (availability, session, expected starts)
    ([window("09:00", "12:00")], 50, ["09:00", "09:50", "10:40"]),  # 11:30 would end 12:20
    ([window("09:00", "12:00")], 60, ["09:00", "10:00", "11:00"]),
    ([window("22:00", "24:00")], 60, ["22:00", "23:00"]),
    ([window("00:00", "24:00")], 24 * 60, ["00:00"]),
    ([window("09:00", "09:45")], 50, []),
    ([window("09:00", "10:00"), window("09:30", "11:00")], 50, ["09:00", "09:50"]),
    ([window("09:00", "10:00"), window("10:00", "11:00")], 40, ["09:00", "09:40", "10:20"]),
    ([window("13:00", "14:00"), window("09:00", "10:00")], 30,
     ["09:00", "09:30", "13:00", "13:30"]),
    ([window("09:00", "12:00", weekday=1)], 50, []),
]


@pytest.mark.parametrize(("availability", "session", "expected"), GRID_CASES)
def test_grid_steps_from_each_merged_window_start(
    availability: list[dict[str, object]], session: int, expected: list[str]
) -> None:
    """Slots start at the merged window start, step by the session and end inside it."""
    result = slots(availability, now=mon("00:00"), session=session)
    assert starts(result) == expected
    assert_well_formed(result, session)


BUSY_CASES = [
    # (bookings, blocks, buffer, expected starts in 09:00-17:00 with 50-minute sessions)
    ([], [], 10, "09:00 09:50 10:40 11:30 12:20 13:10 14:00 14:50 15:40"),
    ([("09:50", "10:40")], [], 0, "09:00 10:40 11:30 12:20 13:10 14:00 14:50 15:40"),
    ([("09:50", "10:40")], [], 10, "11:30 12:20 13:10 14:00 14:50 15:40"),
    ([("10:00", "10:30")], [], 0, "09:00 10:40 11:30 12:20 13:10 14:00 14:50 15:40"),
    ([("12:00", "12:10")], [], 10, "09:00 09:50 10:40 12:20 13:10 14:00 14:50 15:40"),
    ([("12:00", "12:10")], [], 11, "09:00 09:50 10:40 13:10 14:00 14:50 15:40"),
    ([], [("09:50", "10:40")], 10, "09:00 10:40 11:30 12:20 13:10 14:00 14:50 15:40"),
    ([], [("10:00", "10:01")], 0, "09:00 10:40 11:30 12:20 13:10 14:00 14:50 15:40"),
    ([], [("08:00", "13:00")], 0, "13:10 14:00 14:50 15:40"),
    ([], [("00:00", "23:59")], 0, ""),
    ([("09:00", "09:50")], [("14:50", "15:40")], 0, "09:50 10:40 11:30 12:20 13:10 14:00 15:40"),
]


@pytest.mark.parametrize(("bookings", "blocks", "buffer", "expected"), BUSY_CASES)
def test_bookings_with_buffers_and_blocks_take_slots(
    bookings: list[tuple[str, str]], blocks: list[tuple[str, str]], buffer: int, expected: str
) -> None:
    """A slot is taken by a block it overlaps or a booking its buffered span overlaps."""
    result = slots(
        [window("09:00", "17:00")],
        now=mon("00:00"),
        buffer=buffer,
        bookings=[(mon(a), mon(b)) for a, b in bookings],
        blocks=[(mon(a), mon(b)) for a, b in blocks],
    )
    assert starts(result) == expected.split()


def test_the_fifty_minute_hour_keeps_three_sessions_in_a_three_hour_morning() -> None:
    """50-minute sessions with a 10-minute buffer on a 60-minute grid: 09:00, 10:00, 11:00,
    and booking 10:00 leaves 09:00 and 11:00 free (the buffer touches, never overlaps)."""
    morning = [window("09:00", "12:00")]
    assert starts(slots(morning, now=mon("00:00"), buffer=10, slot=60)) == [
        "09:00", "10:00", "11:00"]
    booked = [(mon("10:00"), mon("10:50"))]
    assert starts(slots(morning, now=mon("00:00"), buffer=10, slot=60, bookings=booked)) == [
        "09:00", "11:00"]
    # On the session-long grid the same booking's buffer takes both neighbours.
    assert starts(slots(morning, now=mon("00:00"), buffer=10, slot=50,
                        bookings=[(mon("09:50"), mon("10:40"))])) == []


@pytest.mark.parametrize(("slot", "expected"), [
    (60, ["09:00", "10:00", "11:00"]),
    (90, ["09:00", "10:30"]),
    (180, ["09:00"]),
])
def test_the_grid_steps_by_slot_minutes_from_the_window_start(
    slot: int, expected: list[str]
) -> None:
    """Candidate starts are the window start plus whole multiples of ``slot_minutes``."""
    assert starts(slots([window("09:00", "12:00")], now=mon("00:00"), slot=slot)) == expected


NOW_CASES = [
    ("08:59", ["09:00", "09:50", "10:40"]),
    ("09:50", ["09:50", "10:40"]),
    ("09:51", ["10:40"]),
    ("10:40", ["10:40"]),
    ("11:00", []),
]


@pytest.mark.parametrize(("now", "expected"), NOW_CASES)
def test_slots_before_now_are_dropped(now: str, expected: list[str]) -> None:
    """Only slots starting at or after now are offered, including one starting exactly now."""
    assert starts(slots([window("09:00", "12:00")], now=mon(now))) == expected


def test_days_count_local_dates_from_the_date_of_now() -> None:
    """days=3 covers Monday to Wednesday; 24:00 and 00:00 windows give back-to-back slots."""
    availability = [
        window("22:00", "24:00", weekday=0),
        window("00:00", "01:00", weekday=1),
        window("10:00", "11:00", weekday=2),
        window("10:00", "11:00", weekday=3),
    ]
    result = slots(availability, now=mon("12:00"), session=60, days=3)
    assert [slot.starts_at for slot in result] == [
        mon("22:00"),
        mon("23:00"),
        mon("00:00") + timedelta(days=1),
        mon("10:00") + timedelta(days=2),
    ]


def test_aware_inputs_in_other_offsets_are_compared_as_instants() -> None:
    """Bookings, blocks and now given in +01:00 mean the same instants; output is UTC."""
    plus_one = timezone(timedelta(hours=1))
    result = slots(
        [window("09:00", "12:00")],
        now=mon("08:00").astimezone(plus_one),
        bookings=[(mon("09:00").astimezone(plus_one), mon("09:50").astimezone(plus_one))],
        blocks=[(mon("10:40").astimezone(plus_one), mon("11:30").astimezone(plus_one))],
    )
    assert [slot.starts_at for slot in result] == [mon("09:50")]
    assert result[0].starts_at.tzinfo is UTC


# -- daylight saving time -------------------------------------------------------------

DST_WEEKS = [
    # (zone, now, first day, UTC hour of 09:00 local before the change, after it, change date)
    ("Europe/Oslo", utc(2026, 3, 26, 0), date(2026, 3, 26), 8, 7, date(2026, 3, 29)),
    ("Europe/Oslo", utc(2026, 10, 22, 0), date(2026, 10, 22), 7, 8, date(2026, 10, 25)),
    ("America/New_York", utc(2026, 3, 5, 6), date(2026, 3, 5), 14, 13, date(2026, 3, 8)),
    ("America/New_York", utc(2026, 10, 29, 5), date(2026, 10, 29), 13, 14, date(2026, 11, 1)),
]


@pytest.mark.parametrize(("zone", "now", "first_day", "before", "after", "change"), DST_WEEKS)
def test_local_nine_oclock_moves_in_utc_across_the_change(
    zone: str, now: datetime, first_day: date, before: int, after: int, change: date
) -> None:
    """Across a DST change slots stay at 09:00 local, so their UTC time shifts by an hour."""
    result = slots(EVERY_DAY_9_TO_5, now=now, zone=zone, days=7)
    expected = []
    for offset in range(7):
        day = first_day + timedelta(days=offset)
        hour = before if day < change else after
        first = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        expected += [first + timedelta(minutes=50 * k) for k in range(9)]
    assert [slot.starts_at for slot in result] == expected
    local_firsts = {s.starts_at.astimezone(ZoneInfo(zone)).strftime("%H:%M") for s in result[::9]}
    assert local_firsts == {"09:00"}
    assert_well_formed(result, 50)


DST_NIGHTS = [
    # (zone, now = local midnight of the night, window, session, expected UTC starts)
    # Oslo, 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z. 02:40 does not exist;
    # 03:30 CEST (01:30Z) would overlap 01:50 CET (00:50Z-01:40Z) and end 04:20 > 04:00.
    ("Europe/Oslo", utc(2026, 3, 28, 23), ("01:00", "04:00"), 50,
     [utc(2026, 3, 29, 0), utc(2026, 3, 29, 0, 50)]),
    ("Europe/Oslo", utc(2026, 3, 28, 23), ("01:00", "06:00"), 50,
     [utc(2026, 3, 29, 0), utc(2026, 3, 29, 0, 50), utc(2026, 3, 29, 2, 20),
      utc(2026, 3, 29, 3, 10)]),
    ("Europe/Oslo", utc(2026, 3, 28, 23), ("02:00", "05:00"), 60,
     [utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]),
    # A window ending inside the gap ends when the clock jumps: 01:00-02:00 CET fits.
    ("Europe/Oslo", utc(2026, 3, 28, 23), ("01:00", "02:30"), 60, [utc(2026, 3, 29, 0)]),
    ("Europe/Oslo", utc(2026, 3, 28, 23), ("01:00", "02:30"), 80, []),  # would end 03:20
    # Oslo, 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z. 02:40 is its first
    # occurrence (00:40Z) and ends 02:30 CET; 03:30 CET would end 04:20 > 04:00.
    ("Europe/Oslo", utc(2026, 10, 24, 22), ("01:00", "04:00"), 50,
     [utc(2026, 10, 24, 23), utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 0, 40)]),
    # A window ending in the repeated hour ends at its first pass.
    ("Europe/Oslo", utc(2026, 10, 24, 22), ("02:00", "02:30"), 30, [utc(2026, 10, 25, 0)]),
    ("Europe/Oslo", utc(2026, 10, 24, 22), ("02:00", "02:30"), 40, []),
    ("Europe/Oslo", utc(2026, 10, 24, 22), ("02:00", "03:00"), 30,
     [utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30)]),
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00Z.
    ("America/New_York", utc(2026, 3, 8, 5), ("01:00", "04:00"), 50,
     [utc(2026, 3, 8, 6), utc(2026, 3, 8, 6, 50)]),
    # New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST at 06:00Z.
    ("America/New_York", utc(2026, 11, 1, 4), ("00:00", "03:00"), 50,
     [utc(2026, 11, 1, 4), utc(2026, 11, 1, 4, 50), utc(2026, 11, 1, 5, 40)]),
]


@pytest.mark.parametrize(("zone", "now", "span", "session", "expected"), DST_NIGHTS)
def test_windows_across_gaps_and_folds(
    zone: str, now: datetime, span: tuple[str, str], session: int, expected: list[datetime]
) -> None:
    """No slot starts at a non-existent time; none repeats or overlaps on a fall-back night."""
    weekday = now.astimezone(ZoneInfo(zone)).weekday()
    result = slots([window(*span, weekday=weekday)], now=now, zone=zone, session=session)
    assert [slot.starts_at for slot in result] == expected
    assert_well_formed(result, session)
    for slot in result:
        local = slot.starts_at.astimezone(ZoneInfo(zone))
        # The start is a real local reading: it converts back to the same instant.
        assert local.replace(tzinfo=None, fold=0).replace(tzinfo=ZoneInfo(zone)) == local


def test_24_00_end_before_a_midnight_gap_ends_at_the_jump() -> None:
    """In Santiago 00:00 jumps to 01:00 (2026-09-06): 23:00-24:00 fits, 00:00 is skipped."""
    availability = [window("22:00", "24:00", weekday=5), window("00:00", "02:00", weekday=6)]
    result = slots(
        availability, now=utc(2026, 9, 5, 12), zone="America/Santiago", session=60, days=2
    )
    assert [slot.starts_at for slot in result] == [
        utc(2026, 9, 6, 2), utc(2026, 9, 6, 3), utc(2026, 9, 6, 4)
    ]
    assert_well_formed(result, 60)


# -- search_range ---------------------------------------------------------------------

RANGE_CASES = [
    ("UTC", mon("10:00"), 1, (mon("00:00"), mon("00:00") + timedelta(days=1))),
    ("Europe/Oslo", utc(2026, 3, 28, 12), 2, (utc(2026, 3, 27, 23), utc(2026, 3, 29, 22))),
    ("America/New_York", utc(2026, 11, 1, 3, 30), 1, (utc(2026, 10, 31, 4), utc(2026, 11, 1, 4))),
    ("America/Santiago", utc(2026, 9, 6, 12), 1, (utc(2026, 9, 6, 4), utc(2026, 9, 7, 3))),
    ("Pacific/Auckland", utc(2026, 11, 23, 20), 1, (utc(2026, 11, 23, 11), utc(2026, 11, 24, 11))),
]


@pytest.mark.parametrize(("zone", "now", "days", "expected"), RANGE_CASES)
def test_search_range_spans_the_local_dates(
    zone: str, now: datetime, days: int, expected: tuple[datetime, datetime]
) -> None:
    """search_range is local midnight of now's date to local midnight days later, in UTC."""
    assert search_range(zone, now, days) == expected


# -- bad input ------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "timezone": "UTC",
    "availability": [window("09:00", "12:00")],
    "session_minutes": 50,
    "buffer_minutes": 10,
    "slot_minutes": 60,
    "bookings": [],
    "blocks": [],
    "now": mon("00:00"),
    "days": 14,
}
NAIVE = datetime(2026, 11, 23, 9)  # noqa: DTZ001 - the bad input under test

BAD_CASES = [
    ({"timezone": "Mars/Olympus"},
     "timezone must be an IANA time zone name such as Europe/Oslo (got 'Mars/Olympus')"),
    ({"timezone": ""}, "timezone must be an IANA time zone name (got '')"),
    ({"days": 0}, "days must be a whole number from 1 to 60 (got 0)"),
    ({"days": 61}, "days must be a whole number from 1 to 60 (got 61)"),
    ({"session_minutes": 4}, "session_minutes must be a whole number of at least 5 (got 4)"),
    ({"buffer_minutes": -1}, "buffer_minutes must be a whole number of at least 0 (got -1)"),
    ({"slot_minutes": 49}, "slot_minutes must be a whole number of at least 50 (got 49)"),
    ({"now": NAIVE},
     "now must be a timezone-aware datetime (got datetime.datetime(2026, 11, 23, 9, 0))"),
    ({"availability": [{"weekday": 7, "start": "09:00", "end": "10:00"}]},
     "availability[0].weekday must be a whole number from 0 to 6 (got 7)"),
    ({"availability": [window("9:00", "10:00")]},
     "availability[0].start must be a wall-clock time HH:MM (got '9:00')"),
    ({"availability": [window("24:00", "24:00")]},
     "availability[0].start must be a wall-clock time before 24:00"),
    ({"availability": [window("09:00", "12:00"), window("10:00", "10:00")]},
     "availability[1].end must be after availability[1].start (got '10:00' to '10:00')"),
    ({"bookings": [(mon("10:00"), mon("09:00"))]},
     "bookings[0] must end after it starts "
     "(got 2026-11-23 10:00:00+00:00 to 2026-11-23 09:00:00+00:00)"),
    ({"blocks": [(NAIVE, mon("10:00"))]},
     "blocks[0] start must be a timezone-aware datetime "
     "(got datetime.datetime(2026, 11, 23, 9, 0))"),
]


@pytest.mark.parametrize(("change", "message"), BAD_CASES)
def test_bad_input_is_refused_with_a_clear_message(change: dict[str, Any], message: str) -> None:
    """Each invalid argument raises ValueError naming the argument and the value."""
    with pytest.raises(ValueError) as raised:
        free_slots(**{**GOOD, **change})
    assert str(raised.value) == message


def test_search_range_validates_zone_and_days() -> None:
    """search_range refuses an unknown zone and days outside 1..60 like free_slots."""
    with pytest.raises(ValueError, match="got 'Nowhere/Land'"):
        search_range("Nowhere/Land", mon("00:00"), 1)
    with pytest.raises(ValueError, match="days must be a whole number from 1 to 60"):
        search_range("UTC", mon("00:00"), 61)


# -- properties -----------------------------------------------------------------------

# (zone, an instant at which its offset changes, or an ordinary one for fixed zones)
CHANGES = [
    ("Europe/Oslo", utc(2026, 3, 29, 1)),
    ("Europe/Oslo", utc(2026, 10, 25, 1)),
    ("America/New_York", utc(2026, 3, 8, 7)),
    ("America/New_York", utc(2026, 11, 1, 6)),
    ("America/Santiago", utc(2026, 4, 5, 3)),  # 24:00 back to 23:00
    ("America/Santiago", utc(2026, 9, 6, 4)),  # 00:00 on to 01:00
    ("Australia/Lord_Howe", utc(2026, 4, 4, 15)),  # by 30 minutes
    ("Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),
    ("Asia/Kolkata", utc(2026, 6, 15, 12)),
    ("UTC", utc(2026, 6, 15, 12)),
]


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def windows(draw: st.DrawFn, night: int) -> dict[str, object]:
    """A window, often on the weekday of the change and over its small hours."""
    start = draw(st.one_of(st.integers(0, 5 * 60), st.integers(0, 24 * 60 - 1)))
    end = draw(st.integers(start + 1, 24 * 60))
    weekday = draw(st.one_of(st.just(night), st.integers(0, 6)))
    return {"weekday": weekday, "start": hhmm(start), "end": hhmm(end)}


@st.composite
def intervals(draw: st.DrawFn, around: datetime) -> tuple[datetime, datetime]:
    start = around + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 9 * 24 * 60)))
    return start, start + timedelta(minutes=draw(st.integers(1, 6 * 60)))


def overlaps(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def clock_minutes(value: object) -> int:
    hours, minutes = str(value).split(":")
    return int(hours) * 60 + int(minutes)


def merged_runs(
    availability: Sequence[Mapping[str, object]], weekday: int
) -> list[tuple[int, int]]:
    """The test's own merge: maximal runs of covered wall-clock minutes of a weekday."""
    covered = [False] * (24 * 60 + 1)  # the extra last minute is never covered
    for item in availability:
        if item["weekday"] == weekday:
            for minute in range(clock_minutes(item["start"]), clock_minutes(item["end"])):
                covered[minute] = True
    runs: list[tuple[int, int]] = []
    run_start: int | None = None
    for minute, is_covered in enumerate(covered):
        if is_covered and run_start is None:
            run_start = minute
        elif not is_covered and run_start is not None:
            runs.append((run_start, minute))
            run_start = None
    return runs


@settings(database=None, deadline=None, max_examples=300)
@given(data=st.data())
def test_free_slots_properties(data: st.DataObject) -> None:
    """Slots are sorted, disjoint, session-long, after now, inside availability and free."""
    zone_name, change = data.draw(st.sampled_from(CHANGES))
    zone = ZoneInfo(zone_name)
    before = data.draw(st.one_of(st.integers(0, 36 * 60), st.integers(-12 * 60, 4 * 24 * 60)))
    now = change - timedelta(minutes=before)
    days = data.draw(st.integers(1, 6))
    session = data.draw(st.integers(5, 240))
    buffer = data.draw(st.integers(0, 60))
    grid_step = session + data.draw(st.integers(0, 60))
    availability = data.draw(st.lists(windows(change.astimezone(zone).weekday()), max_size=8))
    bookings = data.draw(st.lists(intervals(now), max_size=6))
    blocks = data.draw(st.lists(intervals(now), max_size=6))
    kwargs: dict[str, Any] = {
        "timezone": zone_name, "availability": availability, "session_minutes": session,
        "slot_minutes": grid_step, "now": now, "days": days,
    }
    result = free_slots(buffer_minutes=buffer, bookings=bookings, blocks=blocks, **kwargs)
    grid = free_slots(buffer_minutes=0, bookings=[], blocks=[], **kwargs)

    assert_well_formed(result, session)
    pad = timedelta(minutes=buffer)
    range_start, range_end = search_range(zone_name, now, days)
    first_date = now.astimezone(zone).date()
    for slot in result:
        span = (slot.starts_at, slot.ends_at)
        assert slot.starts_at >= now
        assert range_start <= slot.starts_at and slot.ends_at <= range_end
        assert not any(overlaps(span, block) for block in blocks)
        assert not any(overlaps((span[0] - pad, span[1] + pad), b) for b in bookings)
        # Inside a merged window of its local date, on the grid of that window, and the
        # local clock reads before the window end at every minute of the slot.
        local = slot.starts_at.astimezone(zone).replace(tzinfo=None)
        assert first_date <= local.date() < first_date + timedelta(days=days)
        midnight = datetime.combine(local.date(), datetime.min.time())
        minute = (local - midnight) // timedelta(minutes=1)
        run = [(a, b) for a, b in merged_runs(availability, local.weekday()) if a <= minute < b]
        assert len(run) == 1
        start, end = run[0]
        assert (minute - start) % grid_step == 0
        window_end = midnight + timedelta(minutes=end)
        for step in range(session):
            instant = slot.starts_at + timedelta(minutes=step)
            assert instant.astimezone(zone).replace(tzinfo=None) < window_end
    # Nothing free is left out: the result is the unbusy grid filtered by the same rules.
    assert result == [
        slot
        for slot in grid
        if not any(overlaps((slot.starts_at, slot.ends_at), block) for block in blocks)
        and not any(overlaps((slot.starts_at - pad, slot.ends_at + pad), b) for b in bookings)
    ]
