"""The pre-call check (web_client/precall.js) in Debian's Chromium: the microphone meter on
the fake microphone, the test sound on headless Chromium's fake output, and the network
verdicts against a real WebSocket endpoint, closed ports and a real coturn.

The module is served as it ships, beside a bare test page; no page of the product is used.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import unused_port
from playwright.async_api import Browser, Page

from signalling.ice import turn_credential
from tests.browser import CHROMIUM, open_page
from tests.turn import Coturn

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(60),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium at /usr/bin"),
]

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"

# The page exposes the module; with ?meter it starts the meter on the fake microphone by
# itself, before the test touches the page (Playwright's evaluate counts as a user gesture,
# so only the page's own script shows what the autoplay policy does).
PAGE = """<!doctype html>
<meta charset="utf-8"><title>precall test</title>
<meter data-testid="meter" min="0" max="1" value="0"></meter>
<script type="module">
  import * as precall from "./precall.js";
  window.precall = precall;
  if (location.search === "?meter") {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const meter = new precall.MicMeter(document.querySelector("meter"));
    meter.start(stream);
    window.meter = meter;
    window.stream = stream;
    window.observed = { blockedAtStart: meter.blocked };
    setTimeout(() => {
      window.observed.blockedAfter2s = meter.blocked;
      window.observed.levelAfter2s = meter.level;
    }, 2000);
  }
  if (location.search === "?blocked") {
    // A stream that is not a capture, on a page that captures nothing: no exemption.
    const source = new AudioContext();
    const meter = new precall.MicMeter(document.querySelector("meter"));
    meter.start(source.createMediaStreamDestination().stream);
    window.meter = meter;
    window.observed = { blockedAtStart: meter.blocked };
    setTimeout(() => { window.observed.blockedAfter1s = meter.blocked; }, 1000);
  }
  if (location.search === "?sound") {
    // No gesture and no capture: the autoplay policy applies.
    const started = performance.now();
    window.sound = precall.playTestSound().then(() => "played",
      (e) => `${e.name} after ${Math.round(performance.now() - started)} ms`);
  }
  window.ready = true;
</script>
"""

# Every RTCPeerConnection the page makes, to count those left open.
COUNT_PEER_CONNECTIONS = """
(() => {
  const Original = window.RTCPeerConnection;
  window.peerConnections = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      window.peerConnections.push(this);
    }
  };
})();
"""


@dataclass
class Probe:
    """What the WebSocket endpoint saw: connections, messages, the client's close codes."""

    opened: int = 0
    messages: list[str] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, Probe]]:
    """web_client/ and the test page on 127.0.0.1, with a WebSocket endpoint at /ws."""
    probe = Probe()

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        probe.opened += 1
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                probe.messages.append(message.data)
        probe.close_codes.append(ws.close_code)
        return ws

    app = web.Application()
    app.router.add_get("/test.html", page)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/", WEB_CLIENT)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", probe
    finally:
        await runner.cleanup()


async def precall_page(browser: Browser, base: str, query: str = "", *,
                       permissions: bool = True) -> Page:
    """The test page; with ``permissions`` camera and microphone are granted, which makes
    Chromium show host candidates with their addresses instead of mDNS names."""
    if permissions:
        page, _log = await open_page(browser, f"{base}/test.html{query}",
                                     init_script=COUNT_PEER_CONNECTIONS)
    else:
        context = await browser.new_context(permissions=[])  # [] itself: None grants
        await context.add_init_script(COUNT_PEER_CONNECTIONS)
        page = await context.new_page()
        await page.goto(f"{base}/test.html{query}")
    await page.wait_for_function("() => window.ready === true")
    return page


def turn_server(server: Coturn, secret: str, *, transport: str = "udp") -> dict[str, Any]:
    """TURN-REST credentials as signalling.ice makes them, valid for an hour."""
    username = f"{int(time.time()) + 3600}:room:client"
    return {"urls": [f"turn:127.0.0.1:{server.port}?transport={transport}"],
            "username": username, "credential": turn_credential(secret, username)}


async def check(page: Page, ws_url: str, ice_servers: list[dict[str, Any]],
                timeout_ms: int = 4000) -> dict[str, Any]:
    """checkNetwork in the page; prints its details (the test's own servers only)."""
    result: dict[str, Any] = await page.evaluate(
        "args => window.precall.checkNetwork(args)",
        {"iceServers": ice_servers, "wsUrl": ws_url, "timeoutMs": timeout_ms})
    print(result["verdict"], result["details"])
    open_count = await page.evaluate(
        "() => window.peerConnections.filter(pc => pc.signalingState !== 'closed').length")
    made = await page.evaluate("() => window.peerConnections.length")
    assert (made, open_count) == (1, 0), "checkNetwork must close its RTCPeerConnection"
    return result


# -- the microphone meter ----------------------------------------------------------------


async def test_meter_follows_the_fake_microphone_and_shows_zero_without_a_stream(
        site: tuple[str, Probe], browser: Browser) -> None:
    """Started by the page on a capture, with no gesture, the meter runs at once (Chromium
    exempts capturing pages from the autoplay policy), passes 0.05 within 5 s on the fake
    microphone's beeps with matching aria values, and start(null) shows 0."""
    base, _probe = site
    page = await precall_page(browser, base, "?meter")
    await page.wait_for_function("() => window.observed?.blockedAfter2s !== undefined")
    observed = await page.evaluate("() => window.observed")
    print("autoplay with a capture:", observed)
    assert observed["blockedAtStart"] is False
    assert observed["blockedAfter2s"] is False
    await page.wait_for_function("() => window.meter.level > 0.05", timeout=5000)
    meter = await page.evaluate(
        "() => { const m = document.querySelector('meter'); return { value: m.value,"
        " now: m.getAttribute('aria-valuenow'), text: m.getAttribute('aria-valuetext') }; }")
    print("meter:", meter)
    assert meter["value"] > 0.05
    assert float(meter["now"]) == pytest.approx(meter["value"], abs=1e-6)
    assert meter["text"] == f"{round(meter['value'] * 100)}%"
    await page.evaluate("() => window.meter.start(null)")
    await page.wait_for_timeout(300)  # ticks would have moved it, were it still attached
    after = await page.evaluate(
        "() => [document.querySelector('meter').value,"
        " document.querySelector('meter').getAttribute('aria-valuenow'), window.meter.level,"
        " window.meter.blocked]")
    assert after == [0, "0", 0, False]


async def test_meter_without_a_capture_waits_for_a_gesture(site: tuple[str, Probe],
                                                           browser: Browser) -> None:
    """On a page that captures nothing the meter's AudioContext stays suspended (blocked)
    until the first pointerdown, which resumes it."""
    base, _probe = site
    page = await precall_page(browser, base, "?blocked")
    # Not wait_for_function: Playwright's evaluate counts as a user gesture, so the page
    # records what happened before the test touches it.
    await page.wait_for_timeout(1500)
    observed = await page.evaluate("() => window.observed")
    print("autoplay without a capture:", observed)
    assert observed == {"blockedAtStart": True, "blockedAfter1s": True}
    assert await page.evaluate("() => window.meter.blocked") is True
    await page.mouse.click(5, 5)  # a trusted pointerdown
    await page.wait_for_function("() => window.meter.blocked === false", timeout=3000)


# -- the test sound ----------------------------------------------------------------------


async def test_the_test_sound_plays_to_its_end(site: tuple[str, Probe],
                                               browser: Browser) -> None:
    """playTestSound resolves on headless Chromium's fake output after at least 1 s."""
    base, _probe = site
    page = await precall_page(browser, base)
    took = await page.evaluate(
        "async () => { const t = performance.now(); await window.precall.playTestSound();"
        " return performance.now() - t; }")
    print(f"playTestSound took {took:.0f} ms")
    assert 1000 <= took < 3000


async def test_the_test_sound_without_a_gesture_says_not_allowed(
        site: tuple[str, Probe], browser: Browser) -> None:
    """Called by the page itself, with no gesture and no capture, playTestSound rejects
    with NotAllowedError instead of waiting for ever."""
    base, _probe = site
    page = await precall_page(browser, base, "?sound", permissions=False)
    await page.wait_for_timeout(2000)  # not evaluate: that would count as a gesture
    outcome = await page.evaluate("() => window.sound")
    print("playTestSound without a gesture:", outcome)
    assert outcome.startswith("NotAllowedError after ")


# -- the network check -------------------------------------------------------------------


async def test_no_servers_configured(site: tuple[str, Probe], browser: Browser) -> None:
    """Without STUN or TURN the verdict is no_servers; the probe sends nothing and closes
    with 1000."""
    base, probe = site
    page = await precall_page(browser, base)
    result = await check(page, base.replace("http", "ws") + "/ws", [])
    assert result["verdict"] == "no_servers"
    assert result["details"]["serverReachable"] is True
    assert result["details"]["srflx"] == result["details"]["relay"] == 0
    await page.wait_for_timeout(200)
    assert (probe.opened, probe.messages, probe.close_codes) == (1, [], [1000])


async def test_a_closed_server_port_is_unreachable(site: tuple[str, Probe],
                                                   browser: Browser) -> None:
    """A WebSocket URL on a closed port gives unreachable, whatever ICE found."""
    base, _probe = site
    page = await precall_page(browser, base)
    result = await check(page, f"ws://127.0.0.1:{unused_port()}/ws", [])
    assert result["verdict"] == "unreachable"
    assert result["details"]["serverReachable"] is False


async def test_coturn_as_stun_and_turn_is_direct(site: tuple[str, Probe], browser: Browser,
                                                 turn: tuple[Coturn, str]) -> None:
    """coturn as STUN and TURN with valid TURN-REST credentials: a relay is gathered and
    STUN answers, so direct; with permissions (real host addresses) Chromium drops the
    srflx that equals a host address, without them (mDNS hosts) it keeps it."""
    base, _probe = site
    server, secret = turn
    servers = [{"urls": [f"stun:127.0.0.1:{server.port}"]}, turn_server(server, secret)]
    ws_url = base.replace("http", "ws") + "/ws"
    granted = await check(await precall_page(browser, base), ws_url, servers)
    assert granted["verdict"] == "direct"
    assert granted["details"]["relay"] >= 1
    assert granted["details"]["srflx"] == 0
    hidden = await check(await precall_page(browser, base, permissions=False), ws_url, servers)
    assert hidden["verdict"] == "direct"
    assert hidden["details"]["srflx"] >= 1
    # TURN over UDP alone is asked as a STUN server too, and it answers.
    alone = await check(await precall_page(browser, base), ws_url,
                        [turn_server(server, secret)])
    assert alone["verdict"] == "direct"


async def test_turn_over_tcp_only_is_relay_only(site: tuple[str, Probe], browser: Browser,
                                                turn: tuple[Coturn, str]) -> None:
    """TURN over TCP and no STUN: the relay works and UDP was never tried: relay_only."""
    base, _probe = site
    server, secret = turn
    result = await check(await precall_page(browser, base), base.replace("http", "ws") + "/ws",
                         [turn_server(server, secret, transport="tcp")])
    assert result["verdict"] == "relay_only"
    assert result["details"]["relay"] >= 1
    assert result["details"]["srflx"] == 0


async def test_turn_with_a_wrong_credential_is_not_a_relay(
        site: tuple[str, Probe], browser: Browser, turn: tuple[Coturn, str]) -> None:
    """coturn refuses a credential made with another secret: no relay, an error: blocked."""
    base, _probe = site
    server, _secret = turn
    result = await check(await precall_page(browser, base), base.replace("http", "ws") + "/ws",
                         [turn_server(server, "not-the-secret", transport="tcp")])
    assert result["verdict"] == "blocked"
    assert result["details"]["relay"] == 0


async def test_servers_that_never_answer_are_blocked(site: tuple[str, Probe],
                                                     browser: Browser) -> None:
    """STUN at a closed UDP port, then TURN at one: no srflx, no relay, no answer: blocked."""
    base, _probe = site
    ws_url = base.replace("http", "ws") + "/ws"
    stun = await check(await precall_page(browser, base), ws_url,
                       [{"urls": [f"stun:127.0.0.1:{unused_port()}"]}], timeout_ms=2000)
    assert stun["details"]["srflx"] == stun["details"]["relay"] == 0
    assert stun["verdict"] == "blocked"
    dead_turn = {"urls": [f"turn:127.0.0.1:{unused_port()}"], "username": "1:room:client",
                 "credential": "x"}
    turn = await check(await precall_page(browser, base), ws_url, [dead_turn], timeout_ms=2000)
    assert turn["verdict"] == "blocked"
