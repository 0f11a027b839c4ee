""""Hide my IP" in the call page (web_client/), in Debian's Chromium: relay-only ICE
through coturn when the gate asks for it or the lobby's checkbox does, and a clear
message instead of a direct connection when the service has no TURN server.

The professional is the headless aiortc peer, recording the candidates the server relays
to it from the page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from tests.browser import join, network_verdict, open_page, wait_connected, wait_video_playing
from tests.conftest import AUTH, GateClient, book_now
from tests.processes import Served, clean_env
from tests.turn import KEY, Coturn, RecordingPeer, book, candidate_address

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CLIENT = {"name": "Cli Ent", "email": "client@example.org", "timezone": "Europe/Oslo",
          "hub_id": "acme"}


async def error_text(page: Page) -> str:
    error = page.get_by_test_id("error")
    await error.wait_for(state="visible", timeout=10_000)
    return (await error.text_content() or "").strip()


async def relay_call(browser: Browser, tmp_path: Path, turn: tuple[Coturn, str], *,
                     hide_ip: bool, tick_box: bool) -> tuple[RecordingPeer, list[str]]:
    """A call between the page (client) and an aiortc professional, through a server that
    offers coturn; the professional's peer (after the call) and what the page gathered."""
    server, secret = turn
    env = clean_env(CARECALL_TURN_URLS=f"turn:127.0.0.1:{server.port}?transport=udp",
                    CARECALL_TURN_SECRET=secret)
    served = Served(["serve", "--port", "0", "--api-key", KEY,
                     "--var-dir", str(tmp_path / "var")], tmp_path, env)
    # Every candidate the page's RTCPeerConnection gathers, whether sent or not.
    spy = """
      window.__gathered = [];
      const Original = window.RTCPeerConnection;
      window.RTCPeerConnection = class extends Original {
        constructor(config) {
          super(config);
          window.__policy = config && config.iceTransportPolicy;
          this.addEventListener("icecandidate", (e) => {
            if (e.candidate && e.candidate.candidate) {
              window.__gathered.push(e.candidate.candidate);
            }
          });
        }
      };
    """
    try:
        base = await asyncio.to_thread(served.ready)
        links = book(base, hide_ip=hide_ip)
        page, log = await open_page(browser, links["client"], init_script=spy)
        if tick_box:
            # The lobby's network check ran before the box was ticked (its candidates are
            # never sent); from the tick on, the page gathers relay candidates only.
            await network_verdict(page)
            await page.get_by_label("Hide my IP address from the other party").check()
            await network_verdict(page)
            await page.evaluate("window.__gathered = []")
        await join(page)
        async with RecordingPeer(links["professional"]) as pro:
            await pro.wait_connected(45)
            await wait_connected(page, 45_000)
            await wait_video_playing(page, "remote-video", 30_000)
            await pro.wait_for(lambda: pro.stats.frames_received > 10, 30, "frames")
            assert await page.evaluate("window.__policy") == "relay"
            gathered: list[str] = await page.evaluate("window.__gathered")
            await page.get_by_test_id("hangup-button").click()
            await page.get_by_test_id("hangup-confirm").click()
            await pro.leave()
        assert log.errors == []
        await page.context.close()
    finally:
        served.close()
    return pro, gathered


async def test_page_with_hide_ip_from_the_gate_sends_relay_candidates_only(
        browser: Browser, tmp_path: Path, turn: tuple[Coturn, str]) -> None:
    """The client has hide_ip in the gate: the page builds its connection with
    iceTransportPolicy relay, gathers relay candidates only, and the professional receives
    nothing else; the call connects through coturn."""
    pro, gathered = await relay_call(browser, tmp_path, turn, hide_ip=True, tick_box=False)
    print(f"the page gathered {len(gathered)} candidates; the professional received "
          f"{len(pro.received)} from it, {sum(' typ relay' in c for c in pro.received)} relay")
    assert gathered and all(" typ relay" in c for c in gathered), gathered
    assert pro.received, "the professional received no candidates"
    assert all(" typ relay" in c for c in pro.received), pro.received
    # This machine's addresses (the professional's host candidates, on the same machine)
    # appear nowhere in the page's SDP.
    hosts = {candidate_address(c) for c in pro.offered if " typ host" in c}
    assert hosts and pro.received_sdp
    assert not any(h in sdp for h in hosts for sdp in pro.received_sdp), pro.received_sdp


async def test_the_lobby_checkbox_hides_the_ip_for_this_call(
        browser: Browser, tmp_path: Path, turn: tuple[Coturn, str]) -> None:
    """hide_ip not set in the gate, the client ticks the lobby's Hide my IP box: relay
    candidates only, and the call connects."""
    pro, gathered = await relay_call(browser, tmp_path, turn, hide_ip=False, tick_box=True)
    print(f"the page gathered {len(gathered)} candidates, the professional received "
          f"{len(pro.received)}")
    assert gathered and all(" typ relay" in c for c in gathered), gathered
    assert pro.received and all(" typ relay" in c for c in pro.received), pro.received


async def test_hide_ip_without_turn_shows_a_clear_message(service: GateClient,
                                                          browser: Browser) -> None:
    """hide_ip set in the gate, no TURN configured: the page says Hide my IP needs a relay
    server, builds no peer connection, and the lobby's box shows the setting."""
    room = await book_now(service)
    response = await service.put("/api/v1/clients/cli-1", headers=AUTH,
                                 json={**CLIENT, "hide_ip": True})
    assert response.status == 200
    page, log = await open_page(browser, room["links"]["client"], init_script="""
      window.__connections = 0;
      const Original = window.RTCPeerConnection;
      window.RTCPeerConnection = class extends Original {
        constructor(config) { super(config); window.__connections += 1; }
      };
    """)
    await join(page)
    text = await error_text(page)
    assert text.startswith("Hide my IP needs a relay server, which this service has not "
                           "configured"), text
    assert "join without" not in text  # the service's setting: not the user's to undo
    assert await page.evaluate("window.__connections") == 0
    box = page.get_by_test_id("hide-ip-option")
    assert await box.is_checked() and await box.is_disabled()
    assert log.errors == []


async def test_ticked_box_without_turn_shows_a_clear_message(service: GateClient,
                                                             browser: Browser) -> None:
    """The client ticks Hide my IP, the service has no TURN: the same message, telling them
    they may reload and join without it; after a reload the box is still ticked, and
    unticked the page joins as usual."""
    room = await book_now(service)
    page, _log = await open_page(browser, room["links"]["client"])
    box = page.get_by_label("Hide my IP address from the other party (connect through a relay)")
    assert await box.get_attribute("data-testid") == "hide-ip-option"
    await box.check()
    await join(page)
    text = await error_text(page)
    assert "Hide my IP needs a relay server" in text and "join without" in text, text
    await page.reload()  # the choice is kept for this tab: still ticked
    box = page.get_by_test_id("hide-ip-option")
    assert await box.is_checked()
    await box.uncheck()
    await join(page)
    await page.wait_for_function(
        "() => document.body.dataset.phase === 'call'", timeout=10_000)
    assert not await page.get_by_test_id("error").is_visible()
