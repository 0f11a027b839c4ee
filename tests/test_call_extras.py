"""In the call, in Debian's Chromium against a real ``carecall serve``: what travels over
the call's data channel (docs/protocol.md, "The call's data channel") and what it shows:
chat, the other person's muted microphone and closed camera, connection quality for both
ends, audio only, screen sharing, the session timer, and how the session was held in
the attendance record. Opposite the headless peer too, which QA uses.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from booking_gate.rules import FAILURE_SENTENCES
from peer import Peer
from tests.browser import CHROMIUM, PageLog, join, open_page, wait_connected
from tests.service import Service

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(150),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium at /usr/bin"),
]

# Keeps every RTCPeerConnection the page makes, so a test can throttle or read it the
# way a bad network would (the page itself exposes nothing for tests).
PC_SPY = """
  window.__pcs = [];
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
"""

# Inbound counters of the live connection: video frames decoded, audio packets received.
INBOUND = """async () => {
  const pc = window.__pcs.filter((p) => p.connectionState === 'connected').at(-1);
  const out = { video: 0, audio: 0, width: 0, height: 0 };
  if (!pc) { return out; }
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') { return; }
    if (s.kind === 'video') {
      out.video += s.framesDecoded || 0;
      out.width = s.frameWidth || out.width;
      out.height = s.frameHeight || out.height;
    } else { out.audio += s.packetsReceived || 0; }
  });
  return out;
}"""

# Sets the maximum bitrate of the page's video sender (null lifts the limit).
THROTTLE = """async (kbps) => {
  const pc = window.__pcs.filter((p) => p.connectionState === 'connected').at(-1);
  const sender = pc.getSenders().find((s) => s.track && s.track.kind === 'video');
  const parameters = sender.getParameters();
  for (const encoding of parameters.encodings) {
    if (kbps === null) { delete encoding.maxBitrate; } else { encoding.maxBitrate = kbps * 1000; }
  }
  await sender.setParameters(parameters);
}"""

CHAT_SECRET = "my-sister-knows-about-the-panic-attacks-7f3a"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def two_in_a_call(browser: Browser, links: dict[str, str]
                        ) -> tuple[Page, PageLog, Page, PageLog]:
    pro, pro_log = await open_page(browser, links["professional"], init_script=PC_SPY)
    client, client_log = await open_page(browser, links["client"], init_script=PC_SPY)
    await join(pro)
    await join(client)
    await wait_connected(pro)
    await wait_connected(client)
    return pro, pro_log, client, client_log


async def visible_within(page: Page, testid: str, timeout: float = 1_000) -> float:
    """Seconds until the element is visible (it must be within ``timeout`` ms)."""
    started = time.monotonic()
    await page.get_by_test_id(testid).wait_for(state="visible", timeout=timeout)
    return time.monotonic() - started


async def chat(page: Page, text: str) -> None:
    await page.get_by_test_id("chat-input").fill(text)
    await page.get_by_test_id("chat-send").click()


async def chat_texts(page: Page) -> list[str]:
    return [(await m.locator(".text").text_content() or "")
            for m in await page.get_by_test_id("chat-message").all()]


async def wait_chat(page: Page, text: str, timeout: float = 5_000) -> None:
    await page.wait_for_function(
        "t => [...document.querySelectorAll('[data-testid=chat-message] .text')]"
        ".some((m) => m.textContent === t)", arg=text, timeout=timeout)


async def test_chat_labels_and_timer_between_two_browsers(
        start_service: Callable[..., Service], browser: Browser, tmp_path: Path) -> None:
    service = start_service(CARECALL_LOG_LEVEL="DEBUG")
    links = service.book("b-chat", now() - timedelta(minutes=3))
    pro, pro_log, client, client_log = await two_in_a_call(browser, links)

    # Chat both ways, only once the channel is open; it names who wrote.
    await pro.wait_for_function(
        "() => !document.querySelector('[data-testid=chat-input]').disabled")
    await chat(pro, f"hello Bo {CHAT_SECRET}")
    await wait_chat(client, f"hello Bo {CHAT_SECRET}")
    await chat(client, f"hi {CHAT_SECRET} back")
    await wait_chat(pro, f"hi {CHAT_SECRET} back")
    assert await chat_texts(pro) == [f"hello Bo {CHAT_SECRET}", f"hi {CHAT_SECRET} back"]
    theirs = client.locator("[data-testid=chat-message][data-from=them] .who")
    assert "Dr Ada Lovelace" in (await theirs.first.text_content() or "")

    # The other person's microphone and camera: labels within 1 s; our own tile.
    assert not await pro.get_by_test_id("remote-muted").is_visible()
    await client.get_by_test_id("mute-button").click()
    muted_after = await visible_within(pro, "remote-muted")
    assert "Bo" in (await pro.get_by_test_id("remote-muted").text_content() or "")
    await client.get_by_test_id("camera-button").click()
    camera_after = await visible_within(pro, "remote-camera-off")
    assert await client.get_by_test_id("local-camera-off").is_visible()
    print(f"remote-muted after {muted_after:.3f} s, remote-camera-off after "
          f"{camera_after:.3f} s")
    await client.get_by_test_id("camera-button").click()
    await client.get_by_test_id("mute-button").click()
    await pro.get_by_test_id("remote-camera-off").wait_for(state="hidden", timeout=1_000)
    await pro.get_by_test_id("remote-muted").wait_for(state="hidden", timeout=1_000)

    # The timer: 3 minutes in, 47 left (on the server's clock).
    timer = await pro.get_by_test_id("session-timer").text_content() or ""
    print("session timer:", timer)
    assert re.fullmatch(r"3:\d\d in · 46:\d\d left", timer), timer

    # Hang-up empties the chat; the server never saw it.
    await pro.get_by_test_id("hangup-button").click()
    await pro.get_by_test_id("hangup-confirm").click()
    await pro.get_by_test_id("ended-page").wait_for(state="visible")
    assert await pro.get_by_test_id("chat-message").count() == 0
    log = service.served.stderr()
    assert "DEBUG" in log  # the log level under test is on
    assert CHAT_SECRET not in log
    for database in Path(service.var_dir).glob("*.db*"):
        assert CHAT_SECRET.encode() not in database.read_bytes(), database
    assert pro_log.errors == [] and client_log.errors == []


async def quality(page: Page) -> str:
    return await page.get_by_test_id("quality-indicator").get_attribute("data-quality") or ""


async def wait_quality(page: Page, wanted: set[str], timeout: float) -> float:
    started = time.monotonic()
    while (grade := await quality(page)) not in wanted:
        assert time.monotonic() - started < timeout, f"quality still {grade}, not {wanted}"
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def test_quality_goes_poor_when_the_other_side_is_throttled_and_back(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    links = service.book("b-quality", now())
    pro, _pro_log, client, _client_log = await two_in_a_call(browser, links)
    await wait_quality(pro, {"good"}, timeout=30)
    await client.evaluate(THROTTLE, 30)
    to_poor = await wait_quality(pro, {"poor"}, timeout=20)
    details = await pro.locator("#quality-details").text_content() or ""
    print(f"poor {to_poor:.1f} s after the throttle; details: {details}")
    assert "Your side (poor)" in details and "kbit/s" in details
    await pro.get_by_test_id("quality-indicator").focus()
    assert await pro.locator("#quality-details").is_visible()  # the figures on focus
    # The throttled side sees it too: the other end's figures come over the channel.
    await wait_quality(client, {"poor"}, timeout=10)
    await client.evaluate(THROTTLE, None)
    back = await wait_quality(pro, {"good"}, timeout=40)
    print(f"good again {back:.1f} s after lifting it")


async def inbound_after(page: Page, seconds: float) -> tuple[dict[str, int], dict[str, int]]:
    before = await page.evaluate(INBOUND)
    await asyncio.sleep(seconds)
    return before, await page.evaluate(INBOUND)


async def final_record(service: Service, booking_id: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        record = service.api("GET", f"/api/v1/bookings/{booking_id}/attendance")
        if record["status"] == "final" or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.5)


async def test_audio_only_stops_video_both_ways_keeps_audio_and_is_in_the_record(
        start_service: Callable[..., Service], browser: Browser) -> None:
    """A one-minute booking that began 15 s ago: video, then audio only asked by the
    professional (for both), then both leave after the end; the final record has both."""
    service = start_service()
    ends = now() + timedelta(seconds=45)
    links = service.book("b-audio", ends - timedelta(minutes=1), minutes=1)
    pro, pro_log, client, client_log = await two_in_a_call(browser, links)
    before, after = await inbound_after(client, 2)
    assert after["video"] > before["video"] + 10, (before, after)  # video flows first
    await pro.get_by_test_id("audio-only-button").click()
    assert await pro.get_by_test_id("audio-only-button").get_attribute("aria-pressed") == "true"
    notice = client.get_by_test_id("call-notice")
    await notice.wait_for(state="visible", timeout=2_000)
    assert "audio only" in (await notice.text_content() or "")
    await asyncio.sleep(1)  # frames in flight when it switched
    for page in (client, pro):
        before, after = await inbound_after(page, 3)
        print("audio only, 3 s:", before, "->", after)
        assert after["video"] - before["video"] <= 1, (before, after)  # no video frames
        assert after["audio"] > before["audio"] + 50, (before, after)  # audio still flows
    assert await client.get_by_test_id("remote-camera-off").is_visible()  # a tile, not black
    # There is a way back (then audio only again until the end, for the record).
    await client.get_by_test_id("audio-only-button").click()
    before, after = await inbound_after(pro, 3)
    assert after["video"] > before["video"] + 10, (before, after)
    await client.get_by_test_id("audio-only-button").click()
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 1)
    for page in (pro, client):
        await page.get_by_test_id("hangup-button").click()
        await page.get_by_test_id("hangup-confirm").click()
    record = await final_record(service, "b-audio")
    print("record:", {k: record.get(k) for k in ("status", "outcome", "together_seconds",
                                                 "video_seconds", "audio_only_seconds")})
    assert record["status"] == "final" and record["outcome"] == "completed", record
    assert record["audio_only_seconds"] > 0 and record["video_seconds"] > 0, record
    assert record["audio_only_seconds"] + record["video_seconds"] <= record["together_seconds"]
    assert pro_log.errors == [] and client_log.errors == []


async def test_a_call_whose_media_cannot_connect_is_a_technical_failure_naming_why(
        start_service: Callable[..., Service], browser: Browser) -> None:
    """The client hides their IP (relay only) and the configured TURN server does not
    answer: no relay candidate, so no path. Both came: technical failure, and the record
    says why, from what each browser reported."""
    closed = free_udp_port()
    service = start_service(CARECALL_TURN_URLS=f"turn:127.0.0.1:{closed}?transport=udp",
                            CARECALL_TURN_SECRET="turn-secret-for-a-server-that-is-not-there")
    ends = now() + timedelta(seconds=50)
    links = service.book("b-fail", ends - timedelta(minutes=1), minutes=1)
    pro, _pro_log = await open_page(browser, links["professional"], init_script=PC_SPY)
    client, _client_log = await open_page(browser, links["client"], init_script=PC_SPY)
    await client.get_by_test_id("hide-ip-option").check()
    await join(pro)
    await join(client)
    # No candidate, so ICE never fails by itself: the page reports it after 20 s.
    await client.wait_for_function(
        "() => document.querySelector('[data-testid=status]').textContent"
        ".includes('cannot reach')", timeout=30_000)
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 1)
    for page in (pro, client):
        await page.get_by_test_id("hangup-button").click()
        await page.get_by_test_id("hangup-confirm").click()
    record = await final_record(service, "b-fail")
    print("record:", record["outcome"], "-", record["explanation"])
    assert record["status"] == "final" and record["outcome"] == "technical_failure", record
    assert FAILURE_SENTENCES["no_relay_candidate"].format(role="client") \
        in record["explanation"], record["explanation"]


def free_udp_port() -> int:
    """A UDP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_frame_size(page: Page, size: tuple[int, int], timeout: float = 15) -> float:
    """Seconds until the received video frames have ``size`` and keep coming."""
    started = time.monotonic()
    while True:
        before, after = await inbound_after(page, 0.5)
        if (after["width"], after["height"]) == size and after["video"] > before["video"]:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, (size, after)


async def test_screen_share_from_a_browser_to_a_browser_and_back(
        start_service: Callable[..., Service], browser: Browser) -> None:
    """Chromium's fake screen is 1280x720 and its fake camera 640x480: the size of the
    frames received says which one arrives."""
    service = start_service()
    links = service.book("b-screen", now())
    pro, pro_log, client, client_log = await two_in_a_call(browser, links)
    await wait_frame_size(pro, (640, 480))
    button = client.get_by_test_id("screen-share-button")
    await button.click()
    shared = await wait_frame_size(pro, (1280, 720))
    assert await button.get_attribute("aria-pressed") == "true"
    await button.click()  # and back to the camera
    back = await wait_frame_size(pro, (640, 480))
    print(f"shared screen frames after {shared:.1f} s; camera again after {back:.1f} s")
    assert pro_log.errors == [] and client_log.errors == []


async def test_the_client_sees_the_next_session_within_2_s_of_the_professional_booking(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    links = service.book("b-next", now())
    pro, pro_log, client, client_log = await two_in_a_call(browser, links)
    await pro.get_by_test_id("next-session-button").click()
    await pro.get_by_test_id("slot-day").nth(1).click()  # day, then time, then confirm
    await pro.get_by_test_id("slot-option").first.click()
    await pro.get_by_test_id("book-slot-button").click()
    question = await pro.get_by_test_id("booking-confirm-step").text_content() or ""
    assert "Book Bo for" in question, question
    await pro.get_by_test_id("book-confirm-button").click()
    await pro.get_by_test_id("booking-confirmation").wait_for(state="visible")
    confirmed = time.monotonic()
    notice = client.get_by_test_id("call-notice")
    await client.wait_for_function(
        "() => document.querySelector('[data-testid=call-notice]').textContent"
        ".includes('booked your next session')", timeout=2_000)
    shown = time.monotonic() - confirmed
    text = await notice.text_content() or ""
    print(f"client told {shown:.3f} s after the confirmation: {text}")
    bookings = service.api("GET", "/api/v1/bookings?professional_id=pro-a")["items"]
    new = [b for b in bookings if b["booking_id"] != "b-next"]
    assert len(new) == 1, bookings
    await client.get_by_test_id("hangup-button").click()  # and on the client's end page
    await client.get_by_test_id("hangup-confirm").click()
    ended = await client.get_by_test_id("next-session-info").text_content() or ""
    assert ended.startswith("Your next session"), ended
    assert pro_log.errors == [] and client_log.errors == []


# -- opposite the headless peer (QA's peer, aiortc: never polite, cannot roll back) --------


def shape(size: tuple[int, int] | None) -> str | None:
    """"4:3" (Chromium's fake camera, 640x480) or "16:9" (its fake screen, 1280x720).

    Towards aiortc, Chromium may send either at a lower resolution while its bandwidth
    estimate ramps up or its CPU is busy (it scales both sides alike), so the shape, not
    the size, says which surface arrives."""
    if size is None:
        return None
    ratio = size[0] / size[1]
    for name, wanted in (("4:3", 4 / 3), ("16:9", 16 / 9)):
        if abs(ratio - wanted) < 0.02:
            return name
    return f"{size[0]}x{size[1]}"


async def test_chat_labels_and_screen_share_between_a_browser_and_the_headless_peer(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service(CARECALL_LOG_LEVEL="DEBUG")
    links = service.book("b-peer", now())
    printed: list[str] = []
    pro, pro_log = await open_page(browser, links["professional"], init_script=PC_SPY)
    await join(pro)
    async with Peer(links["client"], notify=printed.append) as peer:
        await peer.wait_connected(timeout=30)
        await wait_connected(pro)
        await peer.wait_for(lambda: peer.channel_open, 10, "the data channel")
        # Chat both ways.
        await peer.send_chat(f"from the peer {CHAT_SECRET}")
        await wait_chat(pro, f"from the peer {CHAT_SECRET}")
        await chat(pro, f"from the browser {CHAT_SECRET}")
        await peer.wait_for(lambda: any(CHAT_SECRET in text for _r, text, _a in peer.chats),
                            5, "the browser's chat")
        assert [(role, text) for role, text, _at in peer.chats] == [
            ("professional", f"from the browser {CHAT_SECRET}")]
        # What each saw of the other: the browser's mute in the peer's remote state.
        await pro.get_by_test_id("mute-button").click()
        await peer.wait_for(lambda: peer.remote_state is not None
                            and not peer.remote_state.mic, 1, "the browser's mute")
        # Screen share: the peer receives frames of the shared surface (1280x720).
        await peer.wait_for(lambda: shape(peer.stats.last_frame_size) == "4:3", 15,
                            "camera frames")
        await pro.get_by_test_id("screen-share-button").click()
        started = time.monotonic()
        await peer.wait_for(lambda: shape(peer.stats.last_frame_size) == "16:9", 15,
                            "shared-screen frames")
        frames = peer.stats.frames_received
        await peer.wait_for(lambda: peer.stats.frames_received > frames + 10, 5,
                            "more shared-screen frames")
        print(f"the headless peer got shared-screen frames {time.monotonic() - started:.1f} s"
              " after the click")
        await pro.get_by_test_id("screen-share-button").click()
        await peer.wait_for(lambda: shape(peer.stats.last_frame_size) == "4:3", 15,
                            "camera frames again")
        await peer.leave()
    log = service.served.stderr()
    assert "DEBUG" in log and CHAT_SECRET not in log
    for database in Path(service.var_dir).glob("*.db*"):
        assert CHAT_SECRET.encode() not in database.read_bytes(), database
    assert pro_log.errors == []
