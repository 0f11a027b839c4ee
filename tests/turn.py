"""Shared by the TURN tests: Debian's coturn on loopback with ``use-auth-secret`` and a
config of the test's own, a peer that records the ICE candidates it sends and receives,
and a booking that starts now."""

from __future__ import annotations

import contextlib
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

from peer import Peer
from tests.processes import request_json

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


@contextlib.contextmanager
def running_coturn(root: Path) -> Iterator[tuple[Coturn, str]]:
    """coturn started in ``root`` with a fresh shared secret, stopped afterwards."""
    if not Path(TURNSERVER).exists():
        pytest.fail("coturn is not installed (apt-get install coturn; .ci/run does it)")
    secret = secrets.token_hex(16)
    server = Coturn(root, secret)
    try:
        server.wait_ready()
        yield server, secret
    finally:
        server.stop()


def candidates_in(message: dict[str, Any]) -> list[str]:
    """The ICE candidates a ``signal`` message carries: in its SDP and trickled."""
    found: list[str] = []
    description = message.get("description")
    if isinstance(description, dict) and "sdp" in description:
        found += [line for line in str(description["sdp"]).split("\r\n")
                  if line.startswith("a=candidate")]
    candidate = message.get("candidate")
    if isinstance(candidate, dict) and candidate.get("candidate"):
        found.append(str(candidate.get("candidate")))
    return found


class RecordingPeer(Peer):
    """A peer that remembers the candidates it offers (in its SDP and trickled) and
    those the other party sent it, as the server relayed them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offered: list[str] = []
        self.received: list[str] = []
        self.received_sdp: list[str] = []  # in memory, for the test's eyes only

    async def _on_signal(self, msg: dict[str, Any]) -> None:
        self.received += candidates_in(msg)
        description = msg.get("description")
        if isinstance(description, dict) and "sdp" in description:
            self.received_sdp.append(str(description["sdp"]))
        await super()._on_signal(msg)

    async def _send(self, message: dict[str, Any]) -> None:
        self.offered += candidates_in(message)
        await super()._send(message)


def candidate_address(line: str) -> str:
    """The connection address of an ``a=candidate:`` line (RFC 8839 section 5.1)."""
    return line.split()[4]


def book(base: str, *, hide_ip: bool = False) -> dict[str, str]:
    """A booking starting now between pro-t and cli-t (whose hide_ip is ``hide_ip``) on
    the server at ``base``; the two join links by role."""
    def api(method: str, path: str, body: Any = None) -> Any:
        status, data = request_json(method, base + path, body, AUTH)
        assert status in (200, 201), (status, data)
        return data

    api("PUT", "/api/v1/professionals/pro-t", {"name": "Pro", "email": "p@example.org",
                                               "timezone": "UTC"})
    api("PUT", "/api/v1/clients/cli-t", {"name": "Cli", "email": "c@example.org",
                                         "timezone": "UTC", "hub_id": None,
                                         "hide_ip": hide_ip})
    start = datetime.now(UTC)
    api("PUT", "/api/v1/bookings/turn", {
        "professional_id": "pro-t", "client_id": "cli-t", "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(), "funding": "private",
        "source": "direct"})
    links = api("POST", "/api/v1/bookings/turn/links")
    return {role: links[role]["url"] for role in ("professional", "client")}
