"""The call page in Debian's Firefox ESR against Chromium and against the headless peer.

Firefox is driven by tests/firefox/call.mjs (npm's puppeteer-core over WebDriver BiDi, no
patched build); `.ci/run` installs firefox-esr and runs `npm ci` there. The other party is
Chromium through Playwright (tests/browser.py) or the in-process aiortc ``Peer``.
Firefox reports no certificate stats, so these calls are what shows that its page
computes the verification code from what it has (the other side's handshake certificate,
or the negotiated descriptions) and gets the same code as the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer import Peer
from tests.browser import (
    CHROMIUM,
    join,
    open_page,
    verification_code,
    wait_connected,
    wait_video_playing,
)
from tests.conftest import GateClient, book_now

DRIVER_DIR = Path(__file__).resolve().parent / "firefox"
DRIVER = DRIVER_DIR / "call.mjs"
FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
NODE = shutil.which("node") or "/usr/bin/node"
EVENT_TIMEOUT = 50.0  # the driver's own waits end after 45 s
EXIT_TIMEOUT = 20.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path(FIREFOX).exists(), reason="needs firefox-esr (.ci/run)"),
    pytest.mark.skipif(not (DRIVER_DIR / "node_modules" / "puppeteer-core").is_dir(),
                       reason="needs `npm ci` in tests/firefox (.ci/run)"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium at /usr/bin"),
]

# Firefox as a browser without RTCDtlsTransport.getRemoteCertificates(): the page must then
# fall back to the fingerprints of the negotiated descriptions.
NO_REMOTE_CERTIFICATES = "delete RTCDtlsTransport.prototype.getRemoteCertificates;"


class Firefox:
    """One tests/firefox/call.mjs process: a Firefox party of a call."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr = stderr
        self.browser_pid: int | None = None

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def event(self, name: str, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next event called ``name``; the driver's failure or silence fails the test."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"the driver exited ({await self.proc.wait()}) "
                                         f"before {name!r}; stderr:\n{self.stderr_text()}")
                event: dict[str, Any] = json.loads(raw)
                if event["event"] == "launched":
                    self.browser_pid = event["pid"]
                if event["event"] == "failed":
                    raise AssertionError(f"Firefox: {event['message']}; page errors: "
                                         f"{event['errors']}; stderr:\n{self.stderr_text()}")
                if event["event"] == name:
                    return event

    async def code(self) -> str:
        event = await self.event("code")
        code: str = event["code"]
        return code

    async def stop(self, *, by_closing_stdin: bool = False) -> list[str]:
        """Close Firefox ("stop", or stdin closing); the page's console errors and uncaught
        exceptions. The driver must exit 0 and take Firefox with it."""
        if by_closing_stdin:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        else:
            await self.send("stop")
        closed = await self.event("closed", EXIT_TIMEOUT)
        async with asyncio.timeout(EXIT_TIMEOUT):
            assert await self.proc.wait() == 0
        assert self.browser_pid is not None
        for _ in range(50):
            if not _is_firefox(self.browser_pid):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("Firefox still runs after its driver exited")
        errors: list[str] = closed["errors"]
        return errors

    def stderr_text(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:]

    async def kill(self) -> None:
        """Whatever state it is in: the driver and its Firefox are gone afterwards."""
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # the driver closes Firefox when stdin closes
            for stop in (self.proc.terminate, self.proc.kill):  # SIGTERM closes Firefox
                try:
                    async with asyncio.timeout(EXIT_TIMEOUT):
                        await self.proc.wait()
                    break
                except TimeoutError:
                    stop()
            await self.proc.wait()
        if self.browser_pid is not None and _is_firefox(self.browser_pid):
            # Left over after a killed driver: puppeteer starts Firefox as the leader of a
            # process group of its own, with its content processes in it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.browser_pid, signal.SIGKILL)


def _is_firefox(pid: int) -> bool:
    """Still running, and still Firefox (not another process that got its id since)."""
    try:
        return b"firefox" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@asynccontextmanager
async def firefox(url: str, tmp_path: Path, *, expect: str = "code",
                  init_script: str | None = None) -> AsyncIterator[Firefox]:
    """A Firefox party that opens ``url`` and joins; the link goes over stdin, not argv."""
    scratch = tmp_path / f"firefox-{len(list(tmp_path.glob('firefox-*')))}"
    scratch.mkdir()
    stderr = scratch / "stderr.log"
    env = {**os.environ, "TMPDIR": str(scratch), "FIREFOX": FIREFOX}
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            NODE, str(DRIVER), cwd=DRIVER_DIR, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=err)
    party = Firefox(proc, stderr)
    try:
        config: dict[str, Any] = {"url": url, "expect": expect}
        if init_script is not None:
            config["initScript"] = init_script
        await party.send(json.dumps(config))
        await party.event("launched")
        yield party
    finally:
        await party.kill()


async def chromium_party(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page, log = await open_page(browser, url)
    await join(page)
    return page, log.errors


# -- Firefox <-> Chromium ------------------------------------------------------------------


@pytest.mark.parametrize("first", ["firefox", "chromium"])
async def test_firefox_and_chromium_connect_with_the_same_code(
        service: GateClient, browser: Browser, tmp_path: Path, first: str) -> None:
    """Either joining first, either role: media plays both ways, the codes are equal."""
    room = await book_now(service)
    ff_role, cr_role = (("professional", "client") if first == "firefox"
                        else ("client", "professional"))
    page: Page | None = None
    cr_errors: list[str] = []
    if first == "chromium":
        page, cr_errors = await chromium_party(browser, room["links"][cr_role])
    async with firefox(room["links"][ff_role], tmp_path) as ff:
        await ff.event("joined")
        if page is None:
            page, cr_errors = await chromium_party(browser, room["links"][cr_role])
        await ff.event("connected")
        playing = await ff.event("playing")
        ff_code = await ff.code()
        await wait_connected(page)
        await wait_video_playing(page, "remote-video")
        assert await verification_code(page) == ff_code
        ff_errors = await ff.stop()
    assert playing["muted"] is False and playing["soundButton"] is False
    assert ff_errors == [] and cr_errors == []


async def test_firefox_reloading_opposite_chromium_gets_a_new_equal_code(
        service: GateClient, browser: Browser, tmp_path: Path) -> None:
    """A reload in Firefox rejoins by itself: video plays again, a new code, equal again."""
    room = await book_now(service)
    page, cr_errors = await chromium_party(browser, room["links"]["professional"])
    async with firefox(room["links"]["client"], tmp_path) as ff:
        before = await ff.code()
        assert await verification_code(page) == before
        await ff.send("reload")
        replayed = await ff.event("playing")
        after = await ff.code()
        assert after != before
        assert await verification_code(page, other_than=before) == after
        await wait_video_playing(page, "remote-video")
        ff_errors = await ff.stop()
    # No click after a reload: if Firefox blocks sound, the page plays muted and offers a
    # button (Firefox 153 lets a page that holds the camera play sound at once).
    assert replayed["soundButton"] is replayed["muted"]
    assert ff_errors == [] and cr_errors == []


async def test_firefox_without_remote_certificates_takes_the_code_from_the_descriptions(
        service: GateClient, browser: Browser, tmp_path: Path) -> None:
    """With neither certificate stats nor getRemoteCertificates(), Firefox computes the
    code from the negotiated SHA-256 fingerprints: equal to Chromium's, from its stats."""
    room = await book_now(service)
    page, cr_errors = await chromium_party(browser, room["links"]["professional"])
    async with firefox(room["links"]["client"], tmp_path,
                       init_script=NO_REMOTE_CERTIFICATES) as ff:
        ff_code = await ff.code()
        assert await verification_code(page) == ff_code
        ff_errors = await ff.stop()
    assert ff_errors == [] and cr_errors == []


# -- Firefox <-> the headless peer -----------------------------------------------------------


@pytest.mark.parametrize("first", ["firefox", "peer"])
async def test_firefox_and_the_headless_peer_connect_with_the_same_code(
        service: GateClient, tmp_path: Path, first: str) -> None:
    """Either joining first: the peer decodes Firefox's video, Firefox plays the peer's,
    and both show the same code."""
    room = await book_now(service)
    ff_role, peer_role = (("professional", "client") if first == "firefox"
                          else ("client", "professional"))
    async with contextlib.AsyncExitStack() as stack:
        peer: Peer | None = None
        if first == "peer":
            peer = await stack.enter_async_context(Peer(room["links"][peer_role]))
            await peer.wait_admitted(10)
        ff = await stack.enter_async_context(firefox(room["links"][ff_role], tmp_path))
        await ff.event("joined")
        if peer is None:
            peer = await stack.enter_async_context(Peer(room["links"][peer_role]))
        await peer.wait_connected(30)
        await ff.event("playing")
        ff_code = await ff.code()
        stats = peer.stats
        await peer.wait_for(lambda: stats.verification_code is not None, 10, "code")
        assert stats.verification_code == ff_code
        await peer.wait_for(lambda: stats.frames_received >= 10, 10,
                            "Firefox's video at the peer")
        ff_errors = await ff.stop(by_closing_stdin=True)
        await peer.leave()
    assert ff_errors == []


async def test_firefox_says_not_verified_when_no_code_can_be_computed(
        service: GateClient, tmp_path: Path) -> None:
    """aiortc's description also has SHA-384 and SHA-512 fingerprints: without the
    handshake certificate the code cannot be had from it, and the page says so."""
    room = await book_now(service)
    async with Peer(room["links"]["professional"]) as peer, \
            firefox(room["links"]["client"], tmp_path, expect="not verified",
                    init_script=NO_REMOTE_CERTIFICATES) as ff:
        await peer.wait_connected(30)
        event = await ff.event("not-verified")
        assert "sha-384" in event["reason"] and "SHA-256" in event["reason"]
        await peer.wait_for(lambda: peer.stats.verification_code is not None, 10, "code")
        ff_errors = await ff.stop()
        await peer.leave()
    assert ff_errors == []


# -- the fingerprints of the negotiated descriptions (the fallback's rules, in Chromium) ------

SHA256_A = ":".join(["AB"] * 32)
SHA256_B = ":".join(["CD"] * 32)
SHA384 = ":".join(["EF"] * 48)


def sdp(session: list[str], *media: list[str]) -> str:
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", *session]
    for index, extra in enumerate(media):
        lines += [f"m=audio {9 + index} UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", *extra]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(("description", "whose", "expected"), [
    pytest.param(sdp([f"a=fingerprint:sha-256 {SHA256_A.lower()}"], []), "theirs", SHA256_A,
                 id="session-level"),
    pytest.param(sdp([], [f"a=fingerprint:SHA-256 {SHA256_A}"],
                     [f"a=fingerprint:sha-256 {SHA256_A}"]), "theirs", SHA256_A,
                 id="media-level"),
    pytest.param(sdp([], [f"a=fingerprint:sha-256 {SHA256_A}",
                          f"a=fingerprint:sha-384 {SHA384}"]), "ours", SHA256_A,
                 id="ours-with-sha-384-too"),
    pytest.param(sdp([], [f"a=fingerprint:sha-256 {SHA256_A}",
                          f"a=fingerprint:sha-384 {SHA384}"]), "theirs",
                 "error: the other side's description has a sha-384 fingerprint: the code "
                 "needs SHA-256 and cannot be computed from the description",
                 id="theirs-with-sha-384-too"),
    pytest.param(sdp([f"a=fingerprint:sha-384 {SHA384}"], []), "ours",
                 "error: our description has no SHA-256 fingerprint (only sha-384): the code "
                 "cannot be computed from the description", id="ours-without-sha-256"),
    pytest.param(sdp([], [f"a=fingerprint:sha-256 {SHA256_A}"],
                     [f"a=fingerprint:sha-256 {SHA256_B}"]), "theirs",
                 "error: the other side's description names more than one certificate",
                 id="two-certificates"),
    pytest.param(sdp([], []), "theirs",
                 "error: the other side's negotiated description has no DTLS fingerprint",
                 id="none"),
])
async def test_the_fingerprint_of_a_description(service: GateClient, browser: Browser,
                                                description: str, whose: str,
                                                expected: str) -> None:
    """descriptionFingerprint() takes SHA-256 from session- or media-level lines, and
    refuses (saying why) what a relay could have decorated or what names no certificate."""
    room = await book_now(service)
    page, _log = await open_page(browser, room["links"]["client"].split("#")[0])
    result = await page.evaluate("""async ([sdp, whose]) => {
        const { descriptionFingerprint } = await import('/s/assets/verify.js');
        try { return descriptionFingerprint(sdp, whose); }
        catch (error) { return `error: ${error.message}`; }
    }""", [description, whose])
    assert result == expected


async def test_chromiums_descriptions_name_its_wire_certificates_in_sha_256(
        service: GateClient, browser: Browser) -> None:
    """Two connected peer connections in Chromium: both descriptions carry SHA-256 only,
    and the fingerprints taken from them equal those of the certificate stats."""
    room = await book_now(service)
    page, log = await open_page(browser, room["links"]["client"].split("#")[0])
    result = await page.evaluate("""async () => {
        const { descriptionFingerprint, dtlsFingerprints, sdpFingerprintLines } =
            await import('/s/assets/verify.js');
        const a = new RTCPeerConnection(), b = new RTCPeerConnection();
        a.onicecandidate = ({ candidate }) => candidate && b.addIceCandidate(candidate);
        b.onicecandidate = ({ candidate }) => candidate && a.addIceCandidate(candidate);
        a.createDataChannel('x');
        await a.setLocalDescription();
        await b.setRemoteDescription(a.localDescription);
        await b.setLocalDescription();
        await a.setRemoteDescription(b.localDescription);
        let stats = null;
        for (let i = 0; i < 100 && stats === null; i += 1) {
            await new Promise((resolve) => { setTimeout(resolve, 100); });
            stats = await dtlsFingerprints(a);
        }
        const out = {
            stats,
            sdp: [descriptionFingerprint(a.currentLocalDescription.sdp, 'ours'),
                  descriptionFingerprint(a.currentRemoteDescription.sdp, 'theirs')],
            algorithms: [...new Set([a.currentLocalDescription, a.currentRemoteDescription]
                .flatMap((d) => sdpFingerprintLines(d.sdp).map((l) => l.algorithm)))],
        };
        a.close();
        b.close();
        return out;
    }""")
    assert result["algorithms"] == ["sha-256"]
    assert result["stats"] is not None and result["sdp"] == result["stats"]
    assert result["stats"][0] != result["stats"][1]
    assert log.errors == []
