// One party of a call in Debian's Firefox ESR, for tests/test_firefox.py.
//
// Drives web_client/ over WebDriver BiDi with puppeteer-core (no patched build, no browser
// download). Fake camera and microphone, no permission prompt, headless, a fresh profile
// in the temporary directory.
//
// Protocol, one JSON object a line:
// - stdin, first line: {"url": join link, "expect": "code" | "not verified",
//   "initScript": optional script run before the page's own, "timeoutMs": optional};
//   the link comes on stdin, not argv, so its token is not in `ps`;
// - stdout: {"event": "launched", "pid"}, then "joined", "connected", "playing"
//   (with "muted" and "soundButton"), then "code" (with "code") or "not-verified" (with
//   "reason"), and "closed" (with "errors": the page's console errors and uncaught
//   exceptions) at the end; {"event": "failed", "message"} and exit 1 on any failure;
// - stdin, later lines: "reload" reloads the page and reports the same events again
//   (without "joined": a reload rejoins by itself); "stop", or stdin closing, closes
//   Firefox and exits.
// Every wait is bounded: the call must be up within timeoutMs, stdin closing ends any
// wait, and with no "stop" the page stays open at most IDLE_MS.

import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const FIREFOX = process.env.FIREFOX ?? "/usr/bin/firefox-esr";
const IDLE_MS = 180_000;
const CLOSE_MS = 10_000;

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

// Resolved when stdin closes: whoever started us has gone, so every wait ends at once.
const stdinClosed = {};
stdinClosed.promise = new Promise((resolve) => { stdinClosed.resolve = resolve; });
const stdinGone = stdinClosed.promise.then(() => { throw new Error("stdin closed"); });
stdinGone.catch(() => {});  // handled: only the waits still running care

/** Lines of stdin, one at a time; null once it is closed. */
function lineReader() {
  const lines = [];
  const waiting = [];
  let closed = false;
  const input = createInterface({ input: process.stdin });
  input.on("line", (line) => {
    const waiter = waiting.shift();
    if (waiter) {
      waiter(line);
    } else {
      lines.push(line);
    }
  });
  input.on("close", () => {
    closed = true;
    stdinClosed.resolve();
    for (const waiter of waiting.splice(0)) {
      waiter(null);
    }
  });
  return (timeoutMs) => new Promise((resolve) => {
    if (lines.length > 0) {
      resolve(lines.shift());
    } else if (closed) {
      resolve(null);
    } else {
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(done), 1);
        resolve(null);
      }, timeoutMs);
      const done = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
      waiting.push(done);
    }
  });
}

const text = (testid) => `document.querySelector('[data-testid=${testid}]').textContent`;

/** page.waitForFunction, failing with what was awaited and what the page shows. */
async function waitFor(page, what, expression, timeoutMs) {
  try {
    await Promise.race([
      page.waitForFunction(expression, { timeout: timeoutMs, polling: 100 }),
      stdinGone,
    ]);
  } catch (error) {
    const shown = await page.evaluate(`[${text("status")}, ${text("verification-code")}]`)
      .catch(() => ["?", "?"]);
    throw new Error(`waiting for ${what}: ${error.message} (status ${JSON.stringify(shown[0])}, `
      + `code ${JSON.stringify(shown[1])})`);
  }
}

async function waitCall(page, { expect, timeoutMs, other }) {
  await waitFor(page, "the call to connect", `${text("status")}.includes("connected")`,
    timeoutMs);
  emit("connected");
  await waitFor(page, "the remote video", `(() => {
    const v = document.querySelector("[data-testid=remote-video]");
    return v.readyState >= 2 && v.videoWidth > 0 && !v.paused;
  })()`, timeoutMs);
  const start = await page.evaluate(
    'document.querySelector("[data-testid=remote-video]").currentTime');
  await waitFor(page, "the remote video to play on",
    `document.querySelector("[data-testid=remote-video]").currentTime > ${start} + 0.2`,
    timeoutMs);
  emit("playing", await page.evaluate(`({
    muted: document.querySelector("[data-testid=remote-video]").muted,
    soundButton: !document.getElementById("sound-button").hidden,
  })`));
  if (expect === "not verified") {
    await waitFor(page, '"not verified"',
      `${text("verification-code")}.trim() === "not verified"`, timeoutMs);
    emit("not-verified", { reason: await page.evaluate(
      'document.querySelector("[data-testid=verification-code]").title') });
    return null;
  }
  await waitFor(page, "a 6-digit verification code", `(() => {
    const shown = ${text("verification-code")}.trim();
    return /^\\d{6}$/.test(shown) && shown !== ${JSON.stringify(other)};
  })()`, timeoutMs);
  const code = (await page.evaluate(text("verification-code"))).trim();
  emit("code", { code });
  return code;
}

async function run(browser, config, nextLine, errors) {
  const page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") {
      errors.push(`console: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => { errors.push(`pageerror: ${error.message}`); });
  if (config.initScript) {
    await page.evaluateOnNewDocument(config.initScript);
  }
  const timeoutMs = config.timeoutMs ?? 45_000;
  await page.goto(config.url);
  await waitFor(page, "the preview (join button enabled)",
    '!document.querySelector("[data-testid=join-button]").disabled', timeoutMs);
  await page.click("[data-testid=join-button]");
  emit("joined");
  let code = await waitCall(page, { expect: config.expect, timeoutMs, other: null });
  for (;;) {
    const line = await nextLine(IDLE_MS);
    if (line === null || line.trim() === "stop") {
      break;
    }
    if (line.trim() === "reload") {
      await page.reload();
      code = await waitCall(page, { expect: config.expect, timeoutMs, other: code });
    } else {
      throw new Error(`unknown command ${JSON.stringify(line)}`);
    }
  }
}

async function main() {
  const nextLine = lineReader();
  const first = await nextLine(30_000);
  if (first === null) {
    throw new Error("no configuration line on stdin");
  }
  const config = JSON.parse(first);
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    protocolTimeout: 30_000,
    extraPrefsFirefox: {
      "media.navigator.streams.fake": true,
      "media.navigator.permission.disabled": true,
    },
  });
  emit("launched", { pid: browser.process()?.pid ?? null });
  try {
    await run(browser, config, nextLine, errors);
  } finally {
    await close(browser);
  }
  emit("closed", { errors });
}

/** Close Firefox; kill it if it does not go within CLOSE_MS. */
async function close(browser) {
  const kill = () => browser.process()?.kill("SIGKILL");
  const timer = setTimeout(kill, CLOSE_MS);
  await Promise.race([
    browser.close().catch(kill),
    new Promise((resolve) => { setTimeout(resolve, CLOSE_MS + 2000); }),
  ]);
  clearTimeout(timer);
}

/** Without the link's token: errors such as a failed navigation quote the URL. */
function redact(message) {
  return String(message).replace(/#t=[^\s"'`]*/g, "#t=(token)");
}

const errors = [];
main().then(() => process.exit(0), (error) => {
  emit("failed", { message: redact(error?.message ?? error), errors: errors.map(redact) });
  process.exit(1);
});
