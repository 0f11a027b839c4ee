"""signalling.spool: the codec of spool lines and the spool file itself."""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from signalling.gate import AttendanceReport
from signalling.spool import Spool, SpoolInUse, decode_event, encode_event

AT = datetime(2026, 11, 23, 9, 0, 0, 250001, tzinfo=UTC)


def event(i: int, reason: str | None = None) -> AttendanceReport:
    return AttendanceReport(f"ev-{i}", "b-1", "client", "joined", AT + timedelta(seconds=i),
                            reason)


def test_a_line_round_trips_to_the_microsecond() -> None:
    """decode_event(encode_event(e)) == e, in UTC, for times given in any offset."""
    oslo = timezone(timedelta(hours=1))
    for original in (event(1), event(2, "replaced"),
                     AttendanceReport("e", "b", "professional", "left", AT.astimezone(oslo)),
                     AttendanceReport("f", "b", "client", "media_failed", AT,
                                      "no_relay_candidate"),
                     AttendanceReport("g", "b", "client", "media_connected", AT,
                                      "audio_only")):
        line = encode_event(original)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        decoded = decode_event(line)
        assert decoded == original and decoded.at.tzinfo is UTC


@pytest.mark.parametrize("line", [
    b'{"event_id": "e", "booking_id": "b", "role": "client", "kind": "jo',
    b"not json",
    b'["a list"]',
    b'{"event_id": "e", "booking_id": "b", "role": "client", "kind": "joined",'
    b' "at": "2026-11-23T09:00:00Z"}',
    b'{"event_id": "e", "booking_id": "b", "role": "client", "kind": "joined",'
    b' "at": "2026-11-23T09:00:00Z", "reason": null, "extra": 1}',
    b'{"event_id": 7, "booking_id": "b", "role": "client", "kind": "joined",'
    b' "at": "2026-11-23T09:00:00Z", "reason": null}',
    b'{"event_id": "e", "booking_id": "b", "role": "client", "kind": "joined",'
    b' "at": "2026-11-23T09:00:00", "reason": null}',
    b'{"event_id": "e", "booking_id": "b", "role": "client", "kind": "joined",'
    b' "at": "yesterday", "reason": null}',
    b'{"event_id": "e", "booking_id": "b", "role": "client", "kind": "joined",'
    b' "at": "2026-11-23T09:00:00Z", "reason": 5}',
])
def test_a_line_that_is_not_an_event_is_refused(line: bytes) -> None:
    """Torn, foreign or mistyped lines raise ValueError."""
    with pytest.raises(ValueError):
        decode_event(line)


def test_a_new_spool_is_private(tmp_path: Path) -> None:
    """The file is created with mode 0600 (whatever the umask), its folder with 0700."""
    old = os.umask(0)
    try:
        spool = Spool.in_var_dir(tmp_path / "node")
        assert spool.open() == []
    finally:
        os.umask(old)
    spool.close()
    assert spool.path == tmp_path / "node" / "attendance.spool"
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.path.parent.stat().st_mode) == 0o700


def test_an_older_spool_is_made_private(tmp_path: Path) -> None:
    """A spool file found with looser permissions is set to 0600 when opened."""
    path = tmp_path / "attendance.spool"
    path.write_bytes(encode_event(event(1)))
    path.chmod(0o644)
    spool = Spool(path)
    assert spool.open() == [event(1)]
    spool.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_appended_events_are_found_by_the_next_open(tmp_path: Path) -> None:
    """What append wrote comes back, in order, from a later open; clear empties it."""
    spool = Spool(tmp_path / "attendance.spool")
    spool.open()
    spool.append([event(1), event(2, "replaced")])
    spool.append([event(3)])
    spool.close()
    again = Spool(spool.path)
    assert again.open() == [event(1), event(2, "replaced"), event(3)]
    again.clear()
    assert again.size() == 0
    again.close()
    third = Spool(spool.path)
    assert third.open() == []
    third.close()


def test_a_torn_last_line_is_dropped_and_the_next_append_is_clean(tmp_path: Path) -> None:
    """A crash mid-write leaves half a line: open drops it, and later lines read back."""
    path = tmp_path / "attendance.spool"
    path.write_bytes(encode_event(event(1)) + encode_event(event(2))[:30])
    spool = Spool(path)
    assert spool.open() == [event(1)]
    spool.append([event(3)])
    spool.close()
    again = Spool(path)
    assert again.open() == [event(1), event(3)]
    again.close()


def test_a_whole_last_event_without_its_newline_is_kept(tmp_path: Path) -> None:
    """A write cut just before its newline still holds the event: it is kept and ended."""
    path = tmp_path / "attendance.spool"
    path.write_bytes(encode_event(event(1)) + encode_event(event(2)).rstrip(b"\n"))
    spool = Spool(path)
    assert spool.open() == [event(1), event(2)]
    spool.append([event(3)])
    spool.close()
    again = Spool(path)
    assert again.open() == [event(1), event(2), event(3)]
    again.close()


def test_unreadable_lines_are_skipped_with_a_warning(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A garbled line in the middle costs that line only, and is counted in one warning."""
    path = tmp_path / "attendance.spool"
    path.write_bytes(encode_event(event(1)) + b"garbage\n\n" + encode_event(event(2)))
    spool = Spool(path)
    with caplog.at_level(logging.WARNING, logger="signalling.spool"):
        assert spool.open() == [event(1), event(2)]
    spool.close()
    assert [r.getMessage() for r in caplog.records] == [
        "skipped 1 unreadable lines of the attendance spool"]


def test_one_process_at_a_time(tmp_path: Path) -> None:
    """A second open of a spool in use raises SpoolInUse; after close it opens."""
    first = Spool(tmp_path / "attendance.spool")
    first.open()
    second = Spool(first.path)
    with pytest.raises(SpoolInUse, match="in use by another process"):
        second.open()
    first.close()
    assert second.open() == []
    second.close()


def test_a_closed_spool_refuses_writes(tmp_path: Path) -> None:
    """append and clear on a spool that is not open raise instead of writing elsewhere."""
    spool = Spool(tmp_path / "attendance.spool")
    with pytest.raises(RuntimeError, match="not open"):
        spool.append([event(1)])
    spool.open()
    spool.close()
    with pytest.raises(RuntimeError, match="not open"):
        spool.clear()
