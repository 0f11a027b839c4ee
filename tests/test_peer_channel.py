"""The call's data channel between two headless peers through the real server, in process:
chat, state, stats and the audio-only request (docs/protocol.md, "The call's data
channel"), and that none of it reaches the server's logs or database."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from peer import Peer
from peer.channel import Booked, Quality, State
from signalling.appkeys import REPORTER
from tests.conftest import (
    AUTH,
    FakeClock,
    GateClient,
    book_now,
    booking_body,
    seed_people,
)

pytestmark = pytest.mark.timeout(90)

# Distinctive, so that finding it anywhere is a leak and not a coincidence.
SECRET_CHAT = "I have not told anyone about the lighthouse-umbrella-4729"
REPLY = "Thank you for telling me: marmalade-octopus-1183"


async def both_open(pro: Peer, client: Peer) -> None:
    for peer in (pro, client):
        await peer.wait_connected(20)
        await peer.wait_for(lambda p=peer: p.channel_open, 10, "the data channel")


def stats_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "channel-stats" and not t.done()]


async def test_chat_goes_both_ways_and_is_printed_as_one_line(service: GateClient) -> None:
    """Each side's chat arrives at the other with the sender's role, is printed as
    ``chat from <role>: <text>`` and counted in the stats; a ``booked`` is kept and
    printed; the stats timers end with the peers."""
    room = await book_now(service)
    said: dict[str, list[str]] = {"professional": [], "client": []}
    async with Peer(room["links"]["professional"], notify=said["professional"].append,
                    chat=["hello from the start"]) as pro, \
            Peer(room["links"]["client"], notify=said["client"].append) as client:
        await both_open(pro, client)
        await client.send_chat(SECRET_CHAT)
        await pro.send_chat("line one\nline two")
        await pro.wait_for(lambda: len(pro.chats) == 1, 10, "the client's chat")
        await client.wait_for(lambda: len(client.chats) == 2, 10, "the professional's chats")
        assert [(role, text) for role, text, _at in pro.chats] == [("client", SECRET_CHAT)]
        assert [(role, text) for role, text, _at in client.chats] == [
            ("professional", "hello from the start"), ("professional", "line one\nline two")]
        assert f"chat from client: {SECRET_CHAT}" in said["professional"]
        assert "chat from professional: line one line two" in said["client"]
        assert (pro.stats.chat_received, client.stats.chat_received) == (1, 2)
        assert pro.stats.to_json()["chat_received"] == 1
        assert stats_tasks(), "each open channel reports its path"
        # What the page sends when the professional books the next session in the call.
        starts = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
        assert pro._channel_send(Booked(starts, starts + timedelta(minutes=50), "sponsored"))
        await client.wait_for(lambda: client.booked != [], 10, "the booking")
        assert client.booked[0].starts_at == starts
        assert ("the professional booked the next session: 2026-12-10T09:00:00+00:00"
                in said["client"])
        await client.leave()
        await pro.leave()
    assert stats_tasks() == []


async def test_state_and_stats_arrive_with_a_grade(service: GateClient) -> None:
    """On open each side sends its state (an audio-only peer: camera and video false);
    every 2 s its stats, with a grade; both land in --stats-json with the frame size."""
    room = await book_now(service)
    async with Peer(room["links"]["professional"]) as pro, \
            Peer(room["links"]["client"], audio_only=True) as client:
        await both_open(pro, client)
        await pro.wait_for(lambda: pro.remote_state is not None, 10, "the client's state")
        await client.wait_for(lambda: client.remote_state is not None, 10, "the pro's state")
        assert pro.remote_state == State(mic=True, camera=False, video=False, screen=False)
        assert client.remote_state == State(mic=True, camera=True, video=True, screen=False)
        await pro.wait_for(lambda: pro.remote_stats is not None, 10, "the client's stats")
        await client.wait_for(lambda: client.remote_stats is not None, 10, "the pro's stats")
        for peer in (pro, client):
            assert peer.remote_stats is not None and peer.remote_stats.quality in Quality
            assert peer.remote_stats.rtt_ms is None or peer.remote_stats.rtt_ms < 400
        # The client receives the professional's 15 fps test pattern: measured, not null.
        assert client.remote_stats is not None and pro.remote_stats is not None
        assert pro.remote_stats.in_fps is not None and pro.remote_stats.in_fps > 5
        report = client.stats.to_json()
        assert report["remote_state"] == {"mic": True, "camera": True, "video": True,
                                          "screen": False}
        assert report["remote_quality"] in ("good", "fair", "poor")
        assert report["last_frame_size"] == [320, 240]
        assert pro.stats.to_json()["last_frame_size"] is None  # the client sends no video
        await client.leave()
        await pro.leave()


async def test_chat_reaches_neither_the_server_logs_nor_the_database(
        tmp_path: Path, service: GateClient, caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG on every logger, a call with chat both ways leaves the chat text in no log
    record and in no byte of the SQLite files."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    room = await book_now(service)
    quiet: list[str] = []  # the peers' terminal lines, not a log
    async with Peer(room["links"]["professional"], notify=quiet.append) as pro, \
            Peer(room["links"]["client"], notify=quiet.append) as client:
        await both_open(pro, client)
        await client.send_chat(SECRET_CHAT)
        await pro.send_chat(REPLY)
        await pro.wait_for(lambda: pro.chats != [], 10, "the client's chat")
        await client.wait_for(lambda: client.chats != [], 10, "the professional's chat")
        await client.leave()
        await pro.leave()
    await asyncio.wait_for(service.app[REPORTER].drain(), 10)
    await service.close()
    assert any(r.name.startswith("signalling") for r in caplog.records), "logs were captured"
    needles = ("lighthouse-umbrella", "marmalade-octopus")
    leaks = [(r.name, needle) for r in caplog.records for needle in needles
             if needle in r.getMessage() or needle in (r.exc_text or "")]
    assert not leaks, leaks[:5]
    files = sorted(tmp_path.glob("gate.db*"))
    assert files, "the database file exists"
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, path.name
            assert needle.encode("utf-16-le") not in data, path.name


# -- audio-only, with the server on a fake clock so the record's seconds are exact -----------




async def frames_stall(peer: Peer, seconds: float = 2.0) -> tuple[int, int]:
    """(video, audio) frames that arrived during ``seconds``."""
    video, audio = peer.stats.frames_received, peer.stats.audio_frames_received
    await asyncio.sleep(seconds)
    return (peer.stats.frames_received - video, peer.stats.audio_frames_received - audio)


async def test_audio_only_request_stops_the_other_sides_video_and_is_recorded(
        timed: GateClient, clock: FakeClock) -> None:
    """The professional asks for audio-only: the client stops sending video (no
    renegotiation), so the professional's video frames stop while audio keeps coming,
    and both report video false; the final record counts that minute as audio-only.
    Asking for video again brings the frames back."""
    await seed_people(timed, credits=5)
    response = await timed.put("/api/v1/bookings/b-1", headers=AUTH,
                               json=booking_body(clock.now))
    assert response.status == 201, await response.text()
    links = await (await timed.post("/api/v1/bookings/b-1/links", headers=AUTH)).json()
    async with Peer(links["professional"]["url"]) as pro, \
            Peer(links["client"]["url"]) as client:
        await both_open(pro, client)
        await pro.wait_for(lambda: pro.stats.frames_received > 10, 15, "video at the pro")
        clock.advance(seconds=60)  # a minute with video both ways

        await pro.set_audio_only(True)
        await pro.wait_for(lambda: pro.remote_state is not None
                           and not pro.remote_state.video, 10, "the client's audio-only")
        assert client.audio_only and client.remote_state is not None
        await asyncio.sleep(1.0)  # frames already on their way
        video, audio = await frames_stall(pro)
        assert video == 0, f"{video} video frames after audio-only"
        assert audio > 40, f"only {audio} audio frames in 2 s"
        assert pro.stats.connections == client.stats.connections == 1, "no renegotiation"
        clock.advance(seconds=60)  # a minute audio-only

        await pro.set_audio_only(False)
        await pro.wait_for(lambda: pro.remote_state is not None and pro.remote_state.video,
                           10, "the client's video again")
        video, _audio = await frames_stall(pro)
        assert video > 10, f"only {video} video frames after asking for video again"
        clock.advance(seconds=30)
        await client.leave()
        await pro.leave()
    await asyncio.wait_for(timed.app[REPORTER].drain(), 10)
    clock.advance(hours=2)  # past ends_at and the overrun: the record is final
    response = await timed.get("/api/v1/bookings/b-1/attendance", headers=AUTH)
    record: dict[str, Any] = await response.json()
    assert record["status"] == "final", record
    assert (record["audio_only_seconds"], record["video_seconds"]) == (60, 90), record
