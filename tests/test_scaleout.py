"""The scale-out topology as processes: a gate on PostgreSQL, two signalling nodes sharing
rooms through Redis, a TCP front per party (as a load balancer would be), and headless
peers, one party on each node.

Every process is real (`carecall gate`, `carecall signalling`), against the machine's
PostgreSQL and Redis; only the load balancer is a few lines of asyncio (tests/front.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import unused_port
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer import Peer, PeerError
from tests.conftest import REDIS_URL
from tests.front import Front
from tests.processes import Served, clean_env, request_json

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis,
              pytest.mark.timeout(240)]

KEY = "scale-out-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
OVERRUN = 20


@dataclass
class Topology:
    root: Path
    env: dict[str, str]
    db_url: str
    gate_port: int
    gate: Served | None = None
    nodes: list[Served | None] = field(default_factory=list)
    node_ports: list[int] = field(default_factory=list)
    fronts: list[Front] = field(default_factory=list)

    @property
    def gate_url(self) -> str:
        return f"http://127.0.0.1:{self.gate_port}"

    def start_gate(self) -> Served:
        self.gate = Served(["gate", "--port", str(self.gate_port), "--db", self.db_url,
                            "--api-key", KEY, "--var-dir", str(self.root / "gate")],
                           self.root, self.env)
        return self.gate

    def start_node(self, index: int) -> Served:
        node = Served(["signalling", "--port", str(self.node_ports[index]),
                       "--gate-url", self.gate_url, "--redis", REDIS_URL, "--api-key", KEY,
                       "--var-dir", str(self.root / f"node{index}")], self.root, self.env)
        self.nodes[index] = node
        return node

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, data = request_json(method, self.gate_url + path, body, AUTH)
        assert status in (200, 201), (status, data)
        return data

    def book(self, name: str, start: datetime, end: datetime) -> dict[str, str]:
        """People of their own, a sponsored booking, and its links: the professional's
        through front 0 (node 0 first), the client's through front 1 (node 1 first)."""
        self.api("PUT", f"/api/v1/professionals/pro-{name}", {
            "name": "Pro", "email": "pro@example.org", "timezone": "UTC"})
        self.api("PUT", f"/api/v1/clients/cli-{name}", {
            "name": "Client", "email": "client@example.org", "timezone": "UTC",
            "hub_id": "acme"})
        self.api("POST", "/api/v1/hubs/acme/credits", {"client_id": f"cli-{name}",
                                                       "credits": 1})
        self.api("PUT", f"/api/v1/bookings/{name}", {
            "professional_id": f"pro-{name}", "client_id": f"cli-{name}",
            "starts_at": start.isoformat(), "ends_at": end.isoformat(),
            "funding": "sponsored", "source": "hub"})
        links = self.api("POST", f"/api/v1/bookings/{name}/links")
        return {role: via(links[role]["url"], self.fronts[index].port)
                for index, role in enumerate(("professional", "client"))}

    def record(self, booking_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/v1/bookings/{booking_id}/attendance"))


def via(link: str, port: int) -> str:
    """The link with its host replaced by a front's (the token stays in the fragment)."""
    parts = urlsplit(link)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def signing_key(tmp_path: Path) -> Path:
    """One signing key shared by every gate process (CARECALL_SIGNING_KEY)."""
    path = tmp_path / "signing_key.pem"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.chmod(0o600)
    return path




@pytest.fixture
async def topology(tmp_path: Path, postgres_url: str, signing_key: Path,
                   redis_prefix: str) -> AsyncIterator[Topology]:
    env = clean_env(CARECALL_SIGNING_KEY=str(signing_key),
                    CARECALL_RESUME_SECRET=secrets.token_hex(32),
                    CARECALL_REDIS_PREFIX=redis_prefix,
                    CARECALL_OVERRUN_SECONDS=str(OVERRUN),
                    CARECALL_PUBLIC_URL="http://127.0.0.1:9")
    top = Topology(tmp_path, env, postgres_url, unused_port(), nodes=[None, None],
                   node_ports=[unused_port(), unused_port()])
    try:
        top.start_gate()
        await asyncio.to_thread(top.gate.ready)  # type: ignore[union-attr]
        for index in (0, 1):
            top.start_node(index)
        for node in top.nodes:
            await asyncio.to_thread(node.ready)  # type: ignore[union-attr]
        backends = [("127.0.0.1", port) for port in top.node_ports]
        top.fronts = [await Front(backends).start(), await Front(backends[::-1]).start()]
        yield top
    finally:
        for front in top.fronts:
            await front.close()
        for proc in (*top.nodes, top.gate):
            if proc is not None:
                proc.close()


async def final_record(top: Topology, booking_id: str, timeout: float = 60.0
                       ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = await asyncio.to_thread(top.record, booking_id)
        if record["status"] == "final" or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def peers(links: dict[str, str]) -> AsyncIterator[tuple[Peer, Peer]]:
    async with Peer(links["professional"]) as pro, Peer(links["client"]) as client:
        yield pro, client


async def test_a_call_with_one_party_on_each_node_completes(topology: Topology) -> None:
    """Professional on node 0, client on node 1: media connects, codes match, and the
    attendance record becomes final `completed` with one interval per party."""
    links = topology.book("across", now() - timedelta(seconds=30), now() + timedelta(seconds=5))
    async with peers(links) as (pro, client):
        await pro.wait_connected(30)
        await client.wait_connected(30)
        await pro.wait_for(lambda: pro.stats.frames_received > 20, 20, "frames")
        await client.wait_for(lambda: client.stats.frames_received > 20, 20, "frames")
        await pro.wait_for(lambda: pro.stats.verification_code is not None, 10, "a code")
        await client.wait_for(lambda: client.stats.verification_code is not None, 10, "code")
        assert pro.stats.verification_code == client.stats.verification_code
        await pro.leave()
        await client.leave()
    ports = topology.node_ports
    assert (topology.fronts[0].chosen[0], topology.fronts[1].chosen[0]) == (ports[0], ports[1])
    record = await final_record(topology, "across")
    assert (record["status"], record["outcome"], record["media_connected"]) == (
        "final", "completed", True)
    for role in ("professional", "client"):
        assert len(record["parties"][role]["intervals"]) == 1, record


async def test_a_second_connection_on_the_other_node_replaces_the_first(
        topology: Topology) -> None:
    """The professional joins again through the client's front (node 1): the first
    connection, on node 0, is closed with 4409."""
    links = topology.book("twice", now(), now() + timedelta(minutes=30))
    async with Peer(links["professional"]) as first:
        await first.wait_admitted(20)
        again = via(links["professional"], topology.fronts[1].port)
        async with Peer(again) as second:
            await second.wait_admitted(20)
            with pytest.raises(PeerError, match="closed: 4409 replaced"):
                await first.stay(15)
            await second.leave()


async def test_a_cancel_mid_call_closes_both_nodes_parties_within_5_s(
        topology: Topology) -> None:
    """Cancelling at the gate closes the parties on both nodes with 4403 within 5 s."""
    links = topology.book("cancel", now(), now() + timedelta(minutes=30))
    async with peers(links) as (pro, client):
        await pro.wait_connected(30)
        await client.wait_connected(30)
        started = time.monotonic()
        await asyncio.to_thread(topology.api, "POST", "/api/v1/bookings/cancel/cancel",
                                {"by": "client"})
        for peer in (pro, client):
            with pytest.raises(PeerError, match="closed: 4403 booking_cancelled"):
                await peer.stay(10)
        assert time.monotonic() - started < 5.0


async def test_kill_9_of_a_node_mid_call_moves_its_party_to_the_other(
        topology: Topology) -> None:
    """Node 0 is killed with SIGKILL mid-call: its party resumes through its front on node
    1, media keeps flowing on the same peer connection, and attendance keeps one interval
    per party (no false leave)."""
    links = topology.book("crash", now() - timedelta(seconds=10), now() + timedelta(seconds=40))
    async with peers(links) as (pro, client):
        await pro.wait_connected(30)
        await client.wait_connected(30)
        await asyncio.sleep(1)
        node = topology.nodes[0]
        assert node is not None
        node.proc.kill()
        await asyncio.to_thread(node.proc.wait, 10)
        before = (pro.stats.frames_received, client.stats.frames_received)
        await pro.wait_for(lambda: pro.stats.reconnects >= 1, 15, "the professional's reconnect")
        await asyncio.sleep(4)
        # The professional is on node 1 now.
        assert topology.fronts[0].chosen[-1] == topology.node_ports[1]
        assert pro.stats.frames_received > before[0] + 30
        assert client.stats.frames_received > before[1] + 30
        assert pro.stats.connections == client.stats.connections == 1
        assert pro.stats.max_frame_gap < 1.0, pro.stats.max_frame_gap
        await pro.leave()
        await client.leave()
    record = await final_record(topology, "crash")
    assert record["outcome"] == "completed", record
    for role in ("professional", "client"):
        intervals = record["parties"][role]["intervals"]
        assert len(intervals) == 1 and intervals[0]["to"] is not None, (role, intervals)


async def test_the_gate_down_for_30_s_loses_no_attendance(topology: Topology) -> None:
    """With the gate stopped for 30 s the call goes on; what happened meanwhile (the
    client leaves, then the professional) reaches the gate once it is back, and the
    record is final and right."""
    links = topology.book("outage", now() - timedelta(seconds=10), now() + timedelta(seconds=20))
    async with peers(links) as (pro, client):
        await pro.wait_connected(30)
        await client.wait_connected(30)
        gate = topology.gate
        assert gate is not None
        assert gate.terminate() == 0
        stopped = time.monotonic()
        received = pro.stats.frames_received
        await asyncio.sleep(5)
        assert pro.stats.frames_received > received + 30  # the call goes on
        await client.leave()
        await asyncio.sleep(2)
        await pro.leave()
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
    gate.close()
    topology.start_gate()
    await asyncio.to_thread(topology.gate.ready)  # type: ignore[union-attr]
    record = await final_record(topology, "outage")
    assert (record["status"], record["outcome"]) == ("final", "completed"), record
    for role in ("professional", "client"):
        intervals = record["parties"][role]["intervals"]
        assert len(intervals) == 1 and intervals[0]["to"] is not None, (role, intervals)
    left = {role: datetime.fromisoformat(record["parties"][role]["intervals"][0]["to"])
            for role in ("professional", "client")}
    assert left["client"] < left["professional"]


def test_signalling_refuses_to_start_without_what_it_needs(tmp_path: Path) -> None:
    """Without --gate-url, or without a shared resume secret, a node says so in one line."""
    cases = [
        (["signalling", "--redis", REDIS_URL, "--api-key", KEY], {},
         "a signalling node needs --gate-url"),
        (["signalling", "--gate-url", "http://127.0.0.1:9", "--redis", REDIS_URL,
          "--api-key", KEY], {}, "CARECALL_RESUME_SECRET must be set"),
        (["signalling", "--gate-url", "http://127.0.0.1:9", "--redis", REDIS_URL,
          "--api-key", KEY], {"CARECALL_RESUME_SECRET": "short"}, "at least 32 characters"),
    ]
    for args, extra, message in cases:
        served = Served([*args, "--var-dir", str(tmp_path / "v")], tmp_path,
                        clean_env(**extra))
        try:
            status = served.proc.wait(timeout=60)
            stderr = served.stderr()
        finally:
            served.close()
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert status == 2, stderr
        assert len(lines) == 1 and lines[0].startswith("carecall: ") and message in lines[0], \
            stderr



async def test_two_gates_on_one_database_send_every_email_exactly_once(
        tmp_path: Path, postgres_url: str, signing_key: Path) -> None:
    """Two gate processes share one PostgreSQL; bookings go to both; the mail server is
    down at first, then up: each email arrives once (by Message-ID), none is lost."""
    from tests.test_notifications import SmtpServer

    smtp = SmtpServer()
    env = clean_env(CARECALL_SIGNING_KEY=str(signing_key), CARECALL_SMTP_HOST="127.0.0.1",
                    CARECALL_SMTP_PORT=str(smtp.port))
    gates = [Served(["gate", "--port", "0", "--db", postgres_url, "--api-key", KEY,
                     "--var-dir", str(tmp_path / f"gate{i}")], tmp_path, env) for i in (0, 1)]
    try:
        urls = [await asyncio.to_thread(gate.ready) for gate in gates]

        def call(index: int, method: str, path: str, body: Any = None) -> Any:
            status, data = request_json(method, urls[index] + path, body, AUTH)
            assert status in (200, 201), (status, data)
            return data

        call(0, "PUT", "/api/v1/professionals/pro-1", {
            "name": "Pro", "email": "pro@example.org", "timezone": "UTC"})
        call(1, "PUT", "/api/v1/clients/cli-1", {
            "name": "Client", "email": "client@example.org", "timezone": "UTC",
            "hub_id": None})
        start = now() + timedelta(days=2)
        for number in range(12):
            begins = start + timedelta(hours=number)
            await asyncio.to_thread(call, number % 2, "PUT", f"/api/v1/bookings/m-{number}", {
                "professional_id": "pro-1", "client_id": "cli-1",
                "starts_at": begins.isoformat(),
                "ends_at": (begins + timedelta(minutes=50)).isoformat(),
                "funding": "private", "source": "direct"})
        await asyncio.sleep(3)  # both gates try, fail, and back off
        assert smtp.inbox.raw == []
        smtp.start()
        deadline = time.monotonic() + 60
        while len(smtp.inbox.raw) < 24 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # long enough for a duplicate to show up
        ids = [str(message["Message-ID"]) for message in smtp.inbox.messages]
        assert len(ids) == 24, len(ids)
        assert len(set(ids)) == 24
    finally:
        for gate in gates:
            gate.close()
        smtp.stop()


async def test_a_node_whose_gate_is_away_says_try_again_later(
        tmp_path: Path, redis_prefix: str) -> None:
    """A node that cannot reach the gate closes joins with 1013 gate_unavailable (clients
    retry it), and that never counts as a refused join: no 4429 after many tries."""
    import aiohttp

    env = clean_env(CARECALL_RESUME_SECRET=secrets.token_hex(32),
                    CARECALL_REDIS_PREFIX=redis_prefix)
    node = Served(["signalling", "--port", "0", "--gate-url",
                   f"http://127.0.0.1:{unused_port()}", "--redis", REDIS_URL, "--api-key", KEY,
                   "--var-dir", str(tmp_path / "node")], tmp_path, env)
    try:
        url = await asyncio.to_thread(node.ready)
        import jwt

        # Well formed and signed, by a key the node has never been told of: only the
        # gate's JWKS could say whether it is one of the gate's.
        token = jwt.encode({"sub": "x"}, Ed25519PrivateKey.generate(), algorithm="EdDSA",
                           headers={"kid": "unknown-kid"})
        codes = []
        async with aiohttp.ClientSession() as session:
            for _ in range(25):
                async with session.ws_connect(f"{url}/ws") as ws:
                    await ws.send_json({"type": "hello", "token": token, "agent": "browser"})
                    received = [json_message(m) async for m in ws]
                    codes.append((ws.close_code, [m.get("code") for m in received]))
        assert set(map(str, codes)) == {str((1013, ["gate_unavailable"]))}, codes
    finally:
        node.close()


async def test_serve_with_redis_shares_rooms_with_a_node_beside_it(
        tmp_path: Path, redis_prefix: str) -> None:
    """`carecall serve --redis` keeps its gate in process and its rooms in Redis, so a
    `carecall signalling` node beside it serves the other party of the same room."""
    secret = secrets.token_hex(32)
    env = clean_env(CARECALL_RESUME_SECRET=secret, CARECALL_REDIS_PREFIX=redis_prefix)
    served = Served(["serve", "--port", "0", "--api-key", KEY, "--redis", REDIS_URL,
                     "--var-dir", str(tmp_path / "serve")], tmp_path, env)
    node = None
    try:
        serve_url = await asyncio.to_thread(served.ready)
        node = Served(["signalling", "--port", "0", "--gate-url", serve_url, "--redis",
                       REDIS_URL, "--api-key", KEY, "--var-dir", str(tmp_path / "node")],
                      tmp_path, env)
        node_url = await asyncio.to_thread(node.ready)
        top = Topology(tmp_path, env, "", int(urlsplit(serve_url).port or 0))
        backends = [urlsplit(serve_url).port, urlsplit(node_url).port]
        top.fronts = [await Front([("127.0.0.1", p) for p in backends if p]).start(),
                      await Front([("127.0.0.1", p) for p in backends[::-1] if p]).start()]
        try:
            links = top.book("beside", now(), now() + timedelta(minutes=30))
            async with peers(links) as (pro, client):
                await pro.wait_connected(30)
                await client.wait_connected(30)
                await client.wait_for(lambda: client.stats.frames_received > 20, 20, "frames")
                await pro.leave()
                await client.leave()
            assert top.fronts[1].chosen[0] == backends[1]  # the client was on the node
        finally:
            for front in top.fronts:
                await front.close()
    finally:
        for proc in (node, served):
            if proc is not None:
                proc.close()


def json_message(message: Any) -> dict[str, Any]:
    import aiohttp

    if message.type is aiohttp.WSMsgType.TEXT:
        return dict(json.loads(message.data))
    return {}
