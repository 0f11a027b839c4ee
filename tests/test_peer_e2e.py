"""The headless peer against a real `carecall serve` process, as QA runs it."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import unused_port

from booking_gate.rules import FAILURE_SENTENCES
from peer import Peer
from peer.cli import add_arguments
from peer.client import PeerError, failure_cause
from tests.processes import CARECALL, Served, clean_env, request_json, serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KEY = "e2e-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Short enough that records become final within the test, longer than the peers stay.
OVERRUN = 15


def served_env() -> dict[str, str]:
    return clean_env(CARECALL_OVERRUN_SECONDS=str(OVERRUN), CARECALL_JOIN_EARLY_SECONDS="900")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    with serve(["--port", "0", "--api-key", KEY], tmp_path, served_env()) as served:
        served.ready()
        yield served


def api(server: Served, method: str, path: str, body: Any = None) -> Any:
    status, data = request_json(method, server.base_url + path, body, AUTH)
    assert status in (200, 201), (status, data)
    return data


def book(server: Served, name: str, start: datetime, end: datetime) -> dict[str, str]:
    """A professional and client of their own, a sponsored booking, and its two links."""
    api(server, "PUT", f"/api/v1/professionals/pro-{name}", {
        "name": "Pro", "email": "pro@example.org", "timezone": "UTC"})
    api(server, "PUT", f"/api/v1/clients/cli-{name}", {
        "name": "Client", "email": "client@example.org", "timezone": "UTC", "hub_id": "acme"})
    api(server, "POST", "/api/v1/hubs/acme/credits", {"client_id": f"cli-{name}", "credits": 1})
    api(server, "PUT", f"/api/v1/bookings/{name}", {
        "professional_id": f"pro-{name}", "client_id": f"cli-{name}",
        "starts_at": start.isoformat(), "ends_at": end.isoformat(),
        "funding": "sponsored", "source": "hub"})
    links = api(server, "POST", f"/api/v1/bookings/{name}/links")
    return {role: links[role]["url"] for role in ("professional", "client")}


def now() -> datetime:
    return datetime.now(UTC)


async def final_record(server: Served, booking_id: str, timeout: float = 45.0
                       ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = api(server, "GET", f"/api/v1/bookings/{booking_id}/attendance")
        if record["status"] == "final" or time.monotonic() > deadline:
            return dict(record)
        await asyncio.sleep(0.5)


def run_peer(link: str, tmp_path: Path, name: str, *args: str
             ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CARECALL, "peer", link, "--stats-json", str(tmp_path / f"{name}.json"), *args],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_two_peer_processes_call_and_the_session_completes(
        server: Served, tmp_path: Path) -> None:
    """Both `carecall peer` exit 0, frames flow both ways, codes match, outcome completed."""
    links = book(server, "call", now() - timedelta(seconds=30), now() + timedelta(seconds=8))
    procs = {role: run_peer(links[role], tmp_path, role, "--duration", "10",
                            "--min-frames", "30") for role in links}
    results = {role: proc.communicate(timeout=60) for role, proc in procs.items()}
    for role, proc in procs.items():
        assert proc.returncode == 0, (role, results[role][1])
    stats = {role: json.loads((tmp_path / f"{role}.json").read_text()) for role in links}
    for role in links:
        assert stats[role]["frames_received"] >= 30
        assert stats[role]["frames_sent"] >= 30
        assert stats[role]["audio_frames_received"] > 0
        for key in ("admitted_at", "connected_at", "first_frame_at"):
            assert stats[role][key].endswith("Z")
    code = stats["professional"]["verification_code"]
    assert code is not None and len(code) == 6
    assert stats["client"]["verification_code"] == code
    record = await final_record(server, "call")
    assert (record["status"], record["outcome"], record["billable"], record["payer"]) == (
        "final", "completed", True, "sponsor")


class BlockedPeer(Peer):
    """A peer whose candidates never reach the other side: media is blocked.

    Real packet filtering would need a network namespace per peer; stripping every
    candidate from the SDP has the same effect on ICE (no pair can ever succeed).
    """

    async def _send(self, message: dict[str, Any]) -> None:
        description = message.get("description")
        if isinstance(description, dict) and "sdp" in description:
            lines = [line for line in description["sdp"].split("\r\n")
                     if not line.startswith("a=candidate")]
            description["sdp"] = "\r\n".join(lines)
        await super()._send(message)


async def test_no_show_brief_join_and_technical_failure_end_in_the_contract_outcomes(
        server: Served) -> None:
    """Professional alone → client_no_show; a 2 s client visit is no no-show; both present
    with media blocked → technical_failure."""
    start, end = now() - timedelta(seconds=30), now() + timedelta(seconds=10)
    alone, brief, blocked = (book(server, name, start, end)
                             for name in ("alone", "brief", "blocked"))
    async with Peer(alone["professional"]) as lonely, \
            Peer(brief["professional"]) as host, \
            BlockedPeer(blocked["professional"]) as blocked_pro, \
            BlockedPeer(blocked["client"]) as blocked_client:
        async with Peer(brief["client"]) as visitor:
            await visitor.wait_connected(20)
            await asyncio.sleep(2)
            await visitor.leave()
        for peer in (lonely, host, blocked_pro, blocked_client):
            await peer.wait_admitted(10)
        await asyncio.sleep(3)
        assert not blocked_pro.stats.connected_at and not blocked_client.stats.connected_at
        for peer in (lonely, host, blocked_pro, blocked_client):
            await peer.leave()
    outcomes = {}
    for name in ("alone", "brief", "blocked"):
        record = await final_record(server, name)
        outcomes[name] = (record["status"], record["outcome"], record["billable"])
    assert outcomes == {
        "alone": ("final", "client_no_show", True),
        "brief": ("final", "completed", True),
        "blocked": ("final", "technical_failure", False),
    }


async def test_kill_9_of_the_server_mid_call_keeps_media_and_one_interval(
        tmp_path: Path) -> None:
    """Media flows while the server is dead (no gap over 1 s); after a restart on the same
    port the peers resume on their existing connection and attendance stays continuous."""
    port = str(unused_port())
    args = ["--port", port, "--api-key", KEY]
    first = Served(["serve", *args], tmp_path, served_env())
    try:
        first.ready()
        links = book(first, "crash", now() - timedelta(seconds=10), now() + timedelta(minutes=5))
        async with Peer(links["professional"]) as pro, Peer(links["client"]) as client:
            await pro.wait_connected(20)
            await client.wait_connected(20)
            await asyncio.sleep(2)
            first.proc.kill()
            # Blocking waits go to a thread: the peers live on this event loop.
            await asyncio.to_thread(first.proc.wait, 10)
            received = (pro.stats.frames_received, client.stats.frames_received)
            await asyncio.sleep(3)
            # Nobody is relaying, yet frames keep arriving peer to peer.
            assert pro.stats.frames_received > received[0] + 20
            assert client.stats.frames_received > received[1] + 20
            second = Served(["serve", *args], tmp_path, served_env())
            try:
                await asyncio.to_thread(second.ready)
                await pro.wait_for(lambda: pro.stats.reconnects >= 1, 10, "reconnect")
                await client.wait_for(lambda: client.stats.reconnects >= 1, 10, "reconnect")
                await asyncio.sleep(6)  # both back: the backoff is at most 4 s
                assert pro.stats.connections == client.stats.connections == 1
                assert pro.stats.max_frame_gap < 1.0, pro.stats.max_frame_gap
                assert client.stats.max_frame_gap < 1.0, client.stats.max_frame_gap
                await pro.leave()
                await client.leave()
                await asyncio.sleep(1)
                record = api(second, "GET", "/api/v1/bookings/crash/attendance")
            finally:
                second.close()
    finally:
        first.close()
    for role in ("professional", "client"):
        intervals = record["parties"][role]["intervals"]
        assert len(intervals) == 1, (role, intervals)
        assert intervals[0]["to"] is not None
    assert record["media_connected"] is True


@pytest.mark.parametrize("case,code", [
    ("too_early", "4410"), ("cancelled", "4403"), ("forged", "4401")])
def test_refused_joins_exit_non_zero_with_the_code(server: Served, tmp_path: Path, case: str,
                                                   code: str) -> None:
    """Refusals give a non-zero exit and a one-line reason naming the close code."""
    if case == "too_early":
        link = book(server, case, now() + timedelta(hours=2),
                    now() + timedelta(hours=3))["client"]
    else:
        link = book(server, case, now(), now() + timedelta(minutes=30))["client"]
    if case == "cancelled":
        api(server, "POST", f"/api/v1/bookings/{case}/cancel", {"by": "professional"})
    if case == "forged":
        head, _, _signature = link.rpartition(".")
        link = head + "." + "A" * 86
    proc = run_peer(link, tmp_path, case, "--connect-timeout", "10")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("refused: " + code), err
    stats = json.loads((tmp_path / f"{case}.json").read_text())
    assert stats["admitted_at"] is None and stats["frames_received"] == 0


def test_peer_help_explains_every_option() -> None:
    """`carecall peer --help` documents each option of the contract."""
    result = subprocess.run([*CARECALL, "peer", "--help"], env=clean_env(), text=True,
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0
    for option in ("--duration", "--video", "--no-audio", "--record", "--stats-json",
                   "--min-frames"):
        assert option in result.stdout
    assert "exit status 0" in result.stdout.lower().replace("\n", " ")
    assert sys.executable  # the peer ran with this interpreter


@pytest.mark.parametrize(("ice_state", "relay_only", "sdp", "cause"), [
    ("failed", False, "a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host",
     "no_candidate_pair"),
    ("failed", True, "a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ relay raddr 0.0.0.0",
     "no_candidate_pair"),
    ("failed", True, "v=0\r\na=candidate:1 1 udp 1 192.0.2.1 5000 typ host\r\n",
     "no_relay_candidate"),
    ("failed", True, None, "no_relay_candidate"),
    ("completed", False, "", "dtls_failed"),
    ("completed", True, None, "dtls_failed"),
], ids=["ice-failed", "relay-gathered-but-failed", "relay-only-without-relay",
        "relay-only-without-sdp", "dtls-after-ice", "dtls-relay-only"])
def test_the_peer_names_why_its_media_path_failed(ice_state: str, relay_only: bool,
                                                  sdp: str | None, cause: str) -> None:
    """ICE failed: no_relay_candidate when relay-only gathered no relay candidate, else
    no_candidate_pair; ICE fine but the connection failed: dtls_failed."""
    assert failure_cause(ice_state, relay_only, sdp) == cause


def test_peer_audio_only_is_an_option() -> None:
    """carecall peer --audio-only; off by default."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["-", "--audio-only"]).audio_only is True
    assert parser.parse_args(["-"]).audio_only is False


async def test_an_audio_only_peer_and_a_relay_only_peer_without_turn_in_the_record(
        server: Served) -> None:
    """An --audio-only peer sends no video but receives it, and the session's together
    time is audio-only; a relay-only client on a server without TURN reports
    no_relay_candidate, which the technical_failure explanation names."""
    start, end = now() - timedelta(seconds=30), now() + timedelta(seconds=8)
    audio, hidden = book(server, "audio", start, end), book(server, "hidden", start, end)
    async with Peer(audio["professional"]) as seeing, \
            Peer(audio["client"], audio_only=True) as hearing, \
            Peer(hidden["professional"]) as host, \
            Peer(hidden["client"], relay_only=True) as hider:
        await hearing.wait_connected(20)
        await seeing.wait_connected(20)
        await host.wait_admitted(10)
        with pytest.raises(PeerError, match="relay only"):
            await hider.wait_connected(10)
        await asyncio.sleep(3)
        assert hearing.stats.frames_received > 0  # the other party's video still arrives
        assert hearing.stats.frames_sent == 0 and seeing.stats.frames_received == 0
        for peer in (seeing, hearing, host, hider):
            await peer.leave()
    record = await final_record(server, "audio")
    assert (record["status"], record["outcome"]) == ("final", "completed")
    assert record["audio_only_seconds"] > 0 and record["video_seconds"] == 0
    assert record["audio_only_seconds"] <= record["together_seconds"]
    failed = await final_record(server, "hidden")
    assert (failed["status"], failed["outcome"]) == ("final", "technical_failure")
    assert FAILURE_SENTENCES["no_relay_candidate"].format(role="client") in failed[
        "explanation"]
