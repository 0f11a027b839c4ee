"""Screenshots of the call page for the README: the lobby, the call and the end page, in
the light and the dark scheme, saved as PNG files.

    python -m tools.screenshots [--out docs/images]

Starts its own ``carecall serve --demo`` (SQLite in a temporary directory, a free port)
and drives Debian's Chromium with its fake camera and microphone: the professional and
the client are two browser contexts. Takes about half a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS, network_verdict

REPO = Path(__file__).resolve().parent.parent
VIEWPORT = {"width": 1200, "height": 760}
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_demo(var_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``carecall serve --demo``; the process and its two links by role."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARECALL_")}
    env["CARECALL_SUPPORT_TEXT"] = "Trouble joining? Call the front desk: 0800 123 456."
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter and fixed arguments)
        [sys.executable, "-m", "carecall", "serve", "--demo", "--port", str(free_port()),
         "--var-dir", str(var_dir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    links: dict[str, str] = {}
    for line in proc.stdout:
        match = re.match(r"^(professional|client): (\S+)$", line.strip())
        if match:
            links[match[1]] = match[2]
        if len(links) == 2:
            return proc, links
    proc.kill()
    raise SystemExit("screenshots: carecall serve --demo ended without printing its links")


async def page_for(browser: Browser, url: str, scheme: str) -> Page:
    context = await browser.new_context(viewport=VIEWPORT,  # type: ignore[arg-type]
                                        color_scheme=scheme,  # type: ignore[arg-type]
                                        locale="en-GB", timezone_id="Europe/London",
                                        permissions=["camera", "microphone"])
    page = await context.new_page()
    await page.goto(url)
    return page


async def shoot(page: Page, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    await page.screenshot(path=str(path))
    print(f"screenshots: wrote {path}", flush=True)


async def ready_to_join(page: Page) -> None:
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=join-button]').disabled",
        timeout=TIMEOUT_MS)
    await network_verdict(page, TIMEOUT_MS)
    await page.wait_for_timeout(1200)  # a beep or two on the microphone meter


async def one_scheme(browser: Browser, links: dict[str, str], scheme: str, out: Path) -> None:
    client = await page_for(browser, links["client"], scheme)
    await ready_to_join(client)
    await shoot(client, out, f"lobby-{scheme}")
    professional = await page_for(browser, links["professional"], scheme)
    await ready_to_join(professional)
    await professional.get_by_test_id("join-button").click()
    await client.get_by_test_id("join-button").click()
    await professional.wait_for_function(
        "() => document.querySelector('[data-testid=status]').textContent"
        ".includes('connected') && /^\\d{6}$/.test(document.querySelector("
        "'[data-testid=verification-code]').textContent.trim())", timeout=TIMEOUT_MS)
    await professional.wait_for_function(  # the first quality grade (every 2 s)
        "() => document.querySelector('[data-testid=quality-indicator]').dataset.quality"
        " !== 'unknown'", timeout=TIMEOUT_MS)
    await professional.get_by_test_id("chat-input").fill("I'll send the worksheet here.")
    await professional.get_by_test_id("chat-send").click()
    await professional.wait_for_timeout(1500)  # the remote video settles
    await shoot(professional, out, f"call-{scheme}")
    await professional.get_by_test_id("hangup-button").click()
    await professional.get_by_test_id("hangup-confirm").click()
    await professional.get_by_test_id("ended-page").wait_for(timeout=TIMEOUT_MS)
    await professional.wait_for_timeout(500)
    await shoot(professional, out, f"ended-{scheme}")
    await client.get_by_test_id("hangup-button").click()
    await client.get_by_test_id("hangup-confirm").click()
    await client.context.close()
    await professional.context.close()


async def run(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="carecall-shots-") as tmp:
        proc, links = start_demo(Path(tmp) / "var")
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                           args=CHROMIUM_ARGS)
                try:
                    for scheme in ("light", "dark"):
                        await one_scheme(browser, links, scheme, out)
                finally:
                    await browser.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.screenshots",
        description="Save screenshots of the lobby, the call and the end page (light and "
                    "dark) by driving Chromium against a demo carecall serve.")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images",
                        help="the folder for the PNG files (default: docs/images)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"screenshots: Chromium is not at {CHROMIUM} (apt-get install -y chromium)",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(run(args.out))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
