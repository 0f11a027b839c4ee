"""Delivers the outbox's webhook events to the booking system: the I/O side of
``webhooks.py``.

The events were stored in the transaction of the change they report; this task only
moves them, like ``mailer.py`` moves emails. It claims due events (``Store.claim_webhooks``:
the first undelivered event of each booking only, so one booking's events arrive in
order) when a commit wakes it, when the earliest retry falls due, and at least every
``webhook_interval`` seconds, and POSTs up to ``webhook_concurrency`` of them at once.

Invariants:
- nothing is dropped: a refused event is retried with exponential backoff and jitter
  (``webhooks.retry_delay``) until ``webhook_horizon`` (24 h) has passed since it was
  written; only then is it ``failed``, for an operator to retry. Delivery is at least
  once, with one ``webhook-id`` per event (a crash between the receiver's answer and
  ``webhook_attempted`` sends it again, with the same id and body);
- several gate processes never deliver one event twice: an event is claimed by one
  process for a lease longer than an attempt can take, and recorded only by its holder;
- a receiver that cannot be reached (no answer at all) is left alone for a while,
  backing off like one event does: one batch probes it, the rest wait without burning
  their attempts. A receiver answering 410 Gone is disabled, for every gate on the
  database, until an operator enables it (``POST /api/v1/webhooks/enable``);
- logs carry webhook ids, HTTP statuses and exception class names only: never the URL,
  a secret, a body, or anything the receiver answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp

from booking_gate.config import GateConfig
from booking_gate.metrics import GateMetrics
from booking_gate.store import ClaimedEvent, Store
from booking_gate.webhooks import (
    WEBHOOK,
    DeliveryEvent,
    DeliveryState,
    attempt_event,
    endpoint_key,
    parse_secret,
    retry_delay,
    signed_headers,
)

logger = logging.getLogger(__name__)

CLOSE_SECONDS = 5.0
# The shortest sleep between two passes (other gates' leases may hold what is due).
MIN_SLEEP = 0.25


class WebhookSender:
    """The background sender of webhook events to one receiver."""

    def __init__(self, store: Store, config: GateConfig, clock: Callable[[], datetime], *,
                 jitter: Callable[[], float] = random.random) -> None:
        if not config.webhook_url or not config.webhook_secret:
            raise ValueError("a webhook sender needs webhook_url and webhook_secret")
        self.store = store
        self.config = config
        self.clock = clock
        self.jitter = jitter
        self.url = config.webhook_url
        self.endpoint = endpoint_key(self.url)
        # The current secret signs first; during a rotation the previous one signs too.
        self.keys = [parse_secret(config.webhook_secret, "CARECALL_WEBHOOK_SECRET")]
        if config.webhook_previous_secret:
            self.keys.append(parse_secret(config.webhook_previous_secret,
                                          "CARECALL_WEBHOOK_SECRET_PREVIOUS"))
        # Who holds a claimed event: this process, among the gates sharing the database.
        self.owner = f"webhooks-{secrets.token_hex(8)}"
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        # The receiver did not answer at all: leave it alone until then.
        self._away_until: datetime | None = None
        self._away_count = 0
        self._said_disabled = False

    def wake(self) -> None:
        """Look for due events now (called after a commit that wrote some)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Stop the loop after the batch in hand, give back what this process holds."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(self.config.webhook_timeout + timeout):
                    await self._task
            except TimeoutError:
                logger.warning("the webhook loop did not stop in time; cancelled")
            self._task = None
        try:
            await self.store.release_outbox(self.owner)
        except Exception as error:
            logger.error("giving back webhook events failed (%s); their lease runs out",
                         type(error).__name__)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.webhook_timeout),
                # Never send the API's own cookies or follow a redirect elsewhere.
                cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    # -- one pass -----------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Deliver every event that is due now; returns how many were delivered."""
        async with self._lock:
            try:
                return await self._pass()
            finally:
                # What this pass claimed and did not settle goes back to every gate now.
                await self.store.release_outbox(self.owner)

    async def _pass(self) -> int:
        if await self.store.endpoint_disabled(self.endpoint) is not None:
            if not self._said_disabled:
                self._said_disabled = True
                logger.warning("the webhook receiver answered 410 Gone earlier: deliveries "
                               "wait until it is enabled (POST /api/v1/webhooks/enable)")
            return 0
        self._said_disabled = False
        if self._away_until is not None and self.clock() < self._away_until:
            return 0
        delivered = 0
        while not self._stopping:
            now = self.clock()
            claimed = await self.store.claim_webhooks(
                self.owner, now, self.config.webhook_lease, self.config.webhook_concurrency)
            if not claimed:
                return delivered
            answers = await asyncio.gather(*(self._post(event) for event in claimed))
            now = self.clock()
            unreachable = gone = False
            for event, (status, error) in zip(claimed, answers, strict=True):
                outcome = attempt_event(status, event.created_at, now,
                                        self.config.webhook_horizon)
                delivered += await self._record(event, outcome, status, error, now)
                unreachable |= status is None
                gone |= outcome is DeliveryEvent.GONE
            if gone:
                await self.store.set_endpoint_disabled(self.endpoint, True, 410, now)
                logger.warning("the webhook receiver answered 410 Gone: deliveries stop "
                               "until it is enabled (POST /api/v1/webhooks/enable)")
                return delivered
            if unreachable:
                self._away(now)
                return delivered
            self._away_until, self._away_count = None, 0
        return delivered

    def _away(self, now: datetime) -> None:
        c = self.config
        delay = retry_delay(self._away_count, c.webhook_first_retry, c.webhook_max_retry,
                            self.jitter())
        self._away_count += 1
        self._away_until = now + delay
        logger.warning("the webhook receiver did not answer; trying again in %.1f s",
                       delay.total_seconds())

    async def _post(self, event: ClaimedEvent) -> tuple[int | None, str | None]:
        """One attempt: the receiver's status, or None and the error's class name."""
        timestamp = int(self.clock().timestamp())
        headers = signed_headers(self.keys, event.webhook_id, timestamp, event.body)
        try:
            async with self._http().post(self.url, data=event.body, headers=headers,
                                         allow_redirects=False) as response:
                # The body is never read: it is the receiver's, and may quote anything.
                return response.status, None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            return None, type(error).__name__

    async def _record(self, event: ClaimedEvent, outcome: DeliveryEvent, status: int | None,
                      error: str | None, now: datetime) -> int:
        c = self.config
        delay = retry_delay(event.attempts, c.webhook_first_retry, c.webhook_max_retry,
                            self.jitter())
        what = error or f"HTTP {status}"
        held = await self.store.webhook_attempted(
            event.message_id, self.owner, outcome, status,
            None if outcome is DeliveryEvent.ACCEPTED else what, now, now + delay)
        if not held:
            # Our lease ran out mid-attempt and another gate took it: it may go twice.
            logger.warning("webhook %s was attempted after its lease ran out",
                           event.webhook_id)
        elif outcome is DeliveryEvent.ACCEPTED:
            logger.info("webhook %s delivered (%s)", event.webhook_id, what)
            return 1
        elif outcome is DeliveryEvent.GAVE_UP:
            logger.warning("webhook %s failed for good after %d attempts (%s)",
                           event.webhook_id, event.attempts + 1, what)
        elif outcome is DeliveryEvent.REFUSED:
            logger.info("webhook %s not delivered (%s, attempt %d); retrying in %.1f s",
                        event.webhook_id, what, event.attempts + 1, delay.total_seconds())
        return 0

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Deliver due events until ``close``: when woken, when due, every interval."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception as error:
                # The class only: a database error's text may quote a body.
                logger.error("delivering webhooks failed (%s); retrying",
                             type(error).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(await self._until_next()):
                    await self._wake.wait()

    async def _until_next(self) -> float:
        """Seconds to sleep: until the earliest retry falls due, at most the interval."""
        interval = self.config.webhook_interval
        now = self.clock()
        if self._away_until is not None and now < self._away_until:
            return min(interval, max((self._away_until - now).total_seconds(), MIN_SLEEP))
        try:
            if await self.store.endpoint_disabled(self.endpoint) is not None:
                return interval  # enabling it wakes the loop
            due = await self.store.next_outbox_attempt(WEBHOOK)
        except Exception as error:
            logger.error("reading the outbox failed (%s)", type(error).__name__)
            return interval
        if due is None:
            return interval
        return min(interval, max((due - now).total_seconds(), MIN_SLEEP))


async def refresh_metrics(store: Store, metrics: GateMetrics, now: datetime) -> None:
    """Set the webhook gauges from the outbox (every gate's events), before a scrape."""
    counts = await store.webhook_counts()
    for state, value in ((DeliveryState.PENDING, counts.pending),
                         (DeliveryState.FAILED, counts.failed),
                         (DeliveryState.DELIVERED, counts.delivered)):
        metrics.webhook_events.labels(state.value).set(value)
    oldest = timedelta() if counts.oldest_pending is None else now - counts.oldest_pending
    metrics.webhook_oldest_pending.set(max(oldest.total_seconds(), 0.0))
