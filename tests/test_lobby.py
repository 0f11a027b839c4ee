"""The edges of the call in Debian's Chromium against a real ``carecall serve``: the link
checked before the camera, who and when, the pre-call check, "running late", hang-up
with its confirmation and the end page, accessibility (axe-core) in both colour schemes,
and the page in German.

Each test starts its own server process, so the settings under test (join-early
window, TURN, support text) are the operator's environment variables, as in production.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page

from peer import Peer
from tests.browser import CHROMIUM, PageLog, join, network_verdict, wait_connected
from tests.service import PROFESSIONAL, Service
from tests.turn import Coturn, running_coturn

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium at /usr/bin"),
]

SUPPORT = "Trouble joining? Call 0800 123 456 (weekdays 8-18)."

# Counts the page's getUserMedia calls: a refused link must never make one.
GUM_SPY = """
  window.__gum = 0;
  if (navigator.mediaDevices) {
    const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (constraints) => {
      window.__gum += 1;
      return original(constraints);
    };
  }
"""


async def open_page(browser: Browser, url: str, **context: Any
                    ) -> tuple[Page, PageLog, BrowserContext]:
    """A page in its own context; ``context`` passes locale, timezone_id, color_scheme."""
    ctx = await browser.new_context(permissions=["camera", "microphone"],
                                    viewport={"width": 1280, "height": 900}, **context)
    await ctx.add_init_script(GUM_SPY)
    page = await ctx.new_page()
    log = PageLog()
    log.attach(page)
    await page.goto(url)
    return page, log, ctx


async def text_of(page: Page, testid: str, timeout: float = 10_000) -> str:
    element = page.get_by_test_id(testid)
    await element.wait_for(state="visible", timeout=timeout)
    return (await element.text_content() or "").strip()


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# -- the link first -------------------------------------------------------------------------


async def test_a_cancelled_link_says_so_without_asking_for_the_camera(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    links = service.book("b-cancel", now() + timedelta(hours=2))
    service.api("POST", "/api/v1/bookings/b-cancel/cancel", {"by": "client", "reason": "ill"})
    page, log, _ = await open_page(browser, links["client"])
    assert "cancelled" in await text_of(page, "error")
    next_step = (await page.locator("#refused-next").text_content() or "").strip()
    assert "book a new session" in next_step
    assert await page.evaluate("window.__gum") == 0
    assert not await page.get_by_test_id("join-button").is_visible()
    assert not await page.get_by_test_id("precall-check").is_visible()
    assert await page.evaluate("document.activeElement.id") == "refused-title"
    assert log.errors == []


async def test_a_forged_or_unknown_link_says_so_without_asking_for_the_camera(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    links = service.book("b-forged", now())
    url, token = links["client"].split("#t=")
    forged = f"{url}#t={token[:-6]}{'AAAAAA' if not token.endswith('AAAAAA') else 'BBBBBB'}"
    page, _log, _ = await open_page(browser, forged)
    assert "invalid link" in (await text_of(page, "error")).lower()
    assert await page.evaluate("window.__gum") == 0
    other_room = url.rsplit("/", 1)[0] + "/r-doesnotexist#t=" + token
    page, _log, _ = await open_page(browser, other_room)
    assert "invalid link" in (await text_of(page, "error")).lower()
    assert await page.evaluate("window.__gum") == 0


async def test_too_early_counts_down_and_enables_join_when_the_room_opens(
        start_service: Callable[..., Service], browser: Browser) -> None:
    """A 4-second join-early window: the booking starts in 10 s, so the room opens in 6 s;
    the countdown runs, then Join turns on by itself and works."""
    service = start_service(CARECALL_JOIN_EARLY_SECONDS="4")
    links = service.book("b-early", now() + timedelta(seconds=10))
    page, log, _ = await open_page(browser, links["client"])
    countdown = await text_of(page, "session-info")
    assert PROFESSIONAL in countdown
    first = (await page.locator("#countdown").text_content() or "").strip()
    assert "opens in 0:0" in first, first
    assert await page.get_by_test_id("join-button").is_disabled()
    await page.wait_for_timeout(1500)
    later = (await page.locator("#countdown").text_content() or "").strip()
    assert later != first, (first, later)  # it counts
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=join-button]').disabled", timeout=15_000)
    assert not await page.locator("#countdown").is_visible()
    assert "room is open" in (await text_of(page, "status")).lower()
    await page.get_by_test_id("join-button").click()
    await page.wait_for_function(
        "() => document.querySelector('[data-testid=status]').textContent.includes('Waiting')",
        timeout=10_000)
    assert log.errors == []


# -- who and when, and the pre-call check --------------------------------------------------


async def test_the_lobby_names_the_professional_and_the_local_time(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    start = now() + timedelta(minutes=5)
    links = service.book("b-who", start)
    zone = "America/New_York"
    page, log, _ = await open_page(browser, links["client"], timezone_id=zone,
                                   locale="en-GB")
    info = await text_of(page, "session-info")
    local = start.astimezone(ZoneInfo(zone))
    end = local + timedelta(minutes=50)
    print("client's lobby:", info)
    assert f"Your session with {PROFESSIONAL}" in info
    assert local.strftime("%H:%M") in info and end.strftime("%H:%M") in info, info
    assert zone in info and "your time" in info
    pro, _, _ = await open_page(browser, links["professional"], timezone_id="Europe/Berlin",
                                locale="en-GB")
    pro_info = await text_of(pro, "session-info")
    print("professional's lobby:", pro_info)
    assert "Your session with Bo" in pro_info and "Berg" not in pro_info
    assert start.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") in pro_info
    assert log.errors == []


async def test_the_microphone_meter_moves_and_the_check_does_not_block_joining(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    links = service.book("b-mic", now())
    page, log, _ = await open_page(browser, links["client"])
    await page.get_by_test_id("precall-check").wait_for(state="visible")
    # Chromium's fake microphone beeps about once a second: the meter must rise with it.
    levels: list[float] = []
    for _ in range(40):
        levels.append(float(await page.get_by_test_id("mic-level").evaluate("m => m.value")))
        await page.wait_for_timeout(100)
    print("meter levels:", [round(level, 3) for level in levels])
    assert max(levels) > 0.05 and max(levels) - min(levels) > 0.03, levels
    now_value = await page.get_by_test_id("mic-level").get_attribute("aria-valuenow")
    assert now_value is not None and 0 <= float(now_value) <= 1
    await page.get_by_test_id("speaker-test-button").click()
    await page.wait_for_function(
        "() => document.querySelector('#speaker-result').textContent.includes('chime')",
        timeout=10_000)
    await join(page)
    assert log.errors == []


async def test_the_network_verdict_without_and_with_a_turn_server(
        start_service: Callable[..., Service], browser: Browser, tmp_path: Path) -> None:
    plain = start_service()
    page, _log, _ = await open_page(browser, plain.book("b-net", now())["client"])
    code, text = await network_verdict(page)
    print("no ICE servers:", code, "-", text)
    assert code == "no_servers" and "No relay server is configured" in text
    (tmp_path / "turn").mkdir()
    with running_coturn(tmp_path / "turn") as (server, secret):
        turned = start_service(
            CARECALL_STUN_URLS=f"stun:127.0.0.1:{server.port}",
            CARECALL_TURN_URLS=f"turn:127.0.0.1:{server.port}?transport=udp",
            CARECALL_TURN_SECRET=secret)
        page, _log, _ = await open_page(browser, turned.book("b-net2", now())["client"])
        code, text = await network_verdict(page)
        print("coturn as STUN and TURN:", code, "-", text)
        assert code in ("direct", "relay_only"), (code, text)
        assert isinstance(server, Coturn)
    # A STUN server that does not answer: no relay and nothing reflexive → blocked.
    dead = start_service(CARECALL_STUN_URLS="stun:127.0.0.1:9")
    page, _log, _ = await open_page(browser, dead.book("b-net3", now())["client"])
    code, text = await network_verdict(page)
    print("an unanswering STUN server:", code, "-", text)
    assert code == "blocked"


# -- running late ------------------------------------------------------------------------------


async def test_running_late_reaches_the_professional_in_the_call_and_the_record(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    links = service.book("b-late", now())
    pro, pro_log, _ = await open_page(browser, links["professional"])
    await join(pro)
    client, client_log, _ = await open_page(browser, links["client"])
    await client.get_by_test_id("running-late-button").wait_for(state="visible")
    await client.get_by_test_id("running-late-minutes").select_option("10")
    sent_at = now()
    await client.get_by_test_id("running-late-button").click()
    await client.wait_for_function(
        "() => document.querySelector('#late-result').textContent.includes('10 minutes')",
        timeout=10_000)
    notice = pro.get_by_test_id("peer-notice")
    await notice.wait_for(state="visible", timeout=15_000)
    text = (await notice.text_content() or "").strip()
    print("professional sees:", text)
    assert text.startswith("Bo is running late, about 10 minutes"), text
    record = service.api("GET", "/api/v1/bookings/b-late/attendance")
    print("attendance notices:", record["notices"])
    assert [(n["by"], n["kind"], n["minutes"]) for n in record["notices"]] == [
        ("client", "running_late", 10)]
    at = datetime.fromisoformat(record["notices"][0]["at"].replace("Z", "+00:00"))
    assert abs((at - sent_at).total_seconds()) < 5
    assert not record["parties"]["client"]["joined"]  # a notice is not presence
    assert pro_log.errors == [] and client_log.errors == []


# -- the ending -------------------------------------------------------------------------------


async def test_hang_up_asks_then_the_end_page_shows_the_next_booking_to_both(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service(CARECALL_SUPPORT_TEXT=SUPPORT)
    links = service.book("b-end", now())
    pro, pro_log, _ = await open_page(browser, links["professional"])
    await join(pro)
    client, client_log, _ = await open_page(browser, links["client"])
    await join(client)
    await wait_connected(pro, 30_000)
    await pro.get_by_test_id("next-session-button").click()
    first = pro.get_by_test_id("slot-option").first
    await first.wait_for(state="visible", timeout=10_000)
    await first.click()
    await pro.get_by_test_id("book-slot-button").click()
    await pro.get_by_test_id("book-confirm-button").click()
    await pro.get_by_test_id("booking-confirmation").wait_for(state="visible")
    # Hang-up asks first; "stay" keeps the call.
    await pro.get_by_test_id("hangup-button").click()
    dialog = pro.locator("#hangup-dialog")
    await dialog.wait_for(state="visible")
    assert await pro.evaluate("document.activeElement.dataset.testid") == "hangup-cancel"
    await pro.keyboard.press("Escape")
    await dialog.wait_for(state="hidden")
    assert "connected" in await text_of(pro, "status")
    await pro.get_by_test_id("hangup-button").click()
    await pro.get_by_test_id("hangup-confirm").click()
    ended = pro.get_by_test_id("ended-page")
    await ended.wait_for(state="visible", timeout=10_000)
    assert await pro.evaluate("document.activeElement.id") == "ended-title"
    info = await text_of(pro, "next-session-info")
    print("professional's end page:", (await ended.text_content() or "").split())
    assert info.startswith("Your next session:")
    assert "You left at" in (await ended.text_content() or "")
    assert await ended.get_by_test_id("next-session-button").is_visible()  # still bookable
    assert await pro.locator("#rejoin-button").is_visible()
    assert SUPPORT in await text_of(pro, "support-text")
    # The client hangs up too: the next booking is on their end page as well.
    await client.get_by_test_id("hangup-button").click()
    await client.get_by_test_id("hangup-confirm").click()
    await client.get_by_test_id("ended-page").wait_for(state="visible", timeout=10_000)
    client_info = await text_of(client, "next-session-info")
    assert client_info == info, (client_info, info)
    assert await client.get_by_test_id("next-session-button").count() == 0
    # Rejoin from the end page brings the professional back.
    await pro.locator("#rejoin-button").click()
    await pro.wait_for_function(
        "() => document.body.dataset.phase === 'call'", timeout=15_000)
    assert pro_log.errors == [] and client_log.errors == []


# -- accessibility, colour schemes and language -----------------------------------------------


def impacts(results: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for violation in results.response["violations"]:
        found.setdefault(violation["impact"] or "unknown", []).append(violation["id"])
    return found


async def test_axe_finds_no_serious_violation_on_lobby_call_and_end_in_both_schemes(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service(CARECALL_SUPPORT_TEXT=SUPPORT)
    axe = Axe()
    # The check can fail: a faint paragraph and a nameless button are serious/critical.
    probe = await browser.new_page()
    await probe.set_content('<html lang="en"><title>probe</title><main><p style="color:#777;'
                            'background:#888">faint</p><button></button></main></html>')
    found = impacts(await axe.run(probe))
    assert found.get("serious") and found.get("critical"), found
    await probe.close()
    figures: dict[str, dict[str, list[str]]] = {}
    for index, scheme in enumerate(("light", "dark")):
        links = service.book(f"b-axe-{scheme}", now() + timedelta(minutes=index),
                             professional=f"pro-{scheme}")
        page, log, _ = await open_page(browser, links["professional"], color_scheme=scheme,
                                       reduced_motion="reduce")
        await page.get_by_test_id("join-button").wait_for(state="visible")
        await network_verdict(page)
        figures[f"lobby/{scheme}"] = impacts(await axe.run(page))
        async with Peer(links["client"]) as peer:
            await join(page)
            await peer.wait_connected(30)
            await wait_connected(page, 30_000)
            await page.get_by_test_id("next-session-button").click()
            await page.get_by_test_id("slot-option").first.wait_for(state="visible")
            figures[f"call/{scheme}"] = impacts(await axe.run(page))
            animation = await page.locator("#remote-placeholder").evaluate(
                "e => getComputedStyle(e).animationName")
            assert animation == "none"  # prefers-reduced-motion honoured
            await page.get_by_test_id("hangup-button").click()
            figures[f"hang-up dialog/{scheme}"] = impacts(await axe.run(page))
            await page.get_by_test_id("hangup-confirm").click()
            await page.get_by_test_id("ended-page").wait_for(state="visible")
            await page.get_by_test_id("support-text").wait_for(state="visible")
            figures[f"end/{scheme}"] = impacts(await axe.run(page))
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        figures[f"background/{scheme}"] = {"rgb": [background]}
        assert log.errors == []
    print("axe violations by impact:", json.dumps(figures, indent=1))
    light = figures["background/light"]["rgb"][0]
    dark = figures["background/dark"]["rgb"][0]
    assert light != dark, "the page follows prefers-color-scheme"
    serious = {page: found for page, found in figures.items()
               if found.get("serious") or found.get("critical")}
    assert serious == {}


async def test_every_lobby_control_is_reached_from_the_keyboard_with_a_visible_focus(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    page, _log, _ = await open_page(browser, service.book("b-keys", now())["client"])
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=join-button]').disabled")
    backwards: list[str] = []
    for _ in range(5):  # the header's controls come before the lobby's heading
        await page.keyboard.press("Shift+Tab")
        backwards.append(await page.evaluate(
            "() => document.activeElement.dataset.testid || document.activeElement.id"))
    reached = [name for name in backwards if name]
    await page.locator("#lobby-title").focus()
    for _ in range(30):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return [e.dataset.testid || e.id, s.outlineStyle, s.outlineWidth]; }")
        reached.append(focused[0])
        assert focused[1] != "none" and focused[2] != "0px", focused
        if focused[0] == "join-button":
            break
    print("tab order:", reached)
    for wanted in ("language-select", "speaker-test-button", "hide-ip-option",
                   "running-late-minutes", "running-late-button", "join-button"):
        assert wanted in reached, (wanted, reached)
    await page.keyboard.press("Enter")  # join from the keyboard
    await page.wait_for_function("() => document.body.dataset.phase === 'call'")
    assert await page.evaluate("document.activeElement.id") == "call-title"


async def test_the_page_speaks_german_when_the_browser_prefers_it(
        start_service: Callable[..., Service], browser: Browser) -> None:
    service = start_service()
    links = service.book("b-de", now())
    page, log, _ = await open_page(browser, links["client"], locale="de-DE")
    info = await text_of(page, "session-info")
    print("German lobby:", info)
    assert info.startswith(f"Ihre Sitzung mit {PROFESSIONAL}") and "Ihre Zeit" in info
    assert await page.evaluate("document.documentElement.lang") == "de"
    assert await page.get_by_test_id("language-select").input_value() == "de"
    assert "Der Sitzung beitreten" in (await text_of(page, "join-button"))
    missing = await page.evaluate("""async () => {
        const { CATALOGUE } = await import("./assets/i18n.js");
        return Object.keys(CATALOGUE.en).filter((key) => !(key in CATALOGUE.de));
    }""")
    assert missing == []
    await page.get_by_test_id("language-select").select_option("en")
    assert (await text_of(page, "session-info")).startswith("Your session with")
    await page.reload()
    assert (await text_of(page, "session-info")).startswith("Your session with")  # kept
    assert log.errors == []


async def test_a_refused_link_in_german(start_service: Callable[..., Service],
                                        browser: Browser) -> None:
    service = start_service()
    links = service.book("b-de-cancel", now() + timedelta(hours=3))
    service.api("POST", "/api/v1/bookings/b-de-cancel/cancel", {"by": "professional",
                                                               "reason": "ill"})
    page, _log, _ = await open_page(browser, links["client"], locale="de-AT")
    assert "abgesagt" in await text_of(page, "error")
    assert await page.evaluate("window.__gum") == 0
