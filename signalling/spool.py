"""A node's write-ahead file of attendance events not yet stored by the gate.

Invariants:
- an event is in the file (written and fsynced) before the node first sends it to the
  gate, so a crash or a restart while the gate is down loses none;
- the file holds one JSON object per line, in the order the events were added; a line
  cut short by a crash mid-write can only be the last one: ``open`` drops it (or ends
  it with its newline when it is a whole event), so the next append starts clean;
- the file is emptied only once every event in it has been stored (or refused) by the
  gate; a crash before that only means some events are sent again, and the gate stores
  an event id once;
- one process at a time uses a spool: ``open`` takes an exclusive lock on the file.

``encode_event`` and ``decode_event`` are the pure codec; ``Spool`` is the blocking file
adapter (the reporter calls ``append`` from a worker thread).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from signalling.gate import AttendanceReport

logger = logging.getLogger(__name__)

FILE_MODE = 0o600
FILE_NAME = "attendance.spool"  # in the node's var dir
_FIELDS = ("event_id", "booking_id", "role", "kind", "at", "reason")


class SpoolInUse(RuntimeError):
    """Another process holds this spool file (two nodes configured with one var dir)."""


def encode_event(event: AttendanceReport) -> bytes:
    """One line of the spool: the event as JSON, its time to the microsecond, in UTC."""
    at = event.at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json.dumps({"event_id": event.event_id, "booking_id": event.booking_id,
                       "role": event.role, "kind": event.kind, "at": at,
                       "reason": event.reason}, separators=(",", ":")).encode() + b"\n"


def decode_event(line: bytes) -> AttendanceReport:
    """The event on one spool line; ValueError when the line is not one ``encode_event``
    wrote (torn by a crash, or not a spool file)."""
    try:
        data: Any = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a JSON line") from None
    if not isinstance(data, dict) or set(data) != set(_FIELDS):
        raise ValueError("not an attendance event")
    texts = [data[name] for name in _FIELDS[:5]]
    reason = data["reason"]
    if not all(isinstance(value, str) for value in texts) or not (
            reason is None or isinstance(reason, str)):
        raise ValueError("an attendance event with a field of the wrong type")
    at = datetime.fromisoformat(data["at"])
    if at.utcoffset() is None:
        raise ValueError("an attendance event with a time without offset")
    return AttendanceReport(event_id=data["event_id"], booking_id=data["booking_id"],
                            role=data["role"], kind=data["kind"], at=at.astimezone(UTC),
                            reason=reason)


class Spool:
    """The spool file at ``path`` (created with mode 0600, its folder with 0700)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def in_var_dir(cls, var_dir: Path) -> Spool:
        """The node's spool: ``FILE_NAME`` in its var dir (one node per var dir)."""
        return cls(var_dir / FILE_NAME)

    def open(self) -> list[AttendanceReport]:
        """Open and lock the file; return the events a previous run left in it."""
        if self._fd is not None:
            raise RuntimeError("the spool is already open")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SpoolInUse(f"the attendance spool {self.path} is in use by another "
                                 "process") from None
            os.fchmod(fd, FILE_MODE)  # also when an older file had looser permissions
            events = self._read(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return events

    def _read(self, fd: int) -> list[AttendanceReport]:
        chunks, offset = [], 0
        while chunk := os.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        data = b"".join(chunks)
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            # A crash cut the last write short. Its tail must not stay unterminated (the
            # next line would join it): ended when it is a whole event, else dropped.
            try:
                decode_event(data[complete:])
            except ValueError:
                os.ftruncate(fd, complete)
                data = data[:complete]
            else:
                os.write(fd, b"\n")
        events, skipped = [], 0
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                events.append(decode_event(line))
            except ValueError:
                skipped += 1
        if skipped:
            logger.warning("skipped %d unreadable lines of the attendance spool", skipped)
        return events

    def append(self, events: Sequence[AttendanceReport]) -> None:
        """Write ``events`` at the end of the file and fsync it (blocking)."""
        data = b"".join(encode_event(event) for event in events)
        fd = self._opened()
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            # No half line may stay behind (a full disk): the next append must start clean.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise

    def clear(self) -> None:
        """Empty the file: everything in it was stored by the gate."""
        os.ftruncate(self._opened(), 0)

    def size(self) -> int:
        return os.fstat(self._opened()).st_size

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _opened(self) -> int:
        if self._fd is None:
            raise RuntimeError("the spool is not open")
        return self._fd
