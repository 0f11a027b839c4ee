"""Privacy of the logs (docs/contract.md section 4, STYLE.md "Comments, docs, logs").

A whole scripted session runs against the service with every logger at DEBUG: two
parties join, exchange an offer and an answer with realistic SDP, trade candidates,
verify each other with ``x-verify``, report media, one drops and resumes, both say bye;
forged and malformed joins are refused; the server shuts down. No log record may then
contain SDP, candidates, an IP address, a join token, the TURN credential or secret, or a
resume token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from booking_gate.config import GateConfig
from carecall.serve import build_app
from signalling.appkeys import REPORTER
from signalling.config import SignallingConfig
from signalling.ice import IceConfig
from tests.conftest import API_KEY, GateClient, book_now

PEER_IP = "192.0.2.55"
TURN_SECRET = "s3cret"
ICE_PWD = "P2uYro0UCOQ4zxjKXaWCBui1"
FINGERPRINT = ("D1:2C:7F:9A:0B:3E:44:51:6C:88:92:A4:B7:C3:D5:E9:F0:12:34:56:78:9A:BC:DE:"
               "F1:23:45:67:89:AB:CD:EF")

SDP_OFFER = "\r\n".join([
    "v=0",
    f"o=- 4611731400430051336 2 IN IP4 {PEER_IP}",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=msid-semantic: WMS stream",
    "m=audio 61234 UDP/TLS/RTP/SAVPF 111",
    f"c=IN IP4 {PEER_IP}",
    "a=rtcp:9 IN IP4 0.0.0.0",
    f"a=candidate:842163049 1 udp 1677729535 {PEER_IP} 61234 typ srflx raddr 10.0.0.5 "
    "rport 61234 generation 0",
    "a=ice-ufrag:EsAw",
    f"a=ice-pwd:{ICE_PWD}",
    f"a=fingerprint:sha-256 {FINGERPRINT}",
    "a=setup:actpass",
    "a=mid:0",
    "a=sendrecv",
    "a=rtpmap:111 opus/48000/2",
    "m=video 61234 UDP/TLS/RTP/SAVPF 96",
    f"c=IN IP4 {PEER_IP}",
    "a=mid:1",
    "a=rtpmap:96 VP8/90000",
    "",
])
SDP_ANSWER = SDP_OFFER.replace("a=setup:actpass", "a=setup:active").replace(
    "4611731400430051336", "7309428816534701192")
CANDIDATE = (f"candidate:842163049 1 udp 1677729535 {PEER_IP} 61234 typ srflx "
             "raddr 10.0.0.5 rport 61234 generation 0 ufrag EsAw network-id 1")
SDP_MARKERS = ("v=0", "a=fingerprint", "a=candidate", "candidate:", "a=ice-pwd", ICE_PWD,
               FINGERPRINT)

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = set(vars(logging.LogRecord("n", 0, "p", 0, "m", None, None))) | {"message",
                                                                             "asctime"}


@pytest.fixture
def signalling_config(tmp_path: Path) -> SignallingConfig:
    return SignallingConfig(
        public_url="", var_dir=tmp_path / "var",
        ice=IceConfig(turn_urls=("turn:127.0.0.1:3478",), turn_secret=TURN_SECRET))


@pytest.fixture
async def service(tmp_path: Path, signalling_config: SignallingConfig,
                  aiohttp_client: Callable[..., Any]) -> AsyncIterator[GateClient]:
    """The service run as ``carecall serve`` runs it: no aiohttp access log."""
    config = GateConfig(db_url=f"sqlite:///{tmp_path / 'gate.db'}", public_url="",
                        api_key=API_KEY, var_dir=tmp_path / "var")
    server = TestServer(build_app(config, signalling_config), host="127.0.0.1")
    await server.start_server(access_log=None)  # as carecall.serve.run builds its runner
    client: GateClient = await aiohttp_client(server)
    yield client


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a log handler could write for ``record``."""
    texts = [record.getMessage(), str(record.msg), repr(record.args)]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    texts += [str(record.exc_text or ""), str(record.stack_info or "")]
    texts += [f"{key}={value!r}" for key, value in vars(record).items()
              if key not in _STANDARD]
    return texts


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def expect(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    message = await receive(ws)
    assert message["type"] == kind, message
    return message


async def join(service: GateClient, token: str, agent: str, resume: str | None = None
               ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await service.ws_connect("/ws")
    hello: dict[str, Any] = {"type": "hello", "token": token, "agent": agent,
                             "can_rollback": agent == "browser"}
    if resume:
        hello["resume"] = resume
    await ws.send_json(hello)
    return ws, await expect(ws, "welcome")


async def refused(service: GateClient, *frames: dict[str, Any]) -> int | None:
    ws = await service.ws_connect("/ws")
    for frame in frames:
        await ws.send_json(frame)
    async for _ in ws:
        pass
    return ws.close_code


async def scripted_session(service: GateClient) -> list[str]:
    """Run a whole call and the refusals around it; return the secrets it handled."""
    room = await book_now(service)
    pro, pro_welcome = await join(service, room["professional"], "browser")
    cli, cli_welcome = await join(service, room["client"], "aiortc")
    await expect(pro, "peer-joined")
    turn = [s for s in cli_welcome["ice_servers"] if "credential" in s]
    assert turn and turn[0]["urls"] == ["turn:127.0.0.1:3478"]

    await pro.send_json({"type": "signal", "description": {"type": "offer", "sdp": SDP_OFFER}})
    assert (await expect(cli, "signal"))["description"]["sdp"] == SDP_OFFER
    await cli.send_json({"type": "signal", "description": {"type": "answer",
                                                           "sdp": SDP_ANSWER}})
    assert (await expect(pro, "signal"))["description"]["sdp"] == SDP_ANSWER
    for sender, receiver in ((pro, cli), (cli, pro)):
        await sender.send_json({"type": "signal", "candidate": {
            "candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}})
        assert (await expect(receiver, "signal"))["candidate"]["candidate"] == CANDIDATE
        await sender.send_json({"type": "x-verify", "code": "4711", "fingerprint": FINGERPRINT})
        assert (await expect(receiver, "x-verify"))["code"] == "4711"
        await sender.send_json({"type": "media", "state": "connected"})

    # The client's connection drops and it resumes.
    await cli.close()
    assert (await expect(pro, "peer-left"))["reason"] == "dropped"
    cli, again = await join(service, room["client"], "aiortc", resume=cli_welcome["resume"])
    assert (await expect(pro, "peer-joined"))["resumed"] is True
    await cli.send_json({"type": "signal", "candidate": None})
    assert (await expect(pro, "signal"))["candidate"] is None

    for ws in (cli, pro):
        await ws.send_json({"type": "media", "state": "disconnected"})
        await ws.send_json({"type": "bye"})
        async for _ in ws:
            pass
        assert ws.close_code == 1000

    # Refusals: forged and garbage tokens, and malformed messages echoing secrets.
    claims = jwt.decode(room["client"], options={"verify_signature": False})
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA")
    assert await refused(service, {"type": "hello", "token": forged}) == 4401
    assert await refused(service, {"type": "hello", "token": f"x{PEER_IP}x"}) == 4401
    assert await refused(service, {"type": room["professional"]}) == 4400
    pro, _ = await join(service, room["professional"], "browser")
    await pro.send_json({"type": "signal", "description": {"type": SDP_OFFER, "sdp": ""}})
    async for _ in pro:
        pass
    assert pro.close_code == 4400

    await asyncio.wait_for(service.app[REPORTER].drain(), 5)
    secrets_seen = [room["professional"], room["client"], forged, TURN_SECRET,
                    turn[0]["credential"]]
    # Signatures and MACs: any 12-character run of one (72 bits) counts as a leak.
    macs = [token.rsplit(".", 1)[1] for token in (room["professional"], room["client"], forged)]
    macs += [welcome["resume"].rsplit(".", 1)[1] for welcome in (pro_welcome, cli_welcome, again)]
    macs.append(turn[0]["credential"])
    secrets_seen += [welcome["resume"] for welcome in (pro_welcome, cli_welcome, again)]
    secrets_seen += [mac[i:i + 12] for mac in macs for i in range(len(mac) - 11)]
    return secrets_seen


async def test_logs_carry_no_sdp_addresses_tokens_or_credentials(
        service: GateClient, caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, a whole session leaves no SDP, IP, token, TURN secret or resume in the logs."""
    caplog.set_level(logging.DEBUG)
    for name in ("signalling", "booking_gate", "carecall", "aiohttp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    secrets_seen = await scripted_session(service)
    await service.close()  # shutdown and clean-up log too

    records = caplog.records
    from_signalling = [r for r in records if r.name.startswith("signalling")
                       and r.levelno == logging.INFO]
    assert any("joined room" in r.getMessage() for r in from_signalling), records
    assert any("join refused" in r.getMessage() for r in from_signalling), records
    forbidden = [*SDP_MARKERS, PEER_IP, "127.0.0.1", *secrets_seen]
    leaks = [(record.name, record.getMessage(), needle)
             for record in records for text in record_texts(record)
             for needle in forbidden if needle in text]
    assert not leaks, leaks[:5]
