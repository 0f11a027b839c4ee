"""How a session was held, end to end: two raw WebSocket parties report their media path
(``media`` v2: ``video``, ``failed`` with a ``cause``) to a real server on 127.0.0.1
(gate + signalling in one app, SQLite), driven by a fake clock, and the final
attendance record shows video and audio-only seconds, or names the failure's cause."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from booking_gate.rules import FAILURE_SENTENCES, RULE_VERSION
from signalling.appkeys import REPORTER
from tests.conftest import (
    AUTH,
    FakeClock,
    GateClient,
    booking_body,
    seed_people,
)

WS = aiohttp.ClientWebSocketResponse
READ_LIMIT = 10.0




async def receive_json(ws: WS) -> dict[str, Any]:
    msg = await ws.receive(timeout=READ_LIMIT)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type!r}"
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def room(client: GateClient, clock: FakeClock) -> tuple[WS, WS]:
    """A 50-minute booking starting now, both parties joined (professional first)."""
    await seed_people(client, credits=5)
    response = await client.put("/api/v1/bookings/b-1", headers=AUTH,
                                json=booking_body(clock.now))
    assert response.status == 201, await response.text()
    links = await (await client.post("/api/v1/bookings/b-1/links", headers=AUTH)).json()
    sockets = []
    for role in ("professional", "client"):
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "hello", "token": links[role]["url"].split("#t=")[1],
                            "agent": "browser", "can_rollback": True})
        assert (await receive_json(ws))["type"] == "welcome"
        sockets.append(ws)
    professional, patient = sockets
    assert (await receive_json(professional))["type"] == "peer-joined"
    return professional, patient


async def say(sender: WS, receiver: WS, *messages: dict[str, Any]) -> None:
    """Send ``messages`` and wait until the server has handled them: it handles one
    connection's messages in order, so a relayed ``x-sync`` after them marks the point."""
    for message in messages:
        await sender.send_json(message)
    await sender.send_json({"type": "x-sync"})
    while (await receive_json(receiver))["type"] != "x-sync":
        pass


async def final_record(client: GateClient, clock: FakeClock, *sockets: WS) -> dict[str, Any]:
    """Everyone says bye, the window closes, and the record is read (and so finalised)."""
    for ws in sockets:
        await ws.send_json({"type": "bye"})
        await asyncio.wait_for(ws.receive(), READ_LIMIT)  # the close after bye
    await asyncio.wait_for(client.app[REPORTER].drain(), READ_LIMIT)
    clock.advance(hours=2)  # past ends_at + the 15-minute overrun
    response = await client.get("/api/v1/bookings/b-1/attendance", headers=AUTH)
    assert response.status == 200, await response.text()
    record: dict[str, Any] = await response.json()
    assert record["status"] == "final" and record["rule_version"] == RULE_VERSION
    return record


def connected(video: bool) -> dict[str, Any]:
    return {"type": "media", "state": "connected", "video": video}


async def test_audio_only_then_video_is_split_in_the_record(
        timed: GateClient, clock: FakeClock) -> None:
    """Both connected without video for 2 minutes, then with video for 5: the final
    record has audio_only_seconds 120 and video_seconds 300, within together_seconds."""
    professional, patient = await room(timed, clock)
    await say(professional, patient, connected(False))
    await say(patient, professional, connected(False))
    clock.advance(seconds=120)
    await say(professional, patient, connected(True))
    # The professional alone sends video: still audio-only one way, for 30 s more.
    clock.advance(seconds=30)
    await say(patient, professional, connected(True))
    clock.advance(seconds=300)
    record = await final_record(timed, clock, professional, patient)
    assert record["outcome"] == "completed"
    assert (record["audio_only_seconds"], record["video_seconds"]) == (150, 300)
    assert record["together_seconds"] == 450


async def test_an_old_peer_that_sends_only_state_counts_as_video(
        timed: GateClient, clock: FakeClock) -> None:
    """A media message without ``video`` (a peer older than v2) means video."""
    professional, patient = await room(timed, clock)
    await say(professional, patient, {"type": "media", "state": "connected"})
    clock.advance(seconds=90)
    record = await final_record(timed, clock, professional, patient)
    assert (record["video_seconds"], record["audio_only_seconds"]) == (90, 0)


async def test_a_failure_with_a_cause_is_named_in_the_technical_failure(
        timed: GateClient, clock: FakeClock) -> None:
    """The client reports failed with no_relay_candidate and the media never connects:
    technical_failure, its explanation naming the client's missing relay, nothing
    billed."""
    professional, patient = await room(timed, clock)
    await say(patient, professional, {"type": "media", "state": "failed", "video": True,
                                      "cause": "no_relay_candidate"})
    clock.advance(seconds=60)
    record = await final_record(timed, clock, professional, patient)
    assert (record["outcome"], record["billable"], record["media_connected"]) == (
        "technical_failure", False, False)
    assert record["explanation"] == (
        "Both parties joined but the media never connected: "
        + FAILURE_SENTENCES["no_relay_candidate"].format(role="client")
        + ", so the session is not billable and the credit is released.")
    assert "relay server" in record["explanation"]
    assert (record["video_seconds"], record["audio_only_seconds"]) == (0, 0)


@pytest.mark.parametrize("message", [
    {"type": "media", "state": "connected", "video": "no"},
    {"type": "media", "state": "failed", "cause": "No Relay!"},
    {"type": "media", "state": "connected", "cause": "dtls_failed"},
], ids=["video-not-bool", "cause-malformed", "cause-without-failed"])
async def test_a_malformed_media_message_is_4400(timed: GateClient, clock: FakeClock,
                                                 message: dict[str, Any]) -> None:
    """A bad ``video`` or ``cause`` closes the connection with 4400 malformed_message."""
    professional, patient = await room(timed, clock)
    await patient.send_json(message)
    error = await receive_json(patient)
    assert (error["type"], error["code"]) == ("error", "malformed_message")
    await asyncio.wait_for(patient.receive(), READ_LIMIT)
    assert patient.close_code == 4400
    await professional.close()
