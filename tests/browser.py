"""Playwright helpers for the web client tests: Debian's Chromium with fake media devices.

``playwright install`` cannot download browsers here, so the system Chromium is driven
directly. Its fake camera shows a moving test pattern and its fake microphone beeps, and
permission prompts are answered yes.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageLog:
    """Console errors and uncaught exceptions of one page."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _on_page_error(self, error: Error) -> None:
        self.errors.append(f"pageerror: {error.message}")


async def open_page(browser: Browser, url: str, *, viewport: dict[str, int] | None = None,
                    init_script: str | None = None) -> tuple[Page, PageLog]:
    """A page in its own context (its own storage, like another person's browser)."""
    context = await browser.new_context(viewport=viewport or DESKTOP,  # type: ignore[arg-type]
                                        permissions=["camera", "microphone"])
    if init_script is not None:
        await context.add_init_script(init_script)
    page = await context.new_page()
    log = PageLog()
    log.attach(page)
    await page.goto(url)
    return page, log


async def join(page: Page, timeout: float = 10_000) -> None:
    """Wait for the preview to be ready, then press the join button."""
    button = page.get_by_test_id("join-button")
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=join-button]').disabled",
        timeout=timeout)
    await button.click()


async def network_verdict(page: Page, timeout: float = 20_000) -> tuple[str, str]:
    """The lobby's network verdict once its check has ended: (code, the words shown)."""
    await page.wait_for_function(
        "() => document.querySelector('[data-testid=network-verdict]').dataset.verdict"
        " !== 'checking'", timeout=timeout)
    verdict = page.get_by_test_id("network-verdict")
    return (await verdict.get_attribute("data-verdict") or "",
            (await verdict.text_content() or "").strip())


async def wait_connected(page: Page, timeout: float = 20_000) -> None:
    await page.wait_for_function(
        "() => document.querySelector('[data-testid=status]').textContent"
        ".includes('connected')", timeout=timeout)


async def wait_video_playing(page: Page, testid: str = "remote-video",
                             timeout: float = 20_000) -> None:
    """The element has decoded frames and its clock moves on."""
    selector = f"[data-testid={testid}]"
    await page.wait_for_function(
        f"() => {{ const v = document.querySelector('{selector}');"
        " return v.readyState >= 2 && v.videoWidth > 0 && !v.paused; }", timeout=timeout)
    start = await page.evaluate(f"document.querySelector('{selector}').currentTime")
    await page.wait_for_function(
        f"t => document.querySelector('{selector}').currentTime > t + 0.2", arg=start,
        timeout=timeout)


async def verification_code(page: Page, timeout: float = 15_000,
                            other_than: str | None = None) -> str:
    """The 6-digit code once the page shows one (optionally a different one than before)."""
    await page.wait_for_function(
        "old => { const t = document.querySelector('[data-testid=verification-code]')"
        ".textContent.trim(); return /^\\d{6}$/.test(t) && t !== old; }",
        arg=other_than, timeout=timeout)
    text = await page.get_by_test_id("verification-code").text_content()
    assert text is not None
    return text.strip()
