"""Browser call setup: in Chromium, the Join click → the other party's video playing.

    python -m bench.browser_setup [--quick]

``carecall serve`` runs as a process (SQLite in a temporary directory); Debian's
Chromium runs headless under Playwright with its fake camera and microphone. For each
repetition a fresh booking; the professional joins first and waits in the room: a
``carecall peer`` process (browser ↔ headless peer), or a second Chromium page that has
pressed Join and been welcomed (browser ↔ browser). Then the client's page, its preview
ready, is clicked.

The times come from the client page's own ``performance.now()``, so Playwright's round
trips are not in them: a capturing click listener marks the click, and a
``requestVideoFrameCallback`` on the remote <video> (with a poll of ``videoWidth`` and
``currentTime`` beside it) marks its first frame shown. An init script also marks the
steps between (socket open, welcome, offer, answer, first candidates, ICE and DTLS
states) for the details; it never records a message's content.

Baseline, in the same run: the browser's own floor, two RTCPeerConnections in one page
with the fake camera already open, offer, answer and candidates handed over directly,
until the answering side's <video> shows the first frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.call_setup import PeerProcess, book
from bench.procs import API_KEY, Process, cpu_seconds
from bench.report import Suite, at_most, quantile, table

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 "--no-sandbox", "--disable-background-networking", "--disable-gpu",
                 "--disable-component-update", "--no-first-run"]
TARGET_MS = 150.0
TIMEOUT_MS = 15_000

# Marks the first time of each step in window.__marks (performance.now(), ms).
MARKS = """
(() => {
  const marks = window.__marks = {};
  let clicked = false;
  const mark = (step) => {
    const key = clicked || step === "click" ? step : "before click: " + step;
    if (!(key in marks)) marks[key] = performance.now();
  };
  const kind = (m) => m.type + (m.description ? "-" + m.description.type
    : m.candidate ? "-candidate" : "");
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...args) {
      super(...args);
      mark("ws-new");
      this.addEventListener("open", () => mark("ws-open"));
      this.addEventListener("message", (event) => {
        try { mark("recv " + kind(JSON.parse(event.data))); } catch (e) {}
      });
    }
    send(data) {
      try { mark("send " + kind(JSON.parse(data))); } catch (e) {}
      return super.send(data);
    }
  };
  const PC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends PC {
    constructor(...args) {
      super(...args);
      mark("pc-new");
      this.addEventListener("iceconnectionstatechange",
        () => mark("ice-" + this.iceConnectionState));
      this.addEventListener("connectionstatechange",
        () => mark("pc-" + this.connectionState));
      this.addEventListener("track", () => mark("track"));
    }
  };
  const watch = () => {
    const video = document.querySelector("[data-testid=remote-video]");
    let armed = null;
    const poll = () => {
      if ("frame" in marks) return;
      if (video.srcObject && armed !== video.srcObject) {
        armed = video.srcObject;
        video.requestVideoFrameCallback(() => mark("frame"));
      }
      if (video.videoWidth > 0 && video.currentTime > 0) mark("frame");
      setTimeout(poll, 2);
    };
    poll();
  };
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest("[data-testid=join-button]")) {
      mark("click");
      clicked = true;
      watch();
    }
  }, true);
})();
"""

LOOPBACK = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const video = document.createElement("video");
  video.autoplay = true; video.muted = true; video.playsInline = true;
  document.body.append(video);
  const start = performance.now();
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = ({ candidate }) => candidate && b.addIceCandidate(candidate);
  b.onicecandidate = ({ candidate }) => candidate && a.addIceCandidate(candidate);
  for (const pc of [a, b]) {
    pc.createDataChannel("carecall", { negotiated: true, id: 0 });
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
  }
  const shown = new Promise((resolve) => {
    b.ontrack = ({ streams }) => {
      if (video.srcObject) return;
      video.srcObject = streams[0];
      video.requestVideoFrameCallback(() => resolve(performance.now()));
    };
  });
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  const end = await shown;
  a.close(); b.close();
  for (const track of stream.getTracks()) track.stop();
  video.remove();
  return end - start;
}
"""

READY = "() => !document.querySelector('[data-testid=join-button]').disabled"


async def open_page(browser: Any, url: str) -> Any:
    context = await browser.new_context(permissions=["camera", "microphone"])
    await context.add_init_script(MARKS)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function(READY, timeout=TIMEOUT_MS)
    return page


async def click_to_frame(page: Any) -> dict[str, float]:
    """Click Join; the client page's marks in ms after the click."""
    await page.get_by_test_id("join-button").click()
    await page.wait_for_function("() => 'frame' in window.__marks", timeout=TIMEOUT_MS)
    marks: dict[str, float] = await page.evaluate("() => window.__marks")
    click = marks["click"]
    return {key: round(value - click, 1) for key, value in sorted(marks.items(),
                                                                   key=lambda kv: kv[1])
            if not key.startswith("before click")}


async def with_peer(browser: Any, base: str, tmp: Path, n: int) -> dict[str, float]:
    links = book(base, f"p{n}-{secrets.token_hex(3)}")
    peer = PeerProcess(links["professional"], tmp / f"peer-{n}.json", duration=30.0)
    try:
        await asyncio.to_thread(peer.wait_line, "admitted")
        page = await open_page(browser, links["client"])
        try:
            return await click_to_frame(page)
        finally:
            await page.context.close()
    finally:
        peer.stop()


async def with_browser(browser: Any, base: str, n: int) -> dict[str, float]:
    links = book(base, f"b{n}-{secrets.token_hex(3)}")
    pro = await open_page(browser, links["professional"])
    try:
        await pro.get_by_test_id("join-button").click()
        await pro.wait_for_function("() => 'recv welcome' in window.__marks",
                                    timeout=TIMEOUT_MS)
        page = await open_page(browser, links["client"])
        try:
            return await click_to_frame(page)
        finally:
            await page.context.close()
    finally:
        await pro.context.close()


async def loopback(browser: Any, base: str, reps: int) -> list[float]:
    context = await browser.new_context(permissions=["camera", "microphone"])
    try:
        page = await context.new_page()
        await page.goto(f"{base}/s/assets/index.html")
        await page.evaluate(LOOPBACK)  # warm-up
        return [float(await page.evaluate(LOOPBACK)) / 1000 for _ in range(reps)]
    finally:
        await context.close()


def stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": statistics.median(values) * 1000,
            "p90_ms": quantile(values, 0.9) * 1000, "min_ms": min(values) * 1000}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {key for run in runs for key in run}
    return dict(sorted(((key, round(statistics.median(r[key] for r in runs if key in r), 1))
                        for key in keys), key=lambda kv: kv[1]))


async def measure(quick: bool, suite: Suite, kinds: tuple[str, ...] = ("peer", "browser")
                  ) -> None:
    from playwright.async_api import async_playwright

    reps = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="carecall-bench-") as name:
        tmp = Path(name)
        server = Process(["serve", "--port", "0", "--api-key", API_KEY,
                          "--var-dir", str(tmp / "var")], tmp, {})
        try:
            base = server.ready()
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                           args=CHROMIUM_ARGS)
                try:
                    floor = await loopback(browser, base, reps)
                    # One call first, not counted: it warms the browser's and the
                    # server's caches.
                    await (with_peer(browser, base, tmp, -1) if "peer" in kinds
                           else with_browser(browser, base, -1))
                    peer_runs = [await with_peer(browser, base, tmp, n)
                                 for n in range(reps)] if "peer" in kinds else []
                    browser_runs = [await with_browser(browser, base, n)
                                    for n in range(reps)] if "browser" in kinds else []
                finally:
                    await browser.close()
            suite.cpu_seconds["server"] = cpu_seconds(server.pid)
        finally:
            server.stop()
    base_stats = stats(floor)
    for label, runs in (("browser ↔ headless peer", peer_runs),
                        ("browser ↔ browser", browser_runs)):
        if not runs:
            continue
        values = stats([run["frame"] / 1000 for run in runs])
        suite.figures.append(at_most(
            f"{label}: Join click → remote video playing (median)", values["p50_ms"], "ms",
            TARGET_MS, baseline=base_stats["p50_ms"],
            baseline_name="two RTCPeerConnections in one page",
            note=f"p90 {values['p90_ms']:.0f} ms; n={len(runs)}"))
        suite.details[label] = {"click_to_frame": values, "median_marks_ms": medians(runs)}
    suite.details["loopback"] = base_stats


def run(quick: bool, kinds: tuple[str, ...] = ("peer", "browser")) -> Suite:
    began = time.monotonic()
    suite = Suite("browser-setup")
    asyncio.run(measure(quick, suite, kinds))
    suite.seconds = time.monotonic() - began
    return suite


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser_setup")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["peer", "browser"],
                        help="only the call opposite a headless peer, or a browser")
    args = parser.parse_args()
    suite = run(args.quick, (args.only,) if args.only else ("peer", "browser"))
    print(table([suite]))
    print(json.dumps(suite.details, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
