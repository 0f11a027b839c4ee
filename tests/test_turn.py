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
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import unused_port

from peer import Peer, PeerError
from tests.processes import Served, clean_env, request_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
KEY = "turn-test-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Coturn:
    """coturn on 127.0.0.1 with a config of the test's own, and its log."""

    def __init__(self, root: Path, secret: str) -> None:
        self.port = unused_port()
        self.log = root / "turn.log"
        relay_low = 50000 + secrets.randbelow(10000)
        config = root / "turnserver.conf"
        config.write_text("\n".join([
            f"listening-port={self.port}", "listening-ip=127.0.0.1", "relay-ip=127.0.0.1",
            f"min-port={relay_low}", f"max-port={relay_low + 200}",
            "use-auth-secret", f"static-auth-secret={secret}", "realm=carecall.test",
            "fingerprint", "no-tls", "no-dtls", "no-cli", "no-multicast-peers",
            # The peers' relayed addresses are on loopback too (one machine).
            "allow-loopback-peers", f"log-file={self.log}", "simple-log", "verbose",
            "pidfile=" + str(root / "turnserver.pid"), "",
        ]))
        self.proc = subprocess.Popen([TURNSERVER, "-c", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"turnserver exited: {self.text()[-2000:]}")
            if "listener opened on" in self.text() or "Total General servers" in self.text():
                return
            time.sleep(0.2)
        raise AssertionError(f"turnserver not ready: {self.text()[-2000:]}")

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[tuple[Coturn, str]]:
    if not Path(TURNSERVER).exists():
        pytest.fail("coturn is not installed (apt-get install coturn; .ci/run does it)")
    secret = secrets.token_hex(16)
    server = Coturn(tmp_path, secret)
    try:
        server.wait_ready()
        yield server, secret
    finally:
        server.stop()


class RecordingPeer(Peer):
    """A peer that remembers the candidates it offers (in its SDP and trickled)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offered: list[str] = []

    async def _send(self, message: dict[str, Any]) -> None:
        description = message.get("description")
        if isinstance(description, dict) and "sdp" in description:
            self.offered += [line for line in description["sdp"].split("\r\n")
                             if line.startswith("a=candidate")]
        candidate = message.get("candidate")
        if isinstance(candidate, dict):
            self.offered.append(str(candidate.get("candidate")))
        await super()._send(message)


def book(base: str) -> dict[str, str]:
    def api(method: str, path: str, body: Any = None) -> Any:
        status, data = request_json(method, base + path, body, AUTH)
        assert status in (200, 201), (status, data)
        return data

    api("PUT", "/api/v1/professionals/pro-t", {"name": "Pro", "email": "p@example.org",
                                               "timezone": "UTC"})
    api("PUT", "/api/v1/clients/cli-t", {"name": "Cli", "email": "c@example.org",
                                         "timezone": "UTC", "hub_id": None})
    start = datetime.now(UTC)
    api("PUT", "/api/v1/bookings/turn", {
        "professional_id": "pro-t", "client_id": "cli-t", "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(), "funding": "private",
        "source": "direct"})
    links = api("POST", "/api/v1/bookings/turn/links")
    return {role: links[role]["url"] for role in ("professional", "client")}


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
            await pro.wait_connected(45)
            await client.wait_connected(45)
            await pro.wait_for(lambda: pro.stats.frames_received > 30, 30, "frames")
            await client.wait_for(lambda: client.stats.frames_received > 30, 30, "frames")
            await pro.wait_for(lambda: pro.stats.verification_code is not None, 15, "a code")
            await client.wait_for(lambda: client.stats.verification_code is not None, 15,
                                  "a code")
            assert pro.stats.verification_code == client.stats.verification_code
            await pro.leave()
            await client.leave()
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
