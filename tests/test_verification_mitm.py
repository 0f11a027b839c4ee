"""A malicious signalling relay that terminates DTLS with each party cannot make the
verification codes match.

``MitmRelay`` is a test-only attacker: it speaks the /ws protocol, answers each party's
offer with a peer connection of its own (so each party sees the relay's DTLS
certificate), bridges the video between its two connections, and forwards the
verification messages unchanged (the best it can do without knowing the nonces).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from peer import Peer

pytestmark = pytest.mark.timeout(60)


class ForwardTrack(MediaStreamTrack):
    """Sends whatever frames the relay received from the other party."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=30)

    async def recv(self) -> Any:
        return await self.queue.get()


class MitmRelay:
    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.forward = {"professional": ForwardTrack(), "client": ForwardTrack()}
        self.pcs: list[RTCPeerConnection] = []
        self.tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def other(role: str) -> str:
        return "client" if role == "professional" else "professional"

    async def pump(self, track: MediaStreamTrack, into: ForwardTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not into.queue.full():
                into.queue.put_nowait(frame)

    async def answer(self, role: str, sdp: str) -> dict[str, Any]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        # What this party receives from "the other party" is the relay's re-encoding.
        pc.addTrack(self.forward[role])

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                task = asyncio.create_task(self.pump(track, self.forward[self.other(role)]))
                self.tasks.add(task)

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"type": "signal", "from": self.other(role),
                "description": {"type": "answer", "sdp": pc.localDescription.sdp}}

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # hello
        role = "professional" if "professional" not in self.sockets else "client"
        self.sockets[role] = ws
        # Both parties are told the other is present and that they are impolite, so
        # each sends its offer to the relay.
        await ws.send_json({"type": "welcome", "role": role, "session_id": role,
                            "resume": "none", "polite": False, "peer_present": True,
                            "ice_servers": [], "booking": {}})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            description = data.get("description") or {}
            if data["type"] == "signal" and description.get("type") == "offer":
                await ws.send_json(await self.answer(role, description["sdp"]))
            elif data["type"].startswith("x-"):
                target = self.sockets.get(self.other(role))
                if target is not None:
                    await target.send_json({**data, "from": role})
        return ws

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for pc in self.pcs:
            await pc.close()


async def test_a_relay_terminating_both_dtls_sessions_yields_different_codes() -> None:
    """Media flows through the attacker, yet the two parties' codes differ."""
    relay = MitmRelay()
    app = web.Application()
    app.router.add_get("/ws", relay.handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}/s/room"
    try:
        async with Peer(f"{base}#t=pro-token") as pro:
            await pro.wait_admitted(10)
            async with Peer(f"{base}#t=client-token") as client:
                await pro.wait_connected(20)
                await client.wait_connected(20)
                await pro.wait_for(lambda: pro.stats.frames_received >= 5, 20, "frames")
                await client.wait_for(lambda: client.stats.frames_received >= 5, 20, "frames")
                await pro.wait_for(lambda: pro.stats.verification_code is not None, 10, "code")
                await client.wait_for(lambda: client.stats.verification_code is not None,
                                      10, "code")
                assert pro.stats.verification_code != client.stats.verification_code
                await client.close()
            await pro.close()
    finally:
        await relay.close()
        await server.close()
