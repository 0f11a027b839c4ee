"""Delivers attendance events to the gate: batched, retried with backoff, optionally
through a write-ahead spool on disk (``signalling.spool``).

Events get their id when created, so a retry after a lost answer, or a replay of the
spool after a restart, stores nothing twice (the gate's log is idempotent by id).

Two tasks share the work. With a spool, the *writer* appends each group of new events
(those added within ``commit_window`` of each other, and any added during the previous
fsync) to the spool and fsyncs once for the group; only then are they *pending*. The
*sender* delivers pending events in batches, in order; once nothing is pending it
empties the spool. Without a spool (``carecall serve``: gate and signalling share one
process) events are pending as soon as they are added.

On ``GateUnavailable`` (or any other failure) the sender waits, exponentially longer
with jitter up to ``max_backoff``, and tries the same batch again. On ``GateRefused``
the events will never be stored: a batch of several bookings is split by booking and
each part tried once more, and what is still refused is logged in one line and dropped.
``close()`` flushes for a bounded time; what is left stays in the spool for the next
start, whose first work is to replay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import deque
from collections.abc import Callable

from signalling.errors import GateRefused
from signalling.gate import AttendanceReport, GateLink
from signalling.spool import Spool

logger = logging.getLogger(__name__)

MAX_SPOOL_GROUP = 1000  # events per fsync, at most


class AttendanceReporter:
    def __init__(self, gate: GateLink, *, spool: Spool | None = None, batch: int = 100,
                 min_backoff: float = 0.2, max_backoff: float = 10.0,
                 commit_window: float = 0.005,
                 jitter: Callable[[], float] = random.random) -> None:
        self._gate = gate
        self._spool = spool
        self._batch = batch
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._commit_window = commit_window
        self._jitter = jitter
        self._unsaved: list[AttendanceReport] = []  # added, not yet in the spool
        self._pending: deque[AttendanceReport] = deque()  # durable, not yet delivered
        self._saving = False  # the writer holds events that are in neither list
        self._spooled = False  # the spool file may hold events
        self._wake_writer = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start delivering; with a spool, first what an earlier run left in it."""
        if self._spool is not None:
            left = self._spool.open()
            if left:
                logger.info("replaying %d attendance events from the spool", len(left))
                self._pending.extend(left)
                self._idle.clear()
            # Replayed events go first; a file of only unreadable lines is emptied too.
            self._spooled = self._spool.size() > 0
            if self._spooled:
                self._wake_sender.set()
            self._writer = asyncio.create_task(self._write())
        self._sender = asyncio.create_task(self._send())

    def add(self, report: AttendanceReport) -> None:
        self._idle.clear()
        if self._spool is None:
            self._pending.append(report)
            self._wake_sender.set()
        else:
            self._unsaved.append(report)
            self._wake_writer.set()

    async def drain(self) -> None:
        """Wait until everything added so far has been stored (or refused) by the gate."""
        await self._idle.wait()

    @property
    def backlog(self) -> int:
        """Events added and not yet stored or refused by the gate."""
        return len(self._unsaved) + len(self._pending)

    # -- the writer: unsaved -> spool -> pending ------------------------------------

    async def _write(self) -> None:
        assert self._spool is not None
        spool = self._spool
        while not (self._closing and not self._unsaved):
            await self._wake_writer.wait()
            if self._commit_window and not self._closing:
                await asyncio.sleep(self._commit_window)  # let the group gather
            self._wake_writer.clear()
            group = self._unsaved[:MAX_SPOOL_GROUP]
            del self._unsaved[:MAX_SPOOL_GROUP]
            if self._unsaved:
                self._wake_writer.set()
            if not group:
                continue
            self._saving = True
            try:
                await asyncio.to_thread(spool.append, group)
                self._spooled = True
            except Exception as error:  # a full disk, most likely (OSError)
                # Not durable, but the gate may still take them: deliver them anyway.
                logger.error("could not write %d attendance events to the spool (%s)",
                             len(group), type(error).__name__)
            finally:
                self._saving = False
            self._pending.extend(group)
            self._wake_sender.set()

    # -- the sender: pending -> gate -------------------------------------------------

    async def _send(self) -> None:
        while True:
            await self._wake_sender.wait()
            self._wake_sender.clear()
            while self._pending:
                batch = list(itertools.islice(self._pending, self._batch))
                await self._deliver(batch)
                for _ in batch:
                    self._pending.popleft()
            if self._saving or self._unsaved:
                continue  # the writer is busy: it wakes us when its group is pending
            self._empty_spool()
            self._idle.set()

    def _empty_spool(self) -> None:
        # Nothing added is unsaved, being saved or pending: all in the file was delivered.
        if self._spool is not None and self._spooled:
            try:
                self._spool.clear()
                self._spooled = False
            except OSError as error:
                logger.error("could not empty the attendance spool (%s); its events will "
                             "be sent again on the next start", type(error).__name__)

    async def _deliver(self, batch: list[AttendanceReport]) -> None:
        """Return once the gate stored ``batch`` or refused it for good."""
        try:
            await self._retrying(batch)
        except GateRefused as refused:
            bookings = list(dict.fromkeys(event.booking_id for event in batch))
            if len(bookings) == 1:
                self._dropped(batch, refused)
                return
            # One bad booking must not take the others' events with it.
            for booking_id in bookings:
                part = [event for event in batch if event.booking_id == booking_id]
                try:
                    await self._retrying(part)
                except GateRefused as again:
                    self._dropped(part, again)

    async def _retrying(self, batch: list[AttendanceReport]) -> None:
        """Report ``batch`` until the gate answers; GateRefused passes through."""
        attempt = 0
        while True:
            try:
                await self._gate.report(batch)
                return
            except (asyncio.CancelledError, GateRefused):
                raise
            except Exception as error:
                delay = self.backoff(attempt)
                attempt += 1
                logger.warning("attendance report of %d events failed (%s); retrying in "
                               "%.1f s", len(batch), type(error).__name__, delay)
                await asyncio.sleep(delay)

    def backoff(self, attempt: int) -> float:
        """The wait before retry ``attempt + 1``: doubling from ``min_backoff`` up to
        ``max_backoff``, the upper half of it at random (nodes that lost the gate
        together do not come back in step)."""
        ceiling = min(self._max_backoff, self._min_backoff * 2.0 ** min(attempt, 32))
        return ceiling / 2 + ceiling / 2 * self._jitter()

    @staticmethod
    def _dropped(batch: list[AttendanceReport], refused: GateRefused) -> None:
        logger.error("the gate refused %d attendance events (%d %s); dropped them",
                     len(batch), refused.status, refused.code)

    # -- closing -----------------------------------------------------------------------

    async def close(self, flush_seconds: float = 10.0) -> None:
        """Deliver for at most ``flush_seconds``; with a spool, what is left stays in it."""
        self._closing = True
        self._wake_writer.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_seconds
        if self._writer is not None:
            # Unbounded only by the disk: what was added must reach the spool.
            await self._writer
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), max(0.0, deadline - loop.time()))
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        left = self.backlog
        if self._spool is not None:
            self._spool.close()
            if left:
                logger.warning("%d attendance events wait in the spool for the next start",
                               left)
        elif left:
            logger.error("%d attendance events could not be delivered", left)
