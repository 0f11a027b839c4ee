"""Sends the outbox's emails over SMTP with aiosmtplib: the I/O side of ``notify.py``.

The emails were stored in the transaction of the change they report (``Store._notify``);
this task only moves them. It claims due emails (``Store.claim_outbox``) when a commit
wakes it (``wake()``), when the earliest retry falls due, and at least every
``interval`` seconds.

Invariants:
- nothing is ever dropped: a failed message is retried with exponential backoff
  (5 s doubling up to 15 min) for as long as it takes; delivery is at least once
  (a crash between the SMTP reply and ``mark_sent`` resends it, with the same Message-ID);
- one pass at a time per process (a lock), so the loop, a wake-up and ``flush`` never
  send the same message twice; across gate processes sharing one database, a message is
  claimed by one process at a time for a lease longer than a batch can take, and given
  back when that process stops, so several gates never send one email twice;
- shutdown (``close``) stops the loop between messages instead of cancelling it, then
  ``flush`` tries once more, for a bounded time; an SMTP exchange cut short by that
  bound leaves its message due, untouched;
- logs carry outbox message ids and exception class names only: never an address, a
  subject, a body or an SMTP reply (which may quote the address);
- without an SMTP host, email is disabled: messages stay queued until one is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib

from booking_gate.config import GateConfig
from booking_gate.notify import EMAIL
from booking_gate.store import Store

logger = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(minutes=15)
SMTP_TIMEOUT = 10.0
FLUSH_SECONDS = 5.0
BATCH = 10
# Long enough for a whole batch to time out one message after the other, and then some.
LEASE = timedelta(seconds=BATCH * SMTP_TIMEOUT + 60)

# Errors that say the server (not this one message) is unusable now: the rest of the
# batch is put off with it instead of each waiting for its own timeout.
_SERVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, timed out, disconnected (aiosmtplib's derive from it)
    aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPNotSupported,
    aiosmtplib.SMTPSenderRefused,
)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts + 1``-th failure: 5 s, 10 s, 20 s ... at most 15 min."""
    doublings = min(max(attempts, 0), 16)  # past the cap long before: no huge powers
    return min(FIRST_RETRY * (1 << doublings), MAX_RETRY)


def build_email(message_id: int, payload: Mapping[str, Any], mail_from: str,
                now: datetime) -> EmailMessage:
    """The email for one outbox message: plain text plus the .ics as an attachment."""
    method = str(payload["method"])
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError("an email's method must be REQUEST or CANCEL")
    domain = mail_from.rpartition("@")[2] or "localhost"
    email = EmailMessage()
    email["From"] = mail_from
    email["To"] = str(payload["to"])
    email["Subject"] = str(payload["subject"])
    email["Date"] = format_datetime(now)
    # Stable per outbox message: a resend after a crash is recognisably the same email.
    email["Message-ID"] = f"<carecall.{message_id}.{payload.get('sequence', 0)}@{domain}>"
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    email.set_content(str(payload["text"]))
    email.add_attachment(
        str(payload["ics"]).encode("utf-8"), maintype="text", subtype="calendar",
        filename=str(payload.get("filename") or
                     ("cancel.ics" if method == "CANCEL" else "invite.ics")),
        params={"method": method, "charset": "utf-8"})
    return email


class Mailer:
    """The background sender of notification emails."""

    def __init__(self, store: Store, config: GateConfig, clock: Callable[[], datetime], *,
                 interval: float | None = None, batch: int = BATCH) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.interval = config.mail_interval if interval is None else interval
        self.batch = batch
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        # Who holds a claimed message: this process, among the gates sharing the database.
        self.owner = f"mailer-{secrets.token_hex(8)}"
        self._said_disabled = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config.smtp_host)

    def wake(self) -> None:
        """Look for due emails now (called after a commit that queued some)."""
        self._wake.set()

    def start(self) -> None:
        """Start the background loop (``run``)."""
        self._task = asyncio.create_task(self.run())

    async def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Stop the loop after the message in hand, then ``flush``.

        The loop is asked to stop rather than cancelled: a cancellation landing inside a
        database call can leave its connection (and SQLite's write lock) behind.
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(SMTP_TIMEOUT + timeout):
                    await self._task
            except TimeoutError:
                logger.warning("the email loop did not stop in time; cancelled")
            self._task = None
        await self.flush(timeout)

    async def _send(self, email: EmailMessage, until: float | None) -> bool:
        """Hand ``email`` to the SMTP server; False if ``until`` came first."""
        c = self.config
        deadline = asyncio.timeout_at(until)
        try:
            async with deadline:
                await aiosmtplib.send(
                    email, hostname=c.smtp_host, port=c.smtp_port,
                    username=c.smtp_username or None, password=c.smtp_password or None,
                    start_tls=c.smtp_starttls, timeout=SMTP_TIMEOUT)
        except TimeoutError:
            if deadline.expired():
                return False
            raise
        return True

    async def _fail(self, message_id: int, attempts: int, error: BaseException) -> None:
        name = type(error).__name__
        delay = retry_delay(attempts)
        await self.store.mark_failed(message_id, name, self.clock() + delay, self.owner)
        logger.warning("email %d not sent (%s, attempt %d); retrying in %d s",
                       message_id, name, attempts + 1, delay.total_seconds())

    async def send_due(self, *, until: float | None = None) -> int:
        """Send every email that is due now; returns how many were sent.

        ``until`` (event loop time) ends the pass early, leaving the rest due; it bounds
        the wait for a pass already running too. The loop's own passes end early once
        ``close`` asks it to stop.
        """
        try:
            async with asyncio.timeout_at(until):
                await self._lock.acquire()
        except TimeoutError:
            return 0
        try:
            return await self._pass(until)
        finally:
            try:
                # What this pass claimed and did not settle goes back to every gate now,
                # not when its lease runs out.
                await self.store.release_outbox(self.owner)
            finally:
                self._lock.release()

    async def _pass(self, until: float | None) -> int:
        if not self.enabled:
            if not self._said_disabled:
                self._said_disabled = True
                logger.info("email is disabled (no SMTP host configured): "
                            "notifications stay queued in the outbox")
            return 0
        loop = asyncio.get_running_loop()
        sent = 0
        while True:
            due = await self.store.claim_outbox(EMAIL, self.owner, self.clock(), LEASE,
                                                self.batch)
            for index, (message_id, payload, attempts) in enumerate(due):
                if (self._stopping and until is None) or (
                        until is not None and loop.time() >= until):
                    return sent
                try:
                    email = build_email(message_id, payload, self.config.mail_from,
                                        self.clock())
                    if not await self._send(email, until):
                        return sent
                except Exception as error:
                    await self._fail(message_id, attempts, error)
                    if isinstance(error, _SERVER_ERRORS):
                        for later_id, _, later_attempts in due[index + 1:]:
                            await self._fail(later_id, later_attempts, error)
                        return sent
                    continue
                if await self.store.mark_sent(message_id, self.clock(), self.owner):
                    logger.info("email %d sent", message_id)
                else:
                    # Our lease ran out mid-send and another gate took it: it may go twice.
                    logger.warning("email %d was sent after its lease ran out", message_id)
                sent += 1
            if len(due) < self.batch:
                return sent

    async def run(self) -> None:
        """Send due emails until ``close``: every ``interval`` seconds, or when woken."""
        if not self.enabled:
            await self.send_due()  # says once that email is disabled
            return
        while not self._stopping:
            self._wake.clear()
            try:
                await self.send_due()
            except Exception as error:
                # The class only: a database error's text may quote the payload.
                logger.error("sending emails failed (%s); retrying", type(error).__name__)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that lands as the event fires (cpython gh-86296).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(await self._until_next()):
                    await self._wake.wait()

    async def _until_next(self) -> float:
        """Seconds to sleep: until the earliest retry falls due, at most ``interval``."""
        try:
            due = await self.store.next_outbox_attempt(EMAIL)
        except Exception as error:
            logger.error("reading the outbox failed (%s)", type(error).__name__)
            return self.interval
        if due is None:
            return self.interval
        return min(self.interval, max((due - self.clock()).total_seconds(), 0.05))

    async def flush(self, timeout: float = FLUSH_SECONDS) -> None:
        """On shutdown: try once, for about ``timeout`` seconds, to send what is due."""
        until = asyncio.get_running_loop().time() + timeout
        try:
            await self.send_due(until=until)
            if self.enabled and await self.store.due_outbox(EMAIL, self.clock(), 1):
                logger.warning("emails still due after %.0f s; they stay queued", timeout)
        except Exception as error:
            logger.error("sending emails on shutdown failed (%s); they stay queued",
                         type(error).__name__)


