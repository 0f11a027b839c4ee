"""peer/channel.py: the data channel's frames, the quality grades and the path figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCStatsReport,
)

from peer.channel import (
    MAX_CHAT_CHARS,
    MAX_FRAME_BYTES,
    AudioOnly,
    Booked,
    ChannelMessage,
    Chat,
    Quality,
    Sample,
    State,
    Stats,
    chat,
    encode,
    one_line,
    parse_frame,
    path_stats,
    quality_grade,
    sample_from_report,
)

AT = datetime(2026, 11, 23, 8, 0, 5, 250000, tzinfo=UTC)
G, F, P = Quality.GOOD, Quality.FAIR, Quality.POOR


# (rtt_ms, loss_pct, out_kbps, in_fps, in_video_kbps, sending_video, remote_camera_on)
@pytest.mark.parametrize(("figures", "grade"), [
    ((None, None, None, None, None, True, True), G),
    ((200, 2, 400, 15, 300, True, True), G),     # every limit itself is still good
    ((201, 0, None, None, None, True, True), F),
    ((400, 0, None, None, None, True, True), F),
    ((401, 0, None, None, None, False, False), P),
    ((10, 2.1, None, None, None, True, True), F),
    ((10, 8, None, None, None, True, True), F),
    ((10, 8.1, None, None, None, True, True), P),
    ((10, 0, 399, None, None, True, False), F),
    ((10, 0, 150, None, None, True, False), F),
    ((10, 0, 149, None, None, True, False), P),
    ((10, 0, 10, None, None, False, False), G),  # a low bitrate does not matter without video
    ((10, 0, None, 14.9, None, False, True), F),
    ((10, 0, None, 8, None, False, True), F),
    ((10, 0, None, 7.9, None, False, True), P),
    ((10, 0, None, 0, 0, False, False), G),      # no camera on the other side: no video figures
    ((10, 0, None, 30, 299, False, True), F),
    ((10, 0, None, 30, 100, False, True), F),
    ((10, 0, None, 30, 99, False, True), P),
    ((250, 9, None, None, None, False, False), P),  # the worst figure decides
])
def test_quality_grade_uses_the_protocol_thresholds(figures: tuple[Any, ...],
                                                    grade: Quality) -> None:
    """poor over 400 ms / 8 % / under 150 out / 100 in / 8 fps; fair over 200 ms / 2 % /
    under 400 / 300 / 15; unknown figures and figures that do not apply are not held
    against the path."""
    *numbers, sending, camera = figures
    assert quality_grade(*numbers, sending_video=sending, remote_camera_on=camera) is grade


@pytest.mark.parametrize("message", [
    State(mic=True, camera=False, video=False, screen=False),
    Stats(Quality.FAIR, rtt_ms=12.5, loss_pct=0.0, out_kbps=None, in_fps=15.0,
          in_video_kbps=None),
    AudioOnly(on=True),
    AudioOnly(on=False),
    Chat("a" * 64, "hei på deg ✓\nline two", AT),
    Booked(AT, AT.replace(hour=9), "sponsored"),
], ids=lambda m: type(m).__name__)
def test_every_built_message_parses_back_to_itself(message: ChannelMessage) -> None:
    """encode then parse_frame is the identity, and the frame names its kind in ``t``."""
    frame = encode(message)
    assert parse_frame(frame) == message
    assert isinstance(json.loads(frame)["t"], str)


def test_chat_frame_has_the_wire_fields() -> None:
    """A chat frame is {t, id, text, at} with ``at`` in RFC 3339 UTC."""
    assert json.loads(encode(chat("m1", "hello", AT))) == {
        "t": "chat", "id": "m1", "text": "hello", "at": "2026-11-23T08:00:05.250000Z"}


OK_CHAT = {"t": "chat", "id": "m1", "text": "hi", "at": "2026-11-23T08:00:00Z"}


@pytest.mark.parametrize("frame", [
    b'{"t": "state", "mic": true, "camera": true, "video": true, "screen": false}',
    "not json",
    "[1, 2]",
    '"state"',
    '{"type": "state"}',
    '{"t": 3}',
    '{"t": "future-kind", "x": 1}',
    '{"t": "state", "mic": true, "camera": true, "video": 1, "screen": false}',
    '{"t": "state", "mic": true}',
    '{"t": "stats", "quality": "great", "rtt_ms": 1}',
    '{"t": "stats", "quality": "good", "rtt_ms": "1"}',
    '{"t": "stats", "quality": "good", "rtt_ms": true}',
    '{"t": "audio-only", "on": "yes"}',
    json.dumps({**OK_CHAT, "text": ""}),
    json.dumps({**OK_CHAT, "text": "x" * (MAX_CHAT_CHARS + 1)}),
    json.dumps({**OK_CHAT, "id": "i" * 65}),
    json.dumps({**OK_CHAT, "id": 7}),
    json.dumps({**OK_CHAT, "at": "yesterday"}),
    json.dumps({**OK_CHAT, "at": "2026-11-23T08:00:00"}),  # no offset
    '{"t": "booked", "starts_at": "2026-11-30T08:00:00Z", "ends_at": "soon", '
    '"funding": "sponsored"}',
    json.dumps({"t": "state", "mic": True, "camera": True, "video": True, "screen": False,
                "pad": "x" * MAX_FRAME_BYTES}),
    "[" * 10_000,  # within 16 KiB, too deep for the parser
], ids=lambda f: str(f)[:40])
def test_frames_that_are_not_known_well_formed_messages_are_ignored(frame: str | bytes
                                                                    ) -> None:
    """Binary, not JSON, not an object, no ``t``, an unknown ``t``, bad fields, or over
    16 KiB: None (ignored), never an exception."""
    assert parse_frame(frame) is None


def test_the_limits_themselves_are_accepted() -> None:
    """A chat of 2,000 characters and an id of 64 parse; so does a frame of exactly
    16 KiB (a known kind with extra fields)."""
    long = {**OK_CHAT, "id": "i" * 64, "text": "x" * MAX_CHAT_CHARS}
    assert isinstance(parse_frame(json.dumps(long)), Chat)
    base = json.dumps({**OK_CHAT, "pad": ""})
    exact = json.dumps({**OK_CHAT, "pad": "p" * (MAX_FRAME_BYTES - len(base))})
    assert len(exact.encode()) == MAX_FRAME_BYTES
    assert isinstance(parse_frame(exact), Chat)


@pytest.mark.parametrize("text", ["", "x" * (MAX_CHAT_CHARS + 1)])
def test_chat_refuses_text_outside_the_limits(text: str) -> None:
    """Sending an empty or over-long chat is a ValueError naming the limit."""
    with pytest.raises(ValueError, match="1 to 2000 characters"):
        chat("m1", text, AT)


def test_one_line_removes_control_characters() -> None:
    """Printed chat is one line: newlines and escape sequences become spaces."""
    assert one_line("a\nb\x1b[2Jc\td") == "a b [2Jc d"


def report(*entries: Any) -> RTCStatsReport:
    stats = RTCStatsReport()
    for entry in entries:
        stats.add(entry)
    return stats


def inbound(kind: str, received: int, lost: int) -> RTCInboundRtpStreamStats:
    return RTCInboundRtpStreamStats(timestamp=AT, type="inbound-rtp", id=f"in-{kind}",
                                    ssrc=1, kind=kind, transportId="t", packetsReceived=received,
                                    packetsLost=lost, jitter=0)


def remote_inbound(kind: str, rtt: float) -> RTCRemoteInboundRtpStreamStats:
    return RTCRemoteInboundRtpStreamStats(
        timestamp=AT, type="remote-inbound-rtp", id=f"ri-{kind}", ssrc=2, kind=kind,
        transportId="t", packetsReceived=10, packetsLost=0, jitter=0, roundTripTime=rtt,
        fractionLost=0)


def test_sample_reads_an_aiortc_report() -> None:
    """Round trip: the longest remote-inbound roundTripTime; loss and packets: summed over
    inbound streams; no bytes or outgoing estimate in aiortc's report: unknown."""
    outbound = RTCOutboundRtpStreamStats(timestamp=AT, type="outbound-rtp", id="out", ssrc=3,
                                         kind="video", transportId="t", packetsSent=5,
                                         bytesSent=500, trackId="x")
    sample = sample_from_report(report(inbound("audio", 100, 1), inbound("video", 300, 4),
                                       remote_inbound("audio", 0.03),
                                       remote_inbound("video", 0.05), outbound),
                                at=7.0, frames_received=42)
    assert sample == Sample(at=7.0, packets_received=400, packets_lost=5, frames_received=42,
                            video_bytes_received=None, rtt_s=0.05, out_bps=None)


def test_path_stats_from_two_samples() -> None:
    """Over 2 s: 30 frames is 15 fps, 5 lost of 100 is 5 % (fair), 250 ms (fair);
    bytes known on both samples give kbit/s."""
    before = Sample(at=10.0, packets_received=1000, packets_lost=10, frames_received=100,
                    video_bytes_received=0)
    now = Sample(at=12.0, packets_received=1095, packets_lost=15, frames_received=130,
                 video_bytes_received=100_000, rtt_s=0.25)
    stats = path_stats(before, now, sending_video=True, remote_camera_on=False)
    assert stats == Stats(Quality.FAIR, rtt_ms=250.0, loss_pct=5.0, out_kbps=None,
                          in_fps=15.0, in_video_kbps=400.0)
    # The same figures from a camera that is on: 15 fps is under 20, still fair, not poor.
    assert path_stats(before, now, sending_video=True, remote_camera_on=True).quality is F


def test_path_stats_with_nothing_received_are_unknown_not_zero_loss() -> None:
    """No packets in the interval: loss unknown (None), not 0 %."""
    sample = Sample(at=1.0)
    stats = path_stats(sample, Sample(at=3.0), sending_video=False, remote_camera_on=False)
    assert (stats.loss_pct, stats.rtt_ms, stats.in_fps, stats.quality) == (None, None, 0.0, G)
