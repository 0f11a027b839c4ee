"""The retention purge: delivered messages older than ``CARECALL_RETENTION_DAYS`` go.

What the gate keeps of a session beyond billing is its notifications: the outbox holds
every email (body, addresses) and webhook event until it is delivered, and the row
afterwards for diagnosis. Once delivered and older than the retention period (by the
server's clock, ``sent_at``), this task deletes it, and on SQLite the freed space is zeroed
(``secure_delete``) and the WAL truncated (``ErasureStore.purge_delivered``).

Not purged: undelivered messages (they still have to go out), and the billing records
(bookings, attendance events and records, overrides, credits), which the law requires
to be kept. Signalling keeps no per-party state on disk: rooms live in memory (or Redis,
expiring an hour after they close), rate-limit counters in memory, resume tokens are
self-contained HMACs; see docs/security.md.

Invariants: one pass at a time per process; shutdown asks the loop to stop between
passes instead of cancelling a database call half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from booking_gate.erasure_store import ErasureStore

logger = logging.getLogger(__name__)

# How long ``close`` waits for a pass in progress.
STOP_SECONDS = 10.0


class RetentionPurge:
    """The background purge of delivered outbox messages."""

    def __init__(self, erasures: ErasureStore, retention: timedelta,
                 clock: Callable[[], datetime], *, interval: float = 3600.0) -> None:
        if retention <= timedelta():
            raise ValueError("the retention period must be positive")
        self.erasures = erasures
        self.retention = retention
        self.clock = clock
        self.interval = interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def purge_due(self) -> int:
        """Delete what was delivered before now minus the retention; how many."""
        purged = await self.erasures.purge_delivered(self.clock() - self.retention)
        if purged:
            logger.info("retention: purged %d delivered outbox messages", purged)
        return purged

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def run(self) -> None:
        """A pass at once, then one every ``interval`` seconds until ``close``."""
        while not self._stop.is_set():
            try:
                await self.purge_due()
            except Exception as error:
                # The class only: a database error's text may quote a payload.
                logger.error("the retention purge failed (%s); retrying",
                             type(error).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._stop.wait()

    async def close(self) -> None:
        self._stop.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await self._task
        except TimeoutError:
            logger.warning("the retention purge did not stop in time; cancelled")
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
