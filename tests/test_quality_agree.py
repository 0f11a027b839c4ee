"""The page (web_client/quality.js) and the headless peer (peer/channel.py) grade a path
with the same thresholds, the ones docs/protocol.md states: each side shows the worse of
both grades, so two different scales would make one side blame the other's path."""

from __future__ import annotations

import re
from pathlib import Path

from peer import channel

ROOT = Path(__file__).resolve().parent.parent
# (fair, poor) in the page; (poor, fair) in the peer.
PAGE_NAMES = {"rtt_ms": "RTT_MS", "loss_pct": "LOSS_PCT", "out_kbps": "OUT_KBPS",
              "in_video_kbps": "IN_VIDEO_KBPS", "in_fps": "IN_FPS"}


def page_thresholds(source: str) -> dict[str, tuple[float, float]]:
    block = re.search(r"export const THRESHOLDS = \{(.*?)\};", source, re.S)
    assert block is not None, "quality.js has no THRESHOLDS table"
    found = re.findall(r"(\w+): \[([\d.]+), ([\d.]+)\]", block.group(1))
    return {name: (float(fair), float(poor)) for name, fair, poor in found}


def test_the_page_and_the_peer_grade_with_the_same_thresholds() -> None:
    page = page_thresholds((ROOT / "web_client" / "quality.js").read_text(encoding="utf-8"))
    assert set(page) == set(PAGE_NAMES)
    for name, constant in PAGE_NAMES.items():
        poor, fair = getattr(channel, constant)
        assert page[name] == (fair, poor), (name, page[name], (fair, poor))


def test_a_changed_threshold_is_noticed() -> None:
    source = (ROOT / "web_client" / "quality.js").read_text(encoding="utf-8")
    changed = page_thresholds(source.replace("in_fps: [15, 8]", "in_fps: [20, 8]"))
    assert changed["in_fps"] != (channel.IN_FPS[1], channel.IN_FPS[0])
