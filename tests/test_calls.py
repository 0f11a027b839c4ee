"""Two real aiortc peer connections call each other through the real signalling server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from peer import Peer
from tests.conftest import AUTH, GateClient, book_now

pytestmark = pytest.mark.timeout(90)


async def attendance(service: GateClient, booking_id: str = "b-1") -> dict[str, Any]:
    response = await service.get(f"/api/v1/bookings/{booking_id}/attendance", headers=AUTH)
    assert response.status == 200
    data: dict[str, Any] = await response.json()
    return data


async def wait_attendance(service: GateClient, check: Any, timeout: float = 5.0
                          ) -> dict[str, Any]:
    """Attendance events arrive asynchronously: poll until ``check`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        record = await attendance(service)
        if check(record) or asyncio.get_running_loop().time() > deadline:
            return record
        await asyncio.sleep(0.1)


async def frames_flow(a: Peer, b: Peer, more: int = 10) -> None:
    """Both sides keep receiving video: ``more`` new frames each."""
    start_a, start_b = a.stats.frames_received, b.stats.frames_received
    await a.wait_for(lambda: a.stats.frames_received >= start_a + more, 15, "frames at a")
    await b.wait_for(lambda: b.stats.frames_received >= start_b + more, 15, "frames at b")


@pytest.mark.parametrize("first", ["professional", "client"])
async def test_call_connects_in_either_join_order(service: GateClient, first: str) -> None:
    """Whoever joins first, media connects and frames flow both ways."""
    room = await book_now(service)
    second = "client" if first == "professional" else "professional"
    async with Peer(room["links"][first]) as a:
        await a.wait_admitted()
        await asyncio.sleep(0.3)
        async with Peer(room["links"][second]) as b:
            await a.wait_connected(20)
            await b.wait_connected(20)
            await frames_flow(a, b)
            await a.wait_for(lambda: a.stats.verification_code is not None, 10, "code")
            await b.wait_for(lambda: b.stats.verification_code is not None, 10, "code")
            assert a.stats.verification_code == b.stats.verification_code
            await b.leave()
        await a.leave()
    record = await wait_attendance(service, lambda r: r["media_connected"])
    assert record["media_connected"] is True
    assert record["parties"]["professional"]["joined"] is True
    assert record["parties"]["client"]["joined"] is True


async def test_call_recovers_after_a_dropped_socket_with_one_interval(
        service: GateClient) -> None:
    """A dropped signalling socket reconnects with resume; media keeps flowing and each
    party keeps one continuous attendance interval."""
    room = await book_now(service)
    async with Peer(room["links"]["professional"]) as pro, \
            Peer(room["links"]["client"]) as client:
        await pro.wait_connected(20)
        await client.wait_connected(20)
        await frames_flow(pro, client)
        client.drop_signalling()
        await client.wait_for(lambda: client.stats.reconnects >= 1, 10, "a reconnect")
        await frames_flow(pro, client, more=20)
        assert client.stats.connections == 1, "the media connection was kept"
        assert client.stats.max_frame_gap < 1.0
        # The server saw the client come back: a message from the professional reaches it.
        pro.drop_signalling()
        await pro.wait_for(lambda: pro.stats.reconnects >= 1, 10, "a reconnect")
        await frames_flow(pro, client)
        await pro.leave()
        await client.leave()
    record = await wait_attendance(
        service, lambda r: all(p["intervals"] and p["intervals"][-1]["to"]
                               for p in r["parties"].values()))
    for role in ("professional", "client"):
        intervals = record["parties"][role]["intervals"]
        assert len(intervals) == 1, (role, intervals)
        assert intervals[0]["to"] is not None


async def test_call_recovers_when_one_side_rejoins_with_a_fresh_connection(
        service: GateClient) -> None:
    """A party that leaves its page (new peer, no resume) gets a new call within 30 s,
    and attendance still shows one interval for it."""
    room = await book_now(service)
    async with Peer(room["links"]["professional"]) as pro:
        async with Peer(room["links"]["client"]) as client:
            await client.wait_connected(20)
            await pro.wait_connected(20)
            client.drop_signalling()
            await client.close()  # gone without bye, like a closed tab
        async with Peer(room["links"]["client"]) as again:
            await again.wait_connected(20)
            await frames_flow(pro, again)
            await again.leave()
        await pro.leave()
    record = await wait_attendance(
        service, lambda r: r["parties"]["client"]["intervals"]
        and r["parties"]["client"]["intervals"][-1]["to"] is not None)
    assert len(record["parties"]["client"]["intervals"]) == 1
