"""A hostile client against a real `carecall serve` under the common descriptor limit.

`prlimit --nofile=1024:1024` (soft and hard), as on many hosts: one client opening
1,100 silent sockets from 127.0.0.2 must not take the service from anyone else, and
400 WebSocket upgrades that never say hello must not keep out a real join from the
same address. Nested JSON is refused with the contract's codes, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from peer.client import parse_link
from tests.processes import Served, request_json, serve
from tests.test_peer_e2e import AUTH, KEY, book, now, run_peer, served_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

ATTACKER = "127.0.0.2"
WS_ATTACKER = "127.0.0.3"


def metric(base_url: str, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Served]:
    """`carecall serve` with 1,024 file descriptors, soft and hard."""
    prlimit = shutil.which("prlimit")
    assert prlimit, "prlimit (util-linux) is part of every Debian system"
    with serve(["--port", "0", "--api-key", KEY], tmp_path, served_env(),
               prefix=[prlimit, "--nofile=1024:1024"]) as served:
        served.ready()
        yield served


def open_silent(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections from ``ATTACKER`` that never send a byte."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.bind((ATTACKER, 0))
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()  # refused: also a way of not holding a descriptor
            continue
        socks.append(sock)
    return socks


async def test_silent_connections_from_one_address_leave_the_service_to_everyone_else(
        limited: Served, tmp_path: Path) -> None:
    host, port = "127.0.0.1", int(limited.base_url.rsplit(":", 1)[1])
    assert "holds up to 896 connections, 100 per address (file descriptor limit 1024)" \
        in limited.stderr()
    links = book(limited, "flood", now() - timedelta(seconds=30), now() + timedelta(minutes=2))
    socks = await asyncio.to_thread(open_silent, host, port, 1100)
    try:
        assert len(socks) >= 1000  # the kernel completed them; the server decides
        started = time.monotonic()
        status, health = await asyncio.to_thread(
            request_json, "GET", limited.base_url + "/healthz")
        assert (status, health["status"]) == (200, "ok")
        assert time.monotonic() - started < 5
        # The two parties, from 127.0.0.1, join and call while the sockets stay open.
        procs = {role: run_peer(links[role], tmp_path, role, "--duration", "5",
                                "--min-frames", "20", "--connect-timeout", "20")
                 for role in links}
        results = {role: await asyncio.to_thread(proc.communicate, timeout=60)
                   for role, proc in procs.items()}
        for role, proc in procs.items():
            assert proc.returncode == 0, (role, results[role][1][-2000:])
        stats = {role: json.loads((tmp_path / f"{role}.json").read_text()) for role in links}
        assert all(stats[role]["frames_received"] >= 20 for role in links)
        evicted = metric(limited.base_url, "carecall_http_connections_refused_total",
                         '{reason="evicted_idle"}')
        assert evicted >= 1000 - 100
        assert metric(limited.base_url, "carecall_http_connections_open") <= 100 + 10
    finally:
        for sock in socks:
            sock.close()
    log = limited.stderr().splitlines()
    assert len(log) < 100, "\n".join(log[:120])
    assert "Too many open files" not in "\n".join(log)
    assert "Traceback" not in "\n".join(log)


async def _upgrade(session: aiohttp.ClientSession, url: str
                   ) -> aiohttp.ClientWebSocketResponse | None:
    try:
        return await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=1))
    except (aiohttp.ClientError, OSError):
        return None  # refused at the door


async def _refusal(ws: aiohttp.ClientWebSocketResponse, within: float) -> str | None:
    """The error code the server sends ``ws`` within ``within`` seconds, else None.

    (Its close code cannot tell: the server drops a displaced socket right after the
    close frame, so aiohttp's reply fails and it reports 1006 instead.)"""
    try:
        msg = await ws.receive(timeout=within)
    except TimeoutError:
        return None
    if msg.type is aiohttp.WSMsgType.TEXT:
        return str(json.loads(msg.data).get("code"))
    return f"closed {ws.close_code}"


async def test_sockets_that_never_say_hello_are_capped_and_a_real_join_still_gets_in(
        limited: Served) -> None:
    links = book(limited, "waiting", now() - timedelta(seconds=30),
                 now() + timedelta(minutes=2))
    ws_url, _, token = parse_link(links["client"])
    connector = aiohttp.TCPConnector(local_addr=(WS_ATTACKER, 0), limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        opened = await asyncio.gather(*(_upgrade(session, ws_url) for _ in range(400)))
        sockets = [ws for ws in opened if ws is not None]
        codes = await asyncio.gather(*(_refusal(ws, 1.0) for ws in sockets))
        elapsed = time.monotonic() - started
        still_open = sum(1 for code in codes if code is None)
        # Well before the 5 s hello timeout, all but a handful were refused (4429).
        assert elapsed < 4.0
        assert still_open <= 16
        assert codes.count("rate_limited") >= len(sockets) - 16, codes
        assert len(sockets) >= 100
        assert metric(limited.base_url, "carecall_joins_waiting") <= 16
        # A real client from the same address, past all of that, is admitted.
        ws = await session.ws_connect(ws_url)
        await ws.send_str(json.dumps({"type": "hello", "token": token, "agent": "aiortc",
                                      "can_rollback": False}))
        welcome = await ws.receive_json(timeout=5)
        assert welcome["type"] == "welcome", welcome
        await ws.close()
        for other in sockets:
            await other.close()
    assert "Traceback" not in limited.stderr()


def _nested(depth: int) -> str:
    return "[" * depth


async def test_nested_json_is_422_on_rest_and_4400_on_the_socket(limited: Served) -> None:
    body = _nested(60_000).encode()
    request = urllib.request.Request(limited.base_url + "/api/v1/clients/c1", data=body,
                                     method="PUT", headers={**AUTH,
                                                            "Content-Type": "application/json"})
    try:
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        raise AssertionError("accepted")
    except urllib.error.HTTPError as error:
        status, answer = error.code, json.loads(error.read())
    assert status == 422
    assert answer["error"]["code"] == "invalid_request", answer
    assert "nested" in answer["error"]["message"]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(limited.base_url.replace("http", "ws") + "/ws")
        await ws.send_str('{"type": "hello", "token": ' + _nested(60_000))
        error_message = await ws.receive_json(timeout=5)
        assert (error_message["type"], error_message["code"]) == ("error", "malformed_message")
        closed = await ws.receive(timeout=5)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4400
        await ws.close()
    # The client resource was not created by the refused body.
    status, _ = await asyncio.to_thread(request_json, "GET",
                                        limited.base_url + "/api/v1/clients/c1/credits", None, AUTH)
    assert status == 404
    log = limited.stderr()
    assert "Traceback" not in log and "RecursionError" not in log
