"""signalling.reporter with a spool, against a real gate over HTTP (SQLite and
PostgreSQL) that the tests stop and start: events survive the gate's absence and a
restart of the node, and are stored once."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signalling.gate import AttendanceReport
from signalling.gate_http import HttpGate
from signalling.reporter import AttendanceReporter
from signalling.spool import Spool, decode_event
from tests.conftest import API_KEY, FakeClock
from tests.gates import GateRunner, eventually, seed_rooms

AT = datetime(2026, 11, 23, 9, 0, 0, 500000, tzinfo=UTC)


def events(booking_id: str, count: int, prefix: str) -> list[AttendanceReport]:
    return [AttendanceReport(f"{prefix}-{i}", booking_id, ("client", "professional")[i % 2],
                             "joined", AT + timedelta(seconds=i)) for i in range(count)]


def spooled(path: Path) -> list[AttendanceReport]:
    return [decode_event(line) for line in path.read_bytes().splitlines()]


class CountingSpool(Spool):
    """A real spool that counts its appends (one fsync each)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.appends = 0

    def append(self, events: Sequence[AttendanceReport]) -> None:
        self.appends += 1
        super().append(events)


@pytest.fixture
async def gate(gate_config: Any, clock: FakeClock,
               aiohttp_server: Callable[..., Any]) -> GateRunner:
    runner = GateRunner(gate_config, clock, aiohttp_server)
    await runner.start()
    await seed_rooms(runner)
    return runner


@pytest.fixture
async def link(gate: GateRunner) -> AsyncIterator[HttpGate]:
    link = HttpGate(gate.url, API_KEY, timeout=2.0)
    yield link
    await link.close()


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "node" / "attendance.spool"


def reporter(link: HttpGate, path: Path | None) -> AttendanceReporter:
    return AttendanceReporter(link, spool=Spool(path) if path else None,
                              min_backoff=0.05, max_backoff=0.2)


async def stored(gate: GateRunner, booking_id: str) -> list[str]:
    found = (await gate.service.store.events_for([booking_id]))[booking_id]
    return sorted(event.event_id for event in found)


async def test_events_reach_the_gate_and_leave_the_spool(gate: GateRunner, link: HttpGate,
                                                         spool_path: Path) -> None:
    """With the gate up, drain() returns once the events are stored; the spool (0600) is
    empty again."""
    sent = events("b-plain", 30, "up")
    reporting = reporter(link, spool_path)
    reporting.start()
    try:
        for event in sent:
            reporting.add(event)
        await asyncio.wait_for(reporting.drain(), 10)
        assert await stored(gate, "b-plain") == sorted(e.event_id for e in sent)
        assert spool_path.stat().st_size == 0
        assert stat.S_IMODE(spool_path.stat().st_mode) == 0o600
    finally:
        await reporting.close(flush_seconds=1)


async def test_events_survive_the_gate_down_and_a_node_restart(
        gate: GateRunner, link: HttpGate, spool_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Events reported while the gate is down are in the spool before anything else,
    stay there across a restart of the reporter, and are stored exactly once when the
    gate is back, with events a crash left in the spool after delivering them."""
    delivered = events("b-plain", 5, "before")
    first = reporter(link, spool_path)
    first.start()
    for event in delivered:
        first.add(event)
    await asyncio.wait_for(first.drain(), 10)
    await first.close(flush_seconds=1)
    # A crash between delivery and emptying the spool leaves delivered events in it.
    crashed = Spool(spool_path)
    crashed.open()
    crashed.append(delivered)
    crashed.close()

    await gate.stop()
    while_down = events("b-plain", 40, "down") + events("b-rescheduled", 3, "down-r")
    second = reporter(link, spool_path)
    second.start()
    for event in while_down:
        second.add(event)
    await eventually(lambda: len(spooled(spool_path)) == len(delivered) + len(while_down))
    with caplog.at_level(logging.WARNING, logger="signalling.reporter"):
        started = asyncio.get_running_loop().time()
        await second.close(flush_seconds=0.3)
        assert asyncio.get_running_loop().time() - started < 5
    assert spooled(spool_path) == [*delivered, *while_down]
    assert f"{len(delivered) + len(while_down)} attendance events wait in the spool" \
        in caplog.text

    await gate.start()
    third = reporter(link, spool_path)
    third.start()
    try:
        await asyncio.wait_for(third.drain(), 10)
        assert await stored(gate, "b-plain") == sorted(
            e.event_id for e in [*delivered, *while_down] if e.booking_id == "b-plain")
        assert await stored(gate, "b-rescheduled") == ["down-r-0", "down-r-1", "down-r-2"]
        assert spool_path.stat().st_size == 0
    finally:
        await third.close(flush_seconds=1)
    at = {e.event_id: e.at for e in
          (await gate.service.store.events_for(["b-plain"]))["b-plain"]}
    assert at["down-7"] == AT + timedelta(seconds=7)


async def test_a_spool_of_unreadable_lines_is_emptied_at_start(link: HttpGate,
                                                               spool_path: Path) -> None:
    """A spool holding nothing readable (garbage, a torn line) is emptied on start."""
    spool_path.parent.mkdir(parents=True)
    spool_path.write_bytes(b"garbage\n{\"event_id\": \"e")
    reporting = reporter(link, spool_path)
    reporting.start()
    try:
        await eventually(lambda: spool_path.stat().st_size == 0)
        await asyncio.wait_for(reporting.drain(), 10)
    finally:
        await reporting.close(flush_seconds=1)


async def test_delivery_resumes_when_the_gate_returns(gate: GateRunner, link: HttpGate,
                                                      spool_path: Path) -> None:
    """A reporter that kept retrying while the gate was away delivers once it is back."""
    await gate.stop()
    reporting = reporter(link, spool_path)
    reporting.start()
    try:
        for event in events("b-plain", 10, "retry"):
            reporting.add(event)
        await eventually(lambda: len(spooled(spool_path)) == 10)
        await asyncio.sleep(0.3)  # a few failed attempts
        assert reporting.backlog == 10
        await gate.start()
        await asyncio.wait_for(reporting.drain(), 10)
        assert len(await stored(gate, "b-plain")) == 10 and reporting.backlog == 0
    finally:
        await reporting.close(flush_seconds=1)


async def test_a_refused_batch_is_dropped_with_one_log_line(
        gate: GateRunner, link: HttpGate, spool_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A batch the gate refuses (an unknown booking) is split by booking: the others'
    events are stored, the refused ones dropped with one log line, and later events
    still go through."""
    reporting = reporter(link, spool_path)
    reporting.start()
    try:
        with caplog.at_level(logging.WARNING, logger="signalling.reporter"):
            for event in [*events("b-plain", 3, "ok"), *events("b-unknown", 2, "lost")]:
                reporting.add(event)
            await asyncio.wait_for(reporting.drain(), 10)
            reporting.add(events("b-plain", 1, "later")[0])
            await asyncio.wait_for(reporting.drain(), 10)
        assert await stored(gate, "b-plain") == ["later-0", "ok-0", "ok-1", "ok-2"]
        assert await stored(gate, "b-unknown") == []
        assert [r.getMessage() for r in caplog.records] == [
            "the gate refused 2 attendance events (404 not_found); dropped them"]
        assert spool_path.stat().st_size == 0
    finally:
        await reporting.close(flush_seconds=1)


async def test_events_added_together_share_one_fsync(gate: GateRunner, link: HttpGate,
                                                     spool_path: Path) -> None:
    """Events added within the commit window are appended (and fsynced) as one group."""
    spool = CountingSpool(spool_path)
    reporting = AttendanceReporter(link, spool=spool, commit_window=0.05)
    reporting.start()
    try:
        for event in events("b-plain", 50, "group"):
            reporting.add(event)
            await asyncio.sleep(0)
        await asyncio.wait_for(reporting.drain(), 10)
        assert spool.appends == 1
        assert len(await stored(gate, "b-plain")) == 50
    finally:
        await reporting.close(flush_seconds=1)


async def test_without_a_spool_events_wait_in_memory(gate: GateRunner, link: HttpGate,
                                                     tmp_path: Path) -> None:
    """No spool (carecall serve): events are retried in memory and nothing is written."""
    await gate.stop()
    reporting = reporter(link, None)
    reporting.start()
    try:
        for event in events("b-plain", 4, "mem"):
            reporting.add(event)
        await asyncio.sleep(0.2)
        await gate.start()
        await asyncio.wait_for(reporting.drain(), 10)
        assert len(await stored(gate, "b-plain")) == 4
        assert not (tmp_path / "node").exists()
    finally:
        await reporting.close(flush_seconds=1)


@pytest.mark.parametrize(("jitter", "expected"), [
    (0.0, [0.1, 0.2, 0.4, 0.8, 5.0, 5.0]),
    (1.0, [0.2, 0.4, 0.8, 1.6, 10.0, 10.0]),
])
def test_backoff_doubles_with_jitter_up_to_10_s(jitter: float,
                                                expected: list[float]) -> None:
    """Attempts 0-3 and later ones: doubling from 0.2 s, capped at 10 s (less than the
    30 s a just-started gate waits before finalising), the upper half of each step at
    random."""
    reporting = AttendanceReporter(None, jitter=lambda: jitter)  # type: ignore[arg-type]
    assert [round(reporting.backoff(a), 6) for a in (0, 1, 2, 3, 12, 1000)] == expected
