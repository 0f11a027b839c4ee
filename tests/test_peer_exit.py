"""`carecall peer` processes always end: many short calls, scheduled ends, cancellations."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.processes import CARECALL, Served, clean_env, serve
from tests.test_peer_e2e import KEY, api, book, now

pytestmark = [pytest.mark.slow]

# Rooms close this long after a booking's end: small, so a session can end on schedule
# within a test (bookings that must not end finish minutes from now).
OVERRUN = 3
# The contract: the process always exits within 10 s of leaving.
EXIT_WITHIN = 10.0
PAIRS, PAIRS_AT_ONCE, DURATION = 30, 3, 1.0
# The scheduled-end booking ends this long after the peers start: time enough to connect
# on a loaded machine.
ENDS_IN = 20
# The second peer of a pair joins this many seconds after the first, spread evenly.
LATEST_JOIN = 2.5
CONTRACT_FIELDS = ("admitted_at", "connected_at", "first_frame_at", "frames_received",
                   "frames_sent", "audio_frames_received", "verification_code")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = clean_env(CARECALL_OVERRUN_SECONDS=str(OVERRUN), CARECALL_JOIN_EARLY_SECONDS="900")
    with serve(["--port", "0", "--api-key", KEY], tmp_path_factory.mktemp("serve"),
               env) as served:
        served.ready()
        yield served


@dataclass
class Ended:
    """How one `carecall peer` process ended."""

    name: str
    status: int | None  # None: still running at the hard limit, then killed
    exited_at: datetime
    stats: dict[str, object] | None
    stderr: list[str]

    def describe(self) -> str:
        return f"{self.name}: exit {self.status}; stderr: {self.stderr[-3:]}"


async def start_peer(link: str, stats: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CARECALL, "peer", link, "--stats-json", str(stats), *args, env=clean_env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def ended(proc: asyncio.subprocess.Process, name: str, stats: Path,
                limit: float) -> Ended:
    """Wait at most ``limit`` seconds for the process, killing it after that."""
    assert proc.stderr is not None
    try:
        err = await asyncio.wait_for(proc.stderr.read(), limit)
        status: int | None = await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        err, status = b"", None
    exited_at = now()
    data = json.loads(stats.read_text()) if stats.exists() else None
    return Ended(name, status, exited_at, data, err.decode().splitlines())


async def run_pair(server: Served, tmp_path: Path, index: int, delay: float) -> list[Ended]:
    name = f"pair{index}"
    links = await asyncio.to_thread(book, server, name, now() - timedelta(seconds=30),
                                    now() + timedelta(minutes=10))
    roles = ["professional", "client"] if index % 2 else ["client", "professional"]
    procs = {}
    for role in roles:
        procs[role] = await start_peer(links[role], tmp_path / f"{name}-{role}.json",
                                       "--duration", str(DURATION), "--connect-timeout", "40")
        await asyncio.sleep(delay)
    # Start-up, admission and ICE on a loaded machine take seconds; a hang takes forever.
    limit = 40 + DURATION + EXIT_WITHIN + 10
    return list(await asyncio.gather(*(
        ended(proc, f"{name} {role} (join delay {delay:.2f} s)",
              tmp_path / f"{name}-{role}.json", limit) for role, proc in procs.items())))


@pytest.mark.timeout(420)
async def test_many_short_calls_every_process_exits_soon_after_leaving(
        server: Served, tmp_path: Path) -> None:
    """30 pairs of `--duration 1` peers, the second joining 0-2.5 s after the first: every
    process exits 0, with its stats, within 10 s of leaving."""
    gate = asyncio.Semaphore(PAIRS_AT_ONCE)

    async def one(index: int) -> list[Ended]:
        async with gate:
            return await run_pair(server, tmp_path, index, LATEST_JOIN * index / (PAIRS - 1))

    started = time.monotonic()
    results = [end for pair in await asyncio.gather(*(one(i) for i in range(PAIRS)))
               for end in pair]
    elapsed = time.monotonic() - started
    hung = [end.describe() for end in results if end.status is None]
    failed = [end.describe() for end in results if end.status not in (0, None)]
    assert not hung and not failed, (hung, failed)
    exits = {}
    for end in results:
        assert end.stats is not None, end.describe()
        assert all(key in end.stats for key in CONTRACT_FIELDS), end.stats
        assert end.stats["connected_at"] is not None, end.stats
        left = datetime.fromisoformat(str(end.stats["left_at"]))
        exits[end.name] = (end.exited_at - left).total_seconds()
    assert len(exits) == 2 * PAIRS
    figures = sorted(exits.values())
    print(f"{PAIRS} pairs in {elapsed:.0f} s; from leaving to exit: median "
          f"{figures[len(figures) // 2]:.1f} s, max {figures[-1]:.1f} s")
    late = {name: round(after, 1) for name, after in exits.items() if after > EXIT_WITHIN}
    assert not late, late


async def test_a_session_that_ends_on_schedule_exits_0_with_its_stats(
        server: Served, tmp_path: Path) -> None:
    """`--duration 3600` on a booking that ends within seconds: the server closes the room
    with 4410 session_over and both peers exit 0, with their stats written."""
    links = await asyncio.to_thread(book, server, "on-schedule", now() - timedelta(minutes=1),
                                    now() + timedelta(seconds=ENDS_IN))
    procs = {role: await start_peer(links[role], tmp_path / f"{role}.json",
                                    "--duration", "3600", "--connect-timeout", str(ENDS_IN))
             for role in links}
    results = await asyncio.gather(*(
        ended(proc, role, tmp_path / f"{role}.json", ENDS_IN + OVERRUN + 30)
        for role, proc in procs.items()))
    for end in results:
        assert end.status == 0, end.describe()
        assert any("closed: 4410 session_over" in line for line in end.stderr), end.stderr
        assert end.stats is not None and end.stats["connected_at"] is not None
        assert isinstance(end.stats["frames_received"], int)
        assert end.stats["frames_received"] >= 1


async def test_a_session_cancelled_mid_call_exits_1_closed_4403(
        server: Served, tmp_path: Path) -> None:
    """A booking cancelled while both peers are in the call: both exit 1 and the last line
    on stderr is `closed: 4403 booking_cancelled`."""
    links = await asyncio.to_thread(book, server, "cancel-mid-call",
                                    now() - timedelta(minutes=1), now() + timedelta(minutes=30))
    procs = {role: await start_peer(links[role], tmp_path / f"{role}.json",
                                    "--duration", "3600", "--connect-timeout", "40")
             for role in links}
    for proc in procs.values():
        assert proc.stderr is not None
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 45)).decode()
            assert line, "stderr closed before media connected"
            if "media connected" in line:
                break
    await asyncio.to_thread(api, server, "POST", "/api/v1/bookings/cancel-mid-call/cancel",
                            {"by": "professional"})
    results = await asyncio.gather(*(
        ended(proc, role, tmp_path / f"{role}.json", 30) for role, proc in procs.items()))
    for end in results:
        assert end.status == 1, end.describe()
        assert end.stderr[-1] == "closed: 4403 booking_cancelled", end.stderr
        assert end.stats is not None and end.stats["admitted_at"] is not None


# `carecall peer` run in-process after starting a non-daemon thread that never ends, as a
# library might: without the exit deadline the interpreter would wait for it forever.
STUCK_THREAD_PEER = """
import sys, threading
threading.Thread(target=threading.Event().wait, name="stuck-library-thread").start()
from carecall.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def test_the_exit_deadline_ends_the_process_whatever_thread_is_left(
        tmp_path: Path) -> None:
    """A never-ending non-daemon thread cannot keep the peer alive: it exits with its
    decided status and reason, within 10 s of leaving, after writing its stats."""
    from aiohttp.test_utils import unused_port

    link = f"http://127.0.0.1:{unused_port()}/s/room1#t=a.b.c"
    stats = tmp_path / "stats.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUCK_THREAD_PEER, "peer", link, "--connect-timeout", "1",
        "--stats-json", str(stats), env=clean_env(), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    end = await ended(proc, "stuck", stats, 60)
    assert end.status == 1, end.describe()
    assert end.stderr[-1].startswith("cannot reach http://127.0.0.1:"), end.stderr
    assert end.stats is not None and end.stats["left_at"] is not None
    after_leaving = (end.exited_at - datetime.fromisoformat(str(end.stats["left_at"]))
                     ).total_seconds()
    # It did wait for the thread (the deadline), and no longer than the contract allows.
    assert 4.0 < after_leaving <= EXIT_WITHIN, after_leaving
