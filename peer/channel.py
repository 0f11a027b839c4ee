"""The call's data channel (docs/protocol.md, "The call's data channel"): its frames.

Pure: text in, typed messages out; typed messages in, text out; counters in, a grade
out. The peer (``peer.client``) only moves the frames and reads aiortc's statistics.

Invariants:

- ``parse_frame`` never raises: a frame that is not a JSON object of at most
  ``MAX_FRAME_BYTES``, whose ``t`` is unknown, or whose fields are not as specified, is
  ``None`` and the caller ignores it (newer peers may add kinds);
- every message ``encode`` builds is one that ``parse_frame`` accepts;
- ``quality_grade`` uses exactly the thresholds of the spec; a figure that is unknown
  (``None``) never makes a grade worse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

LABEL = "carecall"
# Negotiated out of band (RFC 8832 section 6: no DATA_CHANNEL_OPEN), the same id on both
# sides, so neither waits for the other to announce it.
CHANNEL_ID = 0
MAX_FRAME_BYTES = 16 * 1024
MAX_CHAT_CHARS = 2000
MAX_CHAT_ID_CHARS = 64
STATS_INTERVAL = 2.0


class Quality(StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


@dataclass(frozen=True, slots=True)
class State:
    """What the sender sends: ``video`` is false in audio-only, ``screen`` a shared screen."""

    mic: bool
    camera: bool
    video: bool
    screen: bool


@dataclass(frozen=True, slots=True)
class Stats:
    """The sender's own view of the path over the last ``STATS_INTERVAL``."""

    quality: Quality
    rtt_ms: float | None = None
    loss_pct: float | None = None
    out_kbps: float | None = None
    in_fps: float | None = None
    in_video_kbps: float | None = None


@dataclass(frozen=True, slots=True)
class AudioOnly:
    """A request: ``on`` asks the other side to stop sending video, false to send it again."""

    on: bool


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    text: str
    at: datetime  # the sender's clock


@dataclass(frozen=True, slots=True)
class Booked:
    """The professional booked the pair's next session during the call."""

    starts_at: datetime
    ends_at: datetime
    funding: str


ChannelMessage = State | Stats | AudioOnly | Chat | Booked

_STATE_FIELDS = ("mic", "camera", "video", "screen")
_STATS_FIELDS = ("rtt_ms", "loss_pct", "out_kbps", "in_fps", "in_video_kbps")


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _instant(value: Any) -> datetime | None:
    """An RFC 3339 date-time with an offset, or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def parse_frame(data: str | bytes) -> ChannelMessage | None:
    """One received frame as a message, or None if it is to be ignored."""
    if isinstance(data, bytes) or len(data.encode()) > MAX_FRAME_BYTES:
        return None
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        return None
    match obj["t"]:
        case "state":
            flags = [obj.get(name) for name in _STATE_FIELDS]
            if all(isinstance(flag, bool) for flag in flags):
                return State(*(flag is True for flag in flags))
        case "stats":
            figures = [obj.get(name) for name in _STATS_FIELDS]
            if obj.get("quality") in tuple(Quality) and all(map(_number, figures)):
                return Stats(Quality(obj["quality"]), *figures)
        case "audio-only":
            if isinstance(obj.get("on"), bool):
                return AudioOnly(obj["on"])
        case "chat":
            ident, text, at = obj.get("id"), obj.get("text"), _instant(obj.get("at"))
            if (isinstance(ident, str) and len(ident) <= MAX_CHAT_ID_CHARS
                    and isinstance(text, str) and 1 <= len(text) <= MAX_CHAT_CHARS
                    and at is not None):
                return Chat(ident, text, at)
        case "booked":
            starts, ends = _instant(obj.get("starts_at")), _instant(obj.get("ends_at"))
            if starts is not None and ends is not None and isinstance(obj.get("funding"), str):
                return Booked(starts, ends, obj["funding"])
    return None


def encode(message: ChannelMessage) -> str:
    """The frame that carries ``message``."""
    match message:
        case State():
            obj: dict[str, Any] = {"t": "state", "mic": message.mic, "camera": message.camera,
                                   "video": message.video, "screen": message.screen}
        case Stats():
            obj = {"t": "stats", "quality": str(message.quality),
                   **{name: getattr(message, name) for name in _STATS_FIELDS}}
        case AudioOnly():
            obj = {"t": "audio-only", "on": message.on}
        case Chat():
            obj = {"t": "chat", "id": message.id, "text": message.text,
                   "at": _rfc3339(message.at)}
        case Booked():
            obj = {"t": "booked", "starts_at": _rfc3339(message.starts_at),
                   "ends_at": _rfc3339(message.ends_at), "funding": message.funding}
    return json.dumps(obj, ensure_ascii=False)


def check_chat_text(text: str) -> None:
    """``ValueError`` naming the limit if ``text`` cannot be sent as a chat message."""
    if not 1 <= len(text) <= MAX_CHAT_CHARS:
        raise ValueError(f"a chat message is 1 to {MAX_CHAT_CHARS} characters "
                         f"(got {len(text)})")


def chat(ident: str, text: str, at: datetime) -> Chat:
    """A chat message to send; ``ValueError`` with the limit if ``text`` or ``ident`` is
    outside it."""
    check_chat_text(text)
    if len(ident) > MAX_CHAT_ID_CHARS:
        raise ValueError(f"a chat id is at most {MAX_CHAT_ID_CHARS} characters")
    return Chat(ident, text, at)


def one_line(text: str) -> str:
    """``text`` safe to print as one terminal line: control characters become spaces (a
    chat message could otherwise move the cursor or fake another line)."""
    return "".join(c if c.isprintable() else " " for c in text)


# -- quality ---------------------------------------------------------------------------

# (poor, fair) limits: a figure beyond the first is poor, beyond the second fair.
RTT_MS = (400.0, 200.0)        # over
LOSS_PCT = (8.0, 2.0)          # over
OUT_KBPS = (150.0, 400.0)      # under, while sending video
IN_VIDEO_KBPS = (100.0, 300.0)  # under, from a camera the other side says is on
IN_FPS = (8.0, 15.0)           # under, likewise


def _level(value: float | None, limits: tuple[float, float], *, over: bool) -> int:
    """2 poor, 1 fair, 0 good or unknown."""
    if value is None:
        return 0
    for level, limit in zip((2, 1), limits, strict=True):
        if (value > limit) if over else (value < limit):
            return level
    return 0


def quality_grade(rtt_ms: float | None, loss_pct: float | None, out_kbps: float | None,
                  in_fps: float | None, in_video_kbps: float | None, *,
                  sending_video: bool, remote_camera_on: bool) -> Quality:
    """The grade of the last interval's figures (docs/protocol.md, the quality grades)."""
    levels = [_level(rtt_ms, RTT_MS, over=True), _level(loss_pct, LOSS_PCT, over=True)]
    if sending_video:
        levels.append(_level(out_kbps, OUT_KBPS, over=False))
    if remote_camera_on:
        levels += [_level(in_video_kbps, IN_VIDEO_KBPS, over=False),
                   _level(in_fps, IN_FPS, over=False)]
    return (Quality.GOOD, Quality.FAIR, Quality.POOR)[max(levels)]


@dataclass(frozen=True, slots=True)
class Sample:
    """Cumulative counters at one moment (``at``: monotonic seconds)."""

    at: float
    packets_received: int = 0
    packets_lost: int = 0
    frames_received: int = 0
    video_bytes_received: int | None = None
    rtt_s: float | None = None
    out_bps: float | None = None


def sample_from_report(report: Mapping[str, Any], *, at: float, frames_received: int
                       ) -> Sample:
    """A ``Sample`` from a W3C stats report (``RTCPeerConnection.getStats()``).

    Round trip: the longest ``roundTripTime`` of the ``remote-inbound-rtp`` entries (what
    the other side's receiver reports say of our streams). Loss: ``packetsLost`` and
    ``packetsReceived`` of every ``inbound-rtp``. Frames: the caller's own count (aiortc
    has no ``framesDecoded``). Video bytes and the available outgoing bitrate are taken
    when the report has them (``bytesReceived``, ``availableOutgoingBitrate``), else
    unknown.
    """
    received = lost = 0
    video_bytes: int | None = None
    rtts: list[float] = []
    out_bps: float | None = None
    for entry in report.values():
        kind = getattr(entry, "type", None)
        if kind == "inbound-rtp":
            received += int(entry.packetsReceived)
            lost += max(0, int(entry.packetsLost))
            octets = getattr(entry, "bytesReceived", None)
            if entry.kind == "video" and octets is not None:
                video_bytes = (video_bytes or 0) + int(octets)
        elif kind == "remote-inbound-rtp" and getattr(entry, "roundTripTime", None):
            rtts.append(float(entry.roundTripTime))
        elif kind == "candidate-pair" and getattr(entry, "availableOutgoingBitrate", None):
            out_bps = float(entry.availableOutgoingBitrate)
    return Sample(at=at, packets_received=received, packets_lost=lost,
                  frames_received=frames_received, video_bytes_received=video_bytes,
                  rtt_s=max(rtts) if rtts else None, out_bps=out_bps)


def path_stats(before: Sample, now: Sample, *, sending_video: bool,
               remote_camera_on: bool) -> Stats:
    """The ``stats`` message for the interval from ``before`` to ``now``."""
    seconds = now.at - before.at
    packets = (now.packets_received - before.packets_received) + (
        now.packets_lost - before.packets_lost)
    loss = (max(0, now.packets_lost - before.packets_lost) * 100.0 / packets
            if packets > 0 else None)
    fps = (now.frames_received - before.frames_received) / seconds if seconds > 0 else None
    kbps = None
    bytes_before, bytes_now = before.video_bytes_received, now.video_bytes_received
    if seconds > 0 and bytes_before is not None and bytes_now is not None:
        kbps = (bytes_now - bytes_before) * 8 / seconds / 1000
    rtt = None if now.rtt_s is None else now.rtt_s * 1000
    out = None if now.out_bps is None else now.out_bps / 1000
    figures = (_round(rtt), _round(loss), _round(out), _round(fps), _round(kbps))
    grade = quality_grade(*figures, sending_video=sending_video,
                          remote_camera_on=remote_camera_on)
    return Stats(grade, *figures)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
