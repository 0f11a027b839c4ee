"""The professional's "Book next session" panel in Debian's Chromium against a real
``carecall serve``: a day, then a time, then a question naming the client, the range and
the funding; Back books nothing, Confirm books exactly one; 12 h or 24 h by locale, the
viewer's own time only when their zone differs.

One server for the module; each test has its own professional, client and booking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page

from tests.browser import CHROMIUM, PageLog, join
from tests.processes import Served, clean_env, request_json

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium at /usr/bin"),
]

KEY = "booking-panel-test-api-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
BERLIN = ZoneInfo("Europe/Berlin")
DASH = "\u2013"  # Intl's range separator, the en dash


class Service:
    """The module's ``carecall serve`` and its gate API."""

    def __init__(self, base: str) -> None:
        self.base = base

    def api(self, method: str, path: str, body: Any = None, *,
            headers: dict[str, str] | None = None) -> Any:
        status, data = request_json(method, self.base + path, body, headers or AUTH)
        assert status in (200, 201), (method, path, status, data)
        return data

    def book(self, name: str, *, credits: int) -> dict[str, str]:
        """Dr Ada (Berlin, free 09:00-12:00 every day) and the client Bo Berg of hub acme
        with ``credits``, in a sponsored booking that starts now; its links and token."""
        self.api("PUT", f"/api/v1/professionals/pro-{name}", {
            "name": "Dr Ada Lovelace", "email": "ada@example.org", "timezone": "Europe/Berlin",
            "session_minutes": 50, "buffer_minutes": 10,
            "availability": [{"weekday": d, "start": "09:00", "end": "12:00"}
                             for d in range(7)]})
        self.api("PUT", f"/api/v1/clients/cli-{name}", {
            "name": "Bo Berg", "email": "bo@example.org", "timezone": "Europe/Berlin",
            "hub_id": "acme"})
        self.api("POST", "/api/v1/hubs/acme/credits",
                 {"client_id": f"cli-{name}", "credits": credits})
        start = datetime.now(UTC).replace(microsecond=0)
        self.api("PUT", f"/api/v1/bookings/b-{name}", {
            "professional_id": f"pro-{name}", "client_id": f"cli-{name}",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=50)).isoformat(),
            "funding": "sponsored", "source": "hub"})
        links = self.api("POST", f"/api/v1/bookings/b-{name}/links")
        url = links["professional"]["url"]
        return {"url": url, "token": url.split("#t=")[1],
                "room": url.split("/s/")[1].split("#")[0], "name": name}

    def bookings(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api(
            "GET", f"/api/v1/bookings?professional_id=pro-{name}")["items"]
        return items

    def free_days(self, room: dict[str, str]) -> list[list[dict[str, str]]]:
        """The gate's free slots for the room, grouped by calendar day in Berlin."""
        data = self.api("GET", f"/api/v1/rooms/{room['room']}/next-slots?days=14",
                        headers={"Authorization": f"Bearer {room['token']}"})
        return [list(day) for _, day in groupby(data["slots"],
                                                key=lambda s: berlin(s["starts_at"]).date())]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("booking-panel")
    served = Served(["serve", "--port", "0", "--api-key", KEY, "--var-dir", str(tmp / "var")],
                    tmp, clean_env())
    try:
        yield Service(served.ready())
    finally:
        served.close()


def berlin(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(BERLIN)


def day_name(iso: str) -> str:
    """"Tue 9 Dec", as en-GB writes a day."""
    local = berlin(iso)
    return f"{local:%a} {local.day} {local:%b}"


def clock(slot: dict[str, str]) -> str:
    """"09:00-09:50" (with the en dash) in Berlin, as en-GB and German write a range."""
    return f"{berlin(slot['starts_at']):%H:%M}{DASH}{berlin(slot['ends_at']):%H:%M}"


def plain(text: str | None) -> str:
    """Intl's spacing made comparable: narrow spaces as spaces, none around the dash."""
    text = (text or "").replace("\u202f", " ").replace("\u2009", " ").replace("\xa0", " ")
    return re.sub(rf"\s*{DASH}\s*", DASH, text).strip()


async def in_call(browser: Browser, room: dict[str, str], **context: Any
                  ) -> tuple[Page, PageLog]:
    """The professional's page, joined (alone), the panel open and its days shown."""
    ctx = await browser.new_context(permissions=["camera", "microphone"],
                                    viewport={"width": 1280, "height": 900}, **context)
    page = await ctx.new_page()
    log = PageLog()
    log.attach(page)
    await page.goto(room["url"])
    await join(page)
    await page.get_by_test_id("next-session-button").click()
    await page.get_by_test_id("slot-day").first.wait_for(state="visible", timeout=10_000)
    return page, log


async def focused_testid(page: Page) -> str | None:
    """The test id of the focused element, or of the `slot-option` around it."""
    testid: str | None = await page.evaluate(
        "() => { const e = document.activeElement;"
        " return e.dataset.testid ?? e.closest('[data-testid]')?.dataset.testid ?? null; }")
    return testid


async def test_the_professional_picks_a_day_then_a_time_and_confirms(
        service: Service, browser: Browser) -> None:
    """Days with counts; the second day's times; the question names Bo, the range and the
    sponsored credits; Back books nothing; Confirm books exactly that one, sponsored."""
    room = service.book("pick", credits=4)  # the current booking holds one: 3 left
    days = service.free_days(room)
    assert len(days) >= 2
    page, log = await in_call(browser, room, locale="en-GB", timezone_id="Europe/Berlin")

    pickers = page.get_by_test_id("slot-day")
    assert await pickers.count() == len(days)
    labels = [plain(text) for text in await pickers.all_text_contents()]
    expected = [f"{day_name(day[0]['starts_at'])}{len(day)} free time"
                + ("s" if len(day) > 1 else "") for day in days]
    assert labels == expected
    assert await pickers.first.get_attribute("aria-pressed") == "true"

    second = days[1]
    await pickers.nth(1).click()
    assert await pickers.nth(1).get_attribute("aria-pressed") == "true"
    assert await pickers.first.get_attribute("aria-pressed") == "false"
    assert await focused_testid(page) == "slot-option"  # focus moved to the times
    options = page.get_by_test_id("slot-option")
    shown = [plain(text) for text in await options.all_text_contents()]
    wanted = [clock(s) for s in second]
    assert shown == wanted  # same zone: no "CET", no "your time"
    assert await page.locator(".slot-local").count() == 0

    slot = second[1] if len(second) > 1 else second[0]
    when = f"{day_name(slot['starts_at'])}, {clock(slot)}"
    await options.nth(second.index(slot)).click()
    await page.get_by_test_id("book-slot-button").click()
    step = page.get_by_test_id("booking-confirm-step")
    await step.wait_for(state="visible")
    question = plain(await page.locator("#booking-question").text_content())
    assert question == f"Book Bo for {when} on a sponsored credit (Bo has 3 left)?"
    assert await focused_testid(page) == "book-confirm-button"

    await page.get_by_test_id("book-cancel-button").click()
    await step.wait_for(state="hidden")
    assert await focused_testid(page) == "book-slot-button"
    assert await options.nth(second.index(slot)).locator("input").is_checked()  # kept
    assert [b["booking_id"] for b in service.bookings("pick")] == ["b-pick"]  # nothing sent

    await page.get_by_test_id("book-slot-button").click()
    await page.get_by_test_id("book-confirm-button").click()
    confirmation = page.get_by_test_id("booking-confirmation")
    await confirmation.wait_for(state="visible", timeout=10_000)
    assert plain(await confirmation.text_content()) == f"Booked: {when}, sponsored."
    assert await focused_testid(page) == "booking-confirmation"
    new = [b for b in service.bookings("pick") if b["booking_id"] != "b-pick"]
    assert [(b["starts_at"], b["funding"]) for b in new] == [(slot["starts_at"], "sponsored")]
    credits = service.api("GET", "/api/v1/clients/cli-pick/credits")
    assert credits["balance"] == 2
    assert log.errors == []


async def test_the_keyboard_books_a_self_paid_session_in_german(
        service: Service, browser: Browser) -> None:
    """Tab and Enter only: a day, a time, the question (self-paid: no credit left), Escape
    goes back, Enter confirms; the gate has one new private booking."""
    room = service.book("keys", credits=1)  # the current booking took the only credit
    days = service.free_days(room)
    page, log = await in_call(browser, room, locale="de-DE", timezone_id="Europe/Berlin")
    await page.get_by_test_id("slot-day").nth(1).focus()
    await page.keyboard.press("Enter")
    assert await focused_testid(page) == "slot-option"
    await page.keyboard.press("Space")
    first = days[1][0]
    assert await page.get_by_test_id("slot-option").first.locator("input").is_checked()
    await page.keyboard.press("Tab")
    assert await focused_testid(page) == "book-slot-button"
    await page.keyboard.press("Enter")
    assert await focused_testid(page) == "book-confirm-button"
    question = plain(await page.locator("#booking-question").text_content())
    assert question.startswith("Bo für ") and "selbst bezahlt" in question, question
    assert clock(first) in question
    await page.keyboard.press("Escape")
    await page.get_by_test_id("booking-confirm-step").wait_for(state="hidden")
    assert await focused_testid(page) == "book-slot-button"
    assert len(service.bookings("keys")) == 1
    await page.keyboard.press("Enter")
    await page.keyboard.press("Enter")
    confirmation = page.get_by_test_id("booking-confirmation")
    await confirmation.wait_for(state="visible", timeout=10_000)
    assert plain(await confirmation.text_content()).endswith(", selbst bezahlt."), (
        await confirmation.text_content())
    new = [b for b in service.bookings("keys") if b["booking_id"] != "b-keys"]
    assert [(b["starts_at"], b["funding"]) for b in new] == [(first["starts_at"], "private")]
    assert log.errors == []


@pytest.mark.parametrize("locale,zone", [("en-US", "Europe/Berlin"), ("en-GB", "Europe/Berlin"),
                                         ("en-GB", "America/New_York")])
async def test_times_follow_the_viewers_locale_and_zone(
        service: Service, browser: Browser, locale: str, zone: str) -> None:
    """en-US reads 12 h ("9:00 - 9:50 AM"), en-GB 24 h ("09:00-09:50"); a viewer in
    another zone sees the professional's zone named and their own time beside it."""
    room = service.book(f"fmt-{locale}-{zone.split('/')[1]}", credits=2)
    first = service.free_days(room)[0][0]
    page, log = await in_call(browser, room, locale=locale, timezone_id=zone)
    option = page.get_by_test_id("slot-option").first
    time = plain(await option.locator(".slot-time").text_content())
    start, end = berlin(first["starts_at"]), berlin(first["ends_at"])
    print(locale, zone, repr(time))
    if locale == "en-US":
        assert re.fullmatch(rf"{start:%-I:%M}{DASH}{end:%-I:%M} (AM|PM)", time), time
    elif zone == "Europe/Berlin":
        assert time == clock(first)
        assert await page.locator(".slot-local").count() == 0
    else:
        assert time.startswith(f"{clock(first)} "), time
        assert time.endswith((" CET", " CEST", " GMT+1", " GMT+2")), time
        local = plain(await option.locator(".slot-local").text_content())
        there = datetime.fromisoformat(first["starts_at"].replace("Z", "+00:00")
                                       ).astimezone(ZoneInfo(zone))
        assert local.startswith("your time: ") and f"{there:%H:%M}" in local, local
    assert log.errors == []
