"""Delivers attendance events to the gate: queued, batched, retried with backoff.

Events get their id when created, so a retry after a lost answer stores nothing twice
(the gate's log is idempotent by id). ``close()`` flushes what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from signalling.gate import AttendanceReport, GateLink

logger = logging.getLogger(__name__)


class AttendanceReporter:
    def __init__(self, gate: GateLink, *, batch: int = 100, max_backoff: float = 30.0) -> None:
        self._gate = gate
        self._queue: asyncio.Queue[AttendanceReport] = asyncio.Queue()
        self._batch = batch
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def add(self, report: AttendanceReport) -> None:
        self._idle.clear()
        self._queue.put_nowait(report)

    async def drain(self) -> None:
        """Wait until everything queued so far has been stored by the gate."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._deliver(batch)
            if self._queue.empty():
                self._idle.set()

    async def _deliver(self, batch: list[AttendanceReport]) -> None:
        delay = 0.2
        while True:
            try:
                await self._gate.report(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("attendance report failed (%s); retrying in %.1f s",
                               type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)

    async def close(self, flush_seconds: float = 10.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), flush_seconds)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self._queue.empty():
            logger.error("%d attendance events could not be delivered", self._queue.qsize())
