"""A call through TURN: Debian's coturn on loopback with `use-auth-secret`, carecall's
TURN-REST credentials, and two headless peers that may use relay candidates only.

Evidence that media went through the relay, and still end to end: every candidate each
peer offered is a relay candidate; coturn's own log shows an allocation per party with
traffic; and the verification codes match (each side hashed the other's DTLS
certificate as used on the wire, which a relay that terminated DTLS could not fake).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from peer import Peer, PeerError
from tests.processes import Served, clean_env
from tests.turn import KEY, Coturn, RecordingPeer, book, candidate_address

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def call(pro: RecordingPeer, client: RecordingPeer) -> None:
    """Both connected, frames both ways, matching verification codes, both leave."""
    await pro.wait_connected(45)
    await client.wait_connected(45)
    await pro.wait_for(lambda: pro.stats.frames_received > 30, 30, "frames")
    await client.wait_for(lambda: client.stats.frames_received > 30, 30, "frames")
    await pro.wait_for(lambda: pro.stats.verification_code is not None, 15, "a code")
    await client.wait_for(lambda: client.stats.verification_code is not None, 15, "a code")
    assert pro.stats.verification_code == client.stats.verification_code
    await pro.leave()
    await client.leave()


async def test_a_relay_only_call_flows_through_coturn_end_to_end(
        tmp_path: Path, turn: tuple[Coturn, str]) -> None:
    """Both peers offer relay candidates only; media flows through coturn (its log shows
    an allocation for each party, with traffic) and the verification codes match."""
    server, secret = turn
    env = clean_env(CARECALL_TURN_URLS=f"turn:127.0.0.1:{server.port}?transport=udp",
                    CARECALL_TURN_SECRET=secret)
    served = Served(["serve", "--port", "0", "--api-key", KEY,
                     "--var-dir", str(tmp_path / "var")], tmp_path, env)
    try:
        base = await asyncio.to_thread(served.ready)
        links = book(base)
        async with RecordingPeer(links["professional"], relay_only=True) as pro, \
                RecordingPeer(links["client"], relay_only=True) as client:
            await call(pro, client)
        for peer in (pro, client):
            assert peer.offered, "no candidates offered"
            assert all(" typ relay" in line for line in peer.offered), peer.offered
    finally:
        served.close()
    await asyncio.sleep(1)
    log = server.text()
    # TURN-REST usernames are <expiry>:<room>:<role>: one allocation per party.
    for role in ("professional", "client"):
        assert re.search(rf"username=<?\d+:[^:\s>]+:{role}>?", log), log[-3000:]
    assert "ALLOCATE" in log.upper()
    traffic = [int(n) for n in re.findall(r"rp=(\d+)", log)]
    assert traffic and max(traffic) > 100, log[-3000:]


async def test_hide_my_ip_keeps_the_clients_address_from_the_professional(
        tmp_path: Path, turn: tuple[Coturn, str]) -> None:
    """The client has hide_ip in the gate and its peer runs without --relay-only: the
    welcome makes it relay only, so every candidate the professional receives from it is
    a relay candidate, while the professional (policy all) still offers host ones; the
    call connects through coturn with matching verification codes."""
    server, secret = turn
    env = clean_env(CARECALL_TURN_URLS=f"turn:127.0.0.1:{server.port}?transport=udp",
                    CARECALL_TURN_SECRET=secret)
    served = Served(["serve", "--port", "0", "--api-key", KEY,
                     "--var-dir", str(tmp_path / "var")], tmp_path, env)
    try:
        base = await asyncio.to_thread(served.ready)
        links = book(base, hide_ip=True)
        async with RecordingPeer(links["professional"]) as pro, \
                RecordingPeer(links["client"]) as client:
            await pro.wait_connected(45)
            await client.wait_connected(45)
            assert client.relay_only and not pro.relay_only
            await call(pro, client)
    finally:
        served.close()
    print(f"the professional received {len(pro.received)} candidates from the client, "
          f"{sum(' typ relay' in c for c in pro.received)} relay; it offered "
          f"{len(pro.offered)}, {sum(' typ host' in c for c in pro.offered)} host")
    assert pro.received, "the professional received no candidates"
    assert all(" typ relay" in line for line in pro.received), pro.received
    assert client.offered == pro.received
    # The same machine, policy all: host candidates exist, so all-relay above is the policy.
    hosts = {candidate_address(line) for line in pro.offered if " typ host" in line}
    assert hosts, pro.offered
    # ... and none of this machine's own addresses appears anywhere in the client's SDP.
    assert pro.received_sdp
    for sdp in pro.received_sdp:
        assert not any(address in sdp for address in hosts), (hosts, sdp)


async def test_relay_only_without_a_turn_server_says_so(tmp_path: Path) -> None:
    """Relay only, and the server configures no TURN: the peer refuses clearly instead
    of connecting directly."""
    served = Served(["serve", "--port", "0", "--api-key", KEY,
                     "--var-dir", str(tmp_path / "var")], tmp_path, clean_env())
    try:
        base = await asyncio.to_thread(served.ready)
        links = book(base)
        async with Peer(links["client"], relay_only=True) as peer:
            with pytest.raises(PeerError, match="relay only: the server offers no TURN server"):
                await peer.wait_connected(20)
    finally:
        served.close()


async def test_hide_my_ip_without_a_turn_server_refuses_to_connect(tmp_path: Path) -> None:
    """hide_ip set in the gate, no TURN configured: the client's peer (no --relay-only)
    says Hide my IP needs a relay server and does not connect; the professional's is
    admitted as usual."""
    served = Served(["serve", "--port", "0", "--api-key", KEY,
                     "--var-dir", str(tmp_path / "var")], tmp_path, clean_env())
    try:
        base = await asyncio.to_thread(served.ready)
        links = book(base, hide_ip=True)
        async with RecordingPeer(links["client"]) as peer:
            with pytest.raises(PeerError, match="Hide my IP needs a relay server"):
                await peer.wait_connected(20)
            assert peer.offered == []
        async with Peer(links["professional"]) as pro:
            await pro.wait_admitted(20)
            assert not pro.relay_only
    finally:
        served.close()
