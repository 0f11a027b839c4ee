"""The log of a real `carecall serve --log-level DEBUG` holds no personal data.

Everything a hostile or ordinary day brings goes through one process: people with
names and emails, malformed HTTP from another address (garbage, an oversized header),
nested JSON on REST and on the socket, refused joins (forged token, wrong room, garbage)
and a complete call between two `carecall peer` processes. Its stderr, every library's
logger at DEBUG through carecall's own handler, must then contain no IP address, name,
email, SDP, candidate, join token, API key or traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from peer.client import parse_link
from tests.processes import Served, request_json, serve
from tests.test_peer_e2e import AUTH, KEY, now, run_peer, served_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

NAMES = ("Zelda Quillfeather", "Orrin Blackwood")
EMAILS = ("zelda.quill@example.org", "orrin.bw@example.net")
IPV4 = re.compile(r"(?<![\d.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d.])")
SDP_OR_CANDIDATE = ("v=0", "a=candidate", "candidate:", "typ host", "typ srflx", "ice-pwd",
                    "a=fingerprint", "IN IP4")


@pytest.fixture
def debug_server(tmp_path: Path) -> Iterator[Served]:
    with serve(["--port", "0", "--api-key", KEY, "--log-level", "DEBUG"], tmp_path,
               served_env()) as served:
        served.ready()
        yield served


def api(server: Served, method: str, path: str, body: object = None) -> dict[str, object]:
    status, data = request_json(method, server.base_url + path, body, AUTH)
    assert status in (200, 201), (status, data)
    return dict(data)


def book_named(server: Served) -> dict[str, str]:
    api(server, "PUT", "/api/v1/professionals/pro-priv", {
        "name": NAMES[0], "email": EMAILS[0], "timezone": "UTC"})
    api(server, "PUT", "/api/v1/clients/cli-priv", {
        "name": NAMES[1], "email": EMAILS[1], "timezone": "UTC", "hub_id": "acme"})
    api(server, "POST", "/api/v1/hubs/acme/credits", {"client_id": "cli-priv", "credits": 1})
    start = now() - timedelta(seconds=30)
    api(server, "PUT", "/api/v1/bookings/priv", {
        "professional_id": "pro-priv", "client_id": "cli-priv",
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=5)).isoformat(),
        "funding": "sponsored", "source": "hub"})
    links = api(server, "POST", "/api/v1/bookings/priv/links")
    return {role: str(links[role]["url"]) for role in ("professional", "client")}  # type: ignore[index]


def malformed_http(port: int) -> None:
    """Bytes that are not HTTP, from 127.0.0.2: each makes aiohttp log an error."""
    for payload in (b"GARBAGE \x00\x01\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * 20_000 + b"\r\n\r\n",
                    b"POST /api/v1/bookings HTTP/1.1\r\nContent-Length: -1\r\n\r\n"):
        with socket.socket() as sock:
            sock.settimeout(5)
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", port))
            sock.sendall(payload)
            with contextlib.suppress(OSError):
                sock.recv(4096)


async def refused_joins(base: str, token: str) -> None:
    ws_url = base.replace("http", "ws") + "/ws"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    hellos = [json.dumps({"type": "hello", "token": forged}),
              json.dumps({"type": "hello", "token": "not-a-jwt"}),
              '{"type": "hello", "token": ' + "[" * 5000,
              "garbage"]
    async with aiohttp.ClientSession() as session:
        for hello in hellos:
            ws = await session.ws_connect(ws_url)
            await ws.send_str(hello)
            await ws.receive(timeout=5)
            await ws.close()
        ws = await session.ws_connect(ws_url + "?room=someone-elses-room")
        await ws.send_str(json.dumps({"type": "hello", "token": token}))
        await ws.receive(timeout=5)
        await ws.close()
    status, _ = request_json("PUT", base + "/api/v1/clients/cli-priv", None, AUTH)
    assert status == 422
    request = urllib.request.Request(base + "/api/v1/clients/cli-priv", data=b"[" * 60_000,
                                     method="PUT", headers=AUTH)
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 422


async def test_a_debug_log_of_a_whole_day_holds_no_personal_data(
        debug_server: Served, tmp_path: Path) -> None:
    base = debug_server.base_url
    links = book_named(debug_server)
    tokens = [parse_link(link)[2] for link in links.values()]
    await asyncio.to_thread(malformed_http, int(base.rsplit(":", 1)[1]))
    await refused_joins(base, tokens[1])
    procs = {role: run_peer(links[role], tmp_path, role, "--duration", "4",
                            "--min-frames", "10") for role in links}
    for role, proc in procs.items():
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, (role, err[-2000:])
    assert debug_server.terminate() == 0
    log = debug_server.stderr()
    # DEBUG really was on, and the day really happened.
    assert " DEBUG " in log
    assert "joined room" in log and "join refused" in log
    forbidden = [*NAMES, *(n.split()[1] for n in NAMES), *EMAILS, "@example.", KEY,
                 *tokens, *(t[-40:] for t in tokens), "Traceback", *SDP_OR_CANDIDATE]
    hits = [(word, line) for line in log.splitlines() for word in forbidden if word in line]
    hits += [(ip, line) for line in log.splitlines() for ip in IPV4.findall(line)]
    assert not hits, "\n".join(f"{word!r}: {line[:300]}" for word, line in hits[:20])
