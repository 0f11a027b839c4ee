"""Webhooks from real ``carecall gate`` processes: a receiver that is down for the first
thousand events, a kill -9 of the gate meanwhile, and two gates on one PostgreSQL.

The receiver is an aiohttp server on 127.0.0.1 in the test, verifying each delivery
with the ``standardwebhooks`` library. The gates get short retry settings through their
documented environment (CARECALL_WEBHOOK_MAX_RETRY_SECONDS, _TIMEOUT_SECONDS).
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import Served, clean_env
from tests.webhook_receiver import SECRET, Receiver

API_KEY = "webhook-process-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
pytestmark = pytest.mark.slow
DELIVERED = re.compile(r"webhook (msg_[0-9a-f]+) delivered")


class Api:
    """The gate's REST API over HTTP, a few calls at a time."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def __call__(self, method: str, path: str, body: Any = None,
                       status: tuple[int, ...] = (200, 201)) -> Any:
        async with self.session.request(method, self.base_url + path, json=body,
                                        headers=AUTH) as response:
            data = await response.json()
            assert response.status in status, (method, path, response.status, data)
            return data

    async def deliveries(self, state: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = "limit=500" + (f"&state={state}" if state else "") + (
                f"&cursor={cursor}" if cursor else "")
            page = await self("GET", f"/api/v1/webhooks/deliveries?{query}")
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items


def gate(tmp_path: Path, name: str, receiver: Receiver, db_url: str | None = None,
         log_level: str = "WARNING") -> Served:
    var = tmp_path / name
    args = ["gate", "--host", "127.0.0.1", "--port", "0", "--api-key", API_KEY,
            "--var-dir", str(var), "--log-level", log_level]
    if db_url:
        args += ["--db", db_url]
    env = clean_env(CARECALL_WEBHOOK_URL=receiver.url, CARECALL_WEBHOOK_SECRET=SECRET,
                    CARECALL_WEBHOOK_MAX_RETRY_SECONDS="1",
                    CARECALL_WEBHOOK_TIMEOUT_SECONDS="2")
    return Served(args, tmp_path, env)


async def seed(api: Api) -> None:
    await api("PUT", "/api/v1/professionals/pro-1", {
        "name": "Dr Pro", "email": "pro@example.org", "timezone": "UTC"})
    for client, hub in (("cli-1", "acme"), ("cli-2", None)):
        await api("PUT", f"/api/v1/clients/{client}", {
            "name": "Some One", "email": f"{client}@example.org", "timezone": "UTC",
            "hub_id": hub})
    await api("POST", "/api/v1/hubs/acme/credits", {"client_id": "cli-1", "credits": 1000})


async def bookings(apis: list[Api], first: int, count: int, *, cancel_every: int,
                   concurrency: int = 4) -> None:
    """Bookings ``first`` .. ``first + count - 1``, an hour apart from three days ahead,
    half sponsored; all but every ``cancel_every``-th are then cancelled by the client
    (cancelled, then finalised). Calls alternate between ``apis``."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=3)
    gate_ = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        api = apis[n % len(apis)]
        start = base + timedelta(hours=n)
        sponsored = n % 2 == 0
        async with gate_:
            await api("PUT", f"/api/v1/bookings/b-{n:04d}", {
                "professional_id": "pro-1", "client_id": "cli-1" if sponsored else "cli-2",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(minutes=50)).isoformat(),
                "funding": "sponsored" if sponsored else "private",
                "source": "hub" if sponsored else "direct"})
            if n % cancel_every != 0:
                await api("POST", f"/api/v1/bookings/b-{n:04d}/cancel", {"by": "client"})

    await asyncio.gather(*(one(n) for n in range(first, first + count)))


def order_key(body: dict[str, Any]) -> str:
    data = body["data"]
    if body["type"] == "credits.changed":
        return f"credits:{data['client_id']}"
    return f"booking:{data['booking_id']}"


def check_deliveries(receiver: Receiver, listed: list[dict[str, Any]]) -> None:
    """Every listed event arrived exactly once, verified, and each booking's (and each
    client's credit) events arrived in the order they were written."""
    assert receiver.invalid == []
    ids = receiver.ids()
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert set(ids) == {d["webhook_id"] for d in listed}
    assert {d["state"] for d in listed} == {"delivered"}
    written = {d["webhook_id"]: index for index, d in enumerate(listed)}  # outbox order
    arrived: dict[str, list[int]] = defaultdict(list)
    for hook in receiver.received:
        arrived[order_key(hook.body)].append(written[hook.webhook_id])
    for key, order in arrived.items():
        assert order == sorted(order), f"{key} arrived out of order"
    types = {hook.type for hook in receiver.received}
    assert {"booking.created", "booking.cancelled", "attendance.finalized",
            "credits.changed"} <= types


async def wait_delivered(receiver: Receiver, count: int, timeout: float) -> None:
    try:
        await receiver.wait_for(count, timeout)
    except TimeoutError:
        raise AssertionError(f"{len(receiver.received)} of {count} events arrived in "
                             f"{timeout} s") from None


@pytest.mark.timeout(240)
async def test_a_receiver_down_for_a_thousand_events_and_a_kill_9_lose_none(
        tmp_path: Path) -> None:
    """The receiver is down while a gate writes 1,000+ events (bookings, cancels,
    finalisations) and is killed with SIGKILL half-way; restarted, then the receiver
    comes up: every event arrives once, signed, in per-booking order."""
    receiver = Receiver()
    first = gate(tmp_path, "var", receiver)
    second: Served | None = None
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, first.ready())
            await seed(api)
            await bookings([api], 0, 200, cancel_every=4)  # 1 + 200*1.5 + 150*2.5 events
            before_kill = await api.deliveries()
            assert len(before_kill) > 500
            assert {d["state"] for d in before_kill} == {"pending"}
            first.proc.kill()  # SIGKILL: no shutdown, leases left behind
            first.proc.wait(timeout=10)

            second = gate(tmp_path, "var", receiver)
            api = Api(session, second.ready())
            await bookings([api], 200, 130, cancel_every=4)
            written = await api.deliveries()
            assert len(written) >= 1000
            assert {d["state"] for d in written} == {"pending"}
            assert receiver.received == []

            await receiver.start()
            await wait_delivered(receiver, len(written), timeout=120)
            await asyncio.sleep(1.0)  # nothing more arrives: no duplicate
            listed = await api.deliveries()
            assert [d["webhook_id"] for d in listed] == [d["webhook_id"] for d in written]
            check_deliveries(receiver, listed)
            assert {d["webhook_id"] for d in before_kill} <= set(receiver.ids())
            assert second.terminate() == 0, second.stderr()
            for served in (first, second):
                log = served.stderr()
                assert SECRET not in log and "@example.org" not in log
    finally:
        await receiver.stop()
        first.close()
        if second is not None:
            second.close()


@pytest.mark.postgres
@pytest.mark.timeout(240)
async def test_two_gates_on_postgresql_deliver_every_event_once(
        tmp_path: Path, postgres_url: str) -> None:
    """Two gate processes share one PostgreSQL and one receiver, which is down for the
    first half: both deliver, and every event arrives exactly once, in per-booking order."""
    receiver = Receiver()
    gates = [gate(tmp_path, f"var-{n}", receiver, postgres_url, log_level="INFO")
             for n in range(2)]
    try:
        async with aiohttp.ClientSession() as session:
            apis = [Api(session, served.ready()) for served in gates]
            await seed(apis[0])
            await bookings(apis, 0, 120, cancel_every=3)
            await receiver.start()
            await bookings(apis, 120, 120, cancel_every=3)
            written = await apis[1].deliveries()
            assert len(written) > 600
            await wait_delivered(receiver, len(written), timeout=120)
            await asyncio.sleep(1.0)
            check_deliveries(receiver, await apis[0].deliveries())
            for served in gates:
                assert served.terminate() == 0, served.stderr()
            # Each gate logs the ids it delivered: both took part, never the same event.
            sent = [set(DELIVERED.findall(served.stderr())) for served in gates]
            assert all(sent), [len(s) for s in sent]
            assert not sent[0] & sent[1]
            assert sent[0] | sent[1] == set(receiver.ids())
    finally:
        await receiver.stop()
        for served in gates:
            served.close()
