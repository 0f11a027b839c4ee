// The call page: the link check, the lobby (who and when, the pre-call check, "running
// late"), the signalling socket, the peer connection, the verification code, the ending
// and the professional's booking panel. docs/protocol.md is the behaviour this follows;
// peer/client.py is the headless peer it must interoperate with.
//
// Invariants:
// - the link is checked (GET .../session) before the camera or microphone is asked for:
//   a refused link never prompts;
// - the page is in one phase of PHASES at a time and moves only along its arrows;
//   everything visible is drawn by `render` from `state`, so a language switch redraws
//   all of it;
// - all signalling messages and peer-connection events are handled one at a time, in
//   order (`serial`), so a negotiation step never interleaves with another;
// - once both parties are present the impolite side offers; a `peer-joined` that is not
//   a resume means the other side lost its connection, so ours is rebuilt too;
// - `status` says "connected" only while the media path is up (connectionState);
// - times the server decides (the room opening, the session's end) are counted on the
//   server's clock: `now()` is this device's clock corrected by the session's `now`.

import { BookingPanel } from "./booking.js";
import { Call } from "./call.js";
import {
  LANGUAGES, chooseLanguage, formatClock, formatDuration, formatRange, formatTime, language,
  setLanguage, t, viewerTimeZone,
} from "./i18n.js";
import { InCall } from "./incall.js";
import { LocalMedia } from "./media.js";
import { MicMeter, checkNetwork, playTestSound } from "./precall.js";
import { Signalling } from "./signalling.js";
import { $, MISSING_TOKEN, elementsById, errorOf, refusalText, show } from "./ui.js";
import { COMMIT, REVEAL, VerificationError, Verifier, dtlsFingerprints } from "./verify.js";

const WARNING_BEFORE_END_MS = 5 * 60 * 1000;
// After an ICE restart that does not bring the path back, start over on a new connection.
const ICE_RESTART_GRACE_MS = 8000;
// A connection that is not up this long after it began is reported as failed, with the
// cause seen so far: ICE itself may wait for ever (a relay-only side whose TURN server
// never answers has no candidate at all, so nothing ever fails).
const CONNECT_TIMEOUT_MS = 20_000;
// How often the page re-reads the session (notices, the next booking, a cancellation
// while waiting in the lobby).
const SESSION_POLL_MS = 10_000;
const LATE_CHOICES = [5, 10, 15];

// Which phase may follow which. `checking`: the link is being checked; `refused`: it
// cannot be used (retry only when the service could not be reached).
const PHASES = {
  checking: ["lobby", "refused"],
  lobby: ["joining", "refused"],
  joining: ["call", "refused", "ended"],
  call: ["ended", "refused"],
  ended: ["lobby", "refused"],
  refused: ["checking"],
};
// Where focus goes when a phase begins (its heading, so a screen reader starts there),
// unless the person already moved it somewhere still on the page.
const PHASE_FOCUS = { lobby: "lobby-title", joining: "call-title", call: "call-title",
  ended: "ended-title", refused: "refused-title" };

/** `{base}/s/{room}#t={token}` → where to connect and with what. */
function parseLink(location) {
  const path = location.pathname.replace(/\/+$/, "");
  const at = path.lastIndexOf("/s/");
  const room = at >= 0 ? decodeURIComponent(path.slice(at + 3)) : "";
  const base = at >= 0 ? path.slice(0, at) : "";
  const token = new URLSearchParams(location.hash.slice(1)).get("t") ?? "";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return {
    room, token, apiBase: `${location.origin}${base}`,
    roomUrl: `${location.origin}${base}/api/v1/rooms/${encodeURIComponent(room)}`,
    wsUrl: `${scheme}://${location.host}${base}/ws?room=${encodeURIComponent(room)}`,
  };
}

const link = parseLink(window.location);
const joinedKey = `carecall:joined:${link.room}`;
// The lobby's Hide my IP choice survives a reload (which joins straight back in).
const hideIpKey = `carecall:hide-ip:${link.room}`;
const media = new LocalMedia();

const els = elementsById([
  ["status", "status"], ["language", "language-select"], ["warning", "ending-warning"],
  ["peerNotice", "peer-notice"], ["refused", "refused"], ["error", "error"],
  ["refusedNext", "refused-next"], ["retry", "retry-button"], ["ended", "ended"],
  ["endedAt", "ended-at"], ["endedBooked", "ended-booked"], ["endedNext", "ended-next"],
  ["endedRejoin", "ended-rejoin"], ["rejoinUntil", "ended-rejoin-until"],
  ["rejoin", "rejoin-button"], ["endedClosed", "ended-closed"],
  ["endedBooking", "ended-booking"], ["support", "support"], ["supportText", "support-text"],
  ["callArea", "call-area"], ["remoteVideo", "remote-video"],
  ["placeholder", "remote-placeholder"], ["localVideo", "local-video"],
  ["sound", "sound-button"], ["lobby", "lobby"], ["sessionWith", "session-with"],
  ["sessionWhen", "session-when"], ["countdown", "countdown"], ["notice", "media-notice"],
  ["cameraSelect", "camera-select"], ["microphoneSelect", "microphone-select"],
  ["micLevel", "mic-level"], ["micHint", "mic-hint"], ["speaker", "speaker-button"],
  ["speakerResult", "speaker-result"], ["verdict", "network-verdict"],
  ["recheck", "network-button"], ["hideIp", "hide-ip-option"], ["late", "late"],
  ["lateMinutes", "late-minutes"], ["lateButton", "late-button"],
  ["lateResult", "late-result"], ["join", "join-button"], ["joinHint", "join-hint"],
  ["inCall", "in-call"], ["callTitle", "call-title"], ["mute", "mute-button"],
  ["camera", "camera-button"], ["hangup", "hangup-button"], ["code", "verification-code"],
  ["bookingSlot", "booking-slot"], ["dialog", "hangup-dialog"],
  ["hangupConfirm", "hangup-confirm"], ["hangupCancel", "hangup-cancel"],
]);

const state = {
  phase: "checking",
  session: null,  // GET .../session, the last answer
  clockOffset: 0,  // server clock − this device's clock, in ms
  roomOpen: false,
  refusal: null,  // {closeCode, code, message} or {key}: why the page cannot go on
  previewing: false,
  micBlocked: false,
  speaker: null,  // null | "playing" | "done" | "failed"
  verdict: null,  // null while checking, else precall.js's verdict
  lateSent: null,  // {minutes, at}
  lateError: null,
  leftAt: null,
  nextSession: null,  // {starts_at, ends_at}: booked in this call, or the session's next
  endWarning: null,  // the booked end, once within WARNING_BEFORE_END_MS of it
  role: null,
  polite: false,
  iceServers: [],
  relayOnly: false,  // Hide my IP: relay candidates only (sticky for the page's life)
  resume: null,
  serverOpen: false,
  peerPresent: false,
  peerAway: false,  // its socket dropped; it may return (and media may still flow)
  peerLeft: null,  // the reason it left, while it is gone
  call: null,
  remoteStream: null,
  verifier: null,
  code: null,
  verifyFailed: false,
  verifyProblem: null,  // why there is no code, when one cannot be computed
  mediaReported: null,  // {state, video}: the last `media` report sent on this socket
  restartTimer: null,
  connectTimer: null,
  endTimer: null,
};

let signalling = null;
let bookingPanel = null;
const extras = new InCall({
  media, otherName, session: () => state.session, clock: now, onChange: () => render(),
  onVideoChange: () => {
    if (state.mediaReported?.state === "connected") {
      reportMedia("connected");
    }
  },
  onBooked: rememberNext,
});
let polling = null;
let mediaReady = Promise.resolve();
let work = Promise.resolve();
const meter = new MicMeter(els.micLevel);

/** Run `task` after everything queued before it. */
function serial(task) {
  work = work.then(task).catch((error) => {
    console.error("carecall:", error);
  });
  return work;
}

/** The server's clock, in ms (Date.now() corrected by the last session answer). */
function now() {
  return Date.now() + state.clockOffset;
}

function setPhase(next) {
  if (next === state.phase) {
    return;
  }
  if (!PHASES[state.phase].includes(next)) {
    throw new Error(`no way from phase ${state.phase} to ${next}`);
  }
  state.phase = next;
  render();
  const focus = PHASE_FOCUS[next];
  const active = document.activeElement;
  const lost = active === null || active === document.body || active.closest("[hidden]");
  if (focus && lost && !els.dialog.open) {
    $(focus).focus();
  }
}

// -- rendering ------------------------------------------------------------------------

function statusText() {
  switch (state.phase) {
    case "checking":
      return t("status.checking");
    case "lobby":
      if (state.previewing) {
        return t("status.previewing");
      }
      return state.roomOpen ? t("status.lobby") : t("status.tooEarly");
    case "refused":
      return t("status.refused");
    case "ended":
      return t("status.ended");
    case "joining":
      return t("status.joining");
    default:
      break;
  }
  const pc = state.call?.state;
  if (pc === "connected") {
    if (state.peerAway) {
      return t("status.connectedPeerAway");
    }
    return state.serverOpen ? t("status.connected") : t("status.connectedReconnecting");
  }
  if (!state.serverOpen) {
    return t("status.serverLost");
  }
  if (!state.peerPresent) {
    if (state.peerLeft === "bye") {
      return t("status.peerLeftBye");
    }
    return state.peerLeft ? t("status.peerLost") : t("status.waiting");
  }
  if (state.peerAway) {
    return t("status.peerAway");
  }
  if (pc === "failed" || pc === "disconnected") {
    return t("status.interrupted");
  }
  if (state.mediaReported?.state === "failed") {
    return t("status.noPath");
  }
  return t("status.connecting");
}

/** The other party's name as this viewer knows it. */
function otherName() {
  const session = state.session;
  if (session === null) {
    return "";
  }
  return session.role === "professional"
    ? session.client?.first_name || t("party.client")
    : session.professional?.name || t("party.professional");
}

function render() {
  const phase = state.phase;
  const inCall = phase === "joining" || phase === "call";
  document.body.dataset.phase = phase;
  els.status.textContent = statusText();
  show(els.lobby, phase === "lobby");
  show(els.inCall, inCall);
  show(els.callArea, phase === "lobby" || inCall);
  show(els.refused, phase === "refused");
  show(els.ended, phase === "ended");
  show(els.remoteVideo, inCall);
  show(els.placeholder, inCall && state.call?.state !== "connected");
  els.placeholder.textContent = state.peerPresent ? t("call.connecting") : t("call.waiting");
  renderSession();
  renderLobby();
  renderNotice();
  renderControls();
  renderWarning();
  extras.render(inCall);
  if (phase === "refused") {
    renderRefusal();
  }
  if (phase === "ended") {
    renderEnded();
  }
}

function renderSession() {
  const session = state.session;
  if (session === null) {
    return;
  }
  els.sessionWith.textContent = t("session.with", { name: otherName() });
  els.sessionWhen.textContent = t("session.when", {
    range: formatRange(session.starts_at, session.ends_at), zone: viewerTimeZone() });
  els.callTitle.textContent = els.sessionWith.textContent;
}

function renderLobby() {
  const waitMs = state.session ? Date.parse(state.session.opens_at) - now() : 0;
  show(els.countdown, !state.roomOpen && state.session !== null);
  if (!state.roomOpen && state.session !== null) {
    els.countdown.textContent = t("session.countdown", { time: formatDuration(waitMs) });
  }
  els.join.disabled = !state.roomOpen || state.previewing || state.phase !== "lobby";
  els.join.textContent = media.stream || state.previewing ? t("join.button")
    : t("join.withoutMedia");
  show(els.joinHint, !state.roomOpen && state.session !== null);
  if (state.session !== null) {
    els.joinHint.textContent = t("session.opensAt",
      { time: formatTime(state.session.opens_at) });
  }
  const problem = media.problem;
  els.notice.textContent = problem ? t(`media.${problem}`) : "";
  show(els.notice, problem !== null && !state.previewing);
  if (media.audioTrack === null && !state.previewing) {
    els.micHint.textContent = t("precall.micNone");
  } else {
    els.micHint.textContent = state.micBlocked ? t("precall.micBlocked") : t("precall.micHint");
  }
  els.speaker.disabled = state.speaker === "playing";
  els.speakerResult.textContent = state.speaker ? t({ playing: "precall.speakerPlaying",
    done: "precall.speakerDone", failed: "precall.speakerFailed" }[state.speaker]) : "";
  els.verdict.textContent = state.verdict ? t(`verdict.${state.verdict}`)
    : t("precall.networkChecking");
  els.verdict.dataset.verdict = state.verdict ?? "checking";
  show(els.recheck, state.verdict !== null);
  for (const option of els.lateMinutes.options) {
    option.textContent = t("late.option", { n: Number(option.value) });
  }
  if (state.lateError) {
    els.lateResult.textContent = t("late.failed", { reason: state.lateError });
  } else {
    els.lateResult.textContent = state.lateSent ? t("late.sent", {
      time: formatClock(state.lateSent.at), n: state.lateSent.minutes }) : "";
  }
}

/** The other party's latest "running late", in the lobby and in the call. */
function renderNotice() {
  const role = state.session?.role;
  const theirs = (state.session?.notices ?? []).filter((n) => n.by !== role);
  const latest = theirs.at(-1);
  // Once they are in the call, their "running late" has served its purpose.
  const waiting = state.phase === "lobby"
    || ((state.phase === "call" || state.phase === "joining") && !state.peerPresent);
  const visible = latest !== undefined && waiting;
  show(els.peerNotice, visible);
  if (visible) {
    els.peerNotice.textContent = t("late.peer", { name: otherName(), n: latest.minutes,
      time: formatClock(latest.at) });
  }
}

function renderControls() {
  els.code.textContent = state.code ?? (state.verifyFailed ? t("verify.notVerified")
    : "······");
  els.code.classList.toggle("failed", state.code === null && state.verifyFailed);
  // The technical detail stays as verify.js words it, for support.
  els.code.title = state.code === null && state.verifyFailed
    ? `${t("verify.problem")} (${state.verifyProblem ?? "?"})` : "";
  const micOn = media.microphoneOn;
  els.mute.textContent = micOn ? t("call.mute") : t("call.unmute");
  els.mute.setAttribute("aria-pressed", String(!micOn));
  els.mute.setAttribute("aria-label", micOn ? t("call.muteLabel") : t("call.unmuteLabel"));
  els.mute.disabled = media.audioTrack === null;
  const cameraOn = media.cameraOn;
  els.camera.textContent = cameraOn ? t("call.cameraOff") : t("call.cameraOn");
  els.camera.setAttribute("aria-pressed", String(!cameraOn));
  els.camera.setAttribute("aria-label", cameraOn ? t("call.cameraOffLabel")
    : t("call.cameraOnLabel"));
  els.camera.disabled = media.videoTrack === null;
}

function renderWarning() {
  const endsAt = state.endWarning;
  const inCall = state.phase === "joining" || state.phase === "call";
  show(els.warning, endsAt !== null && inCall);
  if (endsAt === null || !inCall) {
    return;
  }
  const left = Math.ceil((Date.parse(endsAt) - now()) / 60000);
  els.warning.textContent = left > 0 ? t("call.endsIn", { n: left, time: formatTime(endsAt) })
    : t("call.endedAt", { time: formatTime(endsAt) });
}

function renderRefusal() {
  const refusal = state.refusal ?? MISSING_TOKEN;
  const { reason, next } = refusal.key ? { reason: t(refusal.key), next: null }
    : refusalText(refusal);
  els.error.textContent = reason;
  els.refusedNext.textContent = next ?? "";
  show(els.refusedNext, next !== null);
  show(els.retry, refusal.code === "unreachable");
}

function renderEnded() {
  const session = state.session;
  els.endedAt.textContent = state.leftAt ? t("ended.at", { time: formatClock(state.leftAt) })
    : "";
  els.endedBooked.textContent = session ? t("ended.booked",
    { range: formatRange(session.starts_at, session.ends_at) }) : "";
  const next = state.nextSession ?? session?.next_session ?? null;
  show(els.endedNext, next !== null);
  if (next !== null) {
    els.endedNext.textContent = t("ended.next", { when: formatRange(next.starts_at,
      next.ends_at) });
  }
  const open = session !== null && now() < Date.parse(session.closes_at);
  show(els.endedRejoin, open);
  show(els.endedClosed, session !== null && !open);
  if (open) {
    els.rejoinUntil.textContent = t("ended.rejoinUntil",
      { time: formatClock(session.closes_at) });
  }
  const support = session?.support ?? null;
  show(els.support, Boolean(support));
  els.supportText.textContent = support ?? "";
}

// -- the link check ---------------------------------------------------------------------

const STATUS_CODES = { 401: "invalid_token", 403: "forbidden", 404: "not_found" };
const REFUSED_STATES = { cancelled: "booking_cancelled", rescheduled: "booking_rescheduled",
  over: "session_over" };

/** GET .../session: the session, or `{refusal}` naming why the link cannot be used. */
async function fetchSession() {
  let response;
  try {
    response = await fetch(`${link.roomUrl}/session`, { cache: "no-store",
      headers: { Authorization: `Bearer ${link.token}` } });
  } catch {
    return { refusal: { code: "unreachable" } };
  }
  if (!response.ok) {
    // A proxy's page has no error code: the status says enough.
    const code = (await errorOf(response)).code ?? STATUS_CODES[response.status];
    return { refusal: { closeCode: response.status, code: code ?? "", message: "" } };
  }
  return { session: await response.json() };
}

/** Take in a session answer; returns false when the link can no longer be used. */
function adoptSession(session) {
  state.session = session;
  const serverNow = Date.parse(session.now);
  if (!Number.isNaN(serverNow)) {
    state.clockOffset = serverNow - Date.now();
  }
  const refused = REFUSED_STATES[session.state];
  if (refused && (state.phase === "checking" || state.phase === "lobby")) {
    // In the call the server closes the socket itself (4403 / 4410) with its reason;
    // the end page stays, and says when the room has closed.
    refuse({ code: refused });
    return false;
  }
  if (session.role === "professional") {
    ensureBookingPanel();
  }
  if (session.ice_transport_policy === "relay") {
    els.hideIp.checked = true;  // set for this client by the service: not theirs to undo
    els.hideIp.disabled = true;
  }
  if (!state.roomOpen && session.state === "open") {
    openRoom();
  }
  return true;
}

async function pollSession() {
  const closed = state.session !== null && now() >= Date.parse(state.session.closes_at);
  if (state.phase === "refused" || (state.phase === "ended" && closed)) {
    return;  // nothing more can change for this page
  }
  const { session } = await fetchSession();
  if (session && state.phase !== "refused") {
    adoptSession(session);
    render();
  }
}

function openRoom() {
  const announce = state.session !== null && state.phase === "lobby" && !state.roomOpen;
  state.roomOpen = true;
  render();
  if (announce) {
    els.status.textContent = t("status.roomOpen");
  }
}

/** Too early: count down each second on the server's clock; open the room at zero. */
function countDown() {
  if (state.roomOpen || state.phase === "refused") {
    return;
  }
  const opensAt = Date.parse(state.session.opens_at);
  if (now() >= opensAt) {
    openRoom();
    return;
  }
  els.countdown.textContent = t("session.countdown",
    { time: formatDuration(opensAt - now()) });
  setTimeout(countDown, Math.min(1000, opensAt - now() + 20));
}

// -- the lobby: preview, device choice, the pre-call check and "running late" --------------

function fillSelect(select, devices, current, noun) {
  select.replaceChildren();
  devices.forEach((device, index) => {
    const option = document.createElement("option");
    option.value = device.deviceId;
    option.textContent = device.label || t("devices.numbered", { noun: t(noun), n: index + 1 });
    option.selected = device.deviceId === current;
    select.append(option);
  });
  if (devices.length === 0) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = t("devices.none");
    select.append(option);
  }
  select.disabled = devices.length < 2;
}

async function startPreview(choice = {}) {
  state.previewing = true;
  render();
  await media.start(choice);
  els.localVideo.srcObject = media.stream;
  const { cameras, microphones } = await media.devices();
  fillSelect(els.cameraSelect, cameras, media.videoTrack?.getSettings().deviceId,
    "devices.camera");
  fillSelect(els.microphoneSelect, microphones, media.audioTrack?.getSettings().deviceId,
    "devices.microphone");
  if (state.phase === "lobby") {
    meter.start(media.stream);
    // Its AudioContext may wait for a gesture (autoplay policy); it says so soon after.
    setTimeout(() => {
      state.micBlocked = meter.blocked;
      render();
    }, 600);
  }
  state.previewing = false;
  render();
}

async function switchDevices() {
  await startPreview({ cameraId: els.cameraSelect.value,
    microphoneId: els.microphoneSelect.value });
  if (state.call && media.audioTrack) {
    await state.call.replaceTrack(media.audioTrack);
  }
  extras.sync();  // the new camera, unless audio only or a shared screen comes first
}

async function testSpeaker() {
  state.speaker = "playing";
  render();
  try {
    await playTestSound();
    state.speaker = "done";
  } catch (error) {
    console.warn("carecall: no test sound:", error.name);
    state.speaker = "failed";
  }
  render();
}

async function testNetwork() {
  state.verdict = null;
  render();
  const relayOnly = state.session?.ice_transport_policy === "relay" || els.hideIp.checked;
  const result = await checkNetwork({ iceServers: state.session?.ice_servers ?? [],
    wsUrl: link.wsUrl, relayOnly });
  state.verdict = result.verdict;
  render();
}

async function sendLate() {
  const minutes = Number(els.lateMinutes.value);
  els.lateButton.disabled = true;
  state.lateError = null;
  try {
    const response = await fetch(`${link.roomUrl}/running-late`, {
      method: "POST", body: JSON.stringify({ minutes }),
      headers: { Authorization: `Bearer ${link.token}`, "Content-Type": "application/json" },
    });
    if (response.ok) {
      const notice = await response.json().catch(() => ({}));
      state.lateSent = { minutes: notice.minutes ?? minutes, at: notice.at ?? new Date(now()) };
    } else {
      state.lateError = (await errorOf(response)).message ?? String(response.status);
    }
  } catch {
    state.lateError = t("refusal.unreachable");
  } finally {
    els.lateButton.disabled = false;
  }
  render();
}

// -- joining and leaving ------------------------------------------------------------------

function hello() {
  const message = { type: "hello", token: link.token, agent: "browser", can_rollback: true };
  // A resume only while our peer connection lives: otherwise the other side must rebuild.
  if (state.resume && state.call?.alive) {
    message.resume = state.resume;
  }
  return message;
}

function join() {
  if (state.phase !== "lobby" || !state.roomOpen) {
    return;
  }
  // The socket first: its connection and the server's welcome overlap the page's own
  // work below (the meter's AudioContext, a full render), which took some 30 ms.
  signalling = new Signalling({
    url: link.wsUrl,
    hello,
    onMessage: (message) => serial(() => handle(message)),
    onOpenChange: (open) => {
      state.serverOpen = open;
      render();
    },
    onRefused: (refusal) => serial(() => refuse(refusal)),
  });
  signalling.connect();  // handlers are set now; messages wait for the media in `handle`
  sessionStorage.setItem(joinedKey, "1");  // a reload comes straight back into the call
  meter.stop();
  setPhase("joining");  // before any message is handled: `handle` runs after this returns
  extras.begin();
}

function askHangUp() {
  els.dialog.showModal();
}

function hangUp() {
  els.dialog.close();
  signalling?.leave();
  signalling = null;
  closeCall();
  extras.end();
  sessionStorage.removeItem(joinedKey);
  clearTimeout(state.endTimer);
  media.stop();
  els.localVideo.srcObject = null;
  Object.assign(state, { serverOpen: false, peerPresent: false, peerAway: false,
    peerLeft: null, resume: null, leftAt: new Date(now()) });
  if (bookingPanel !== null) {
    els.endedBooking.append(els.bookingSlot);  // the professional can still book
  }
  setPhase("ended");
  pollSession();  // the next session and whether the room is still open
}

async function rejoin() {
  if (bookingPanel !== null) {
    els.inCall.append(els.bookingSlot);
  }
  setPhase("lobby");
  mediaReady = startPreview({ cameraId: els.cameraSelect.value,
    microphoneId: els.microphoneSelect.value });
  await mediaReady;
  join();
}

/** Show the refused panel with `refusal` ({closeCode, code, message}, or {key}). */
function refuse(refusal) {
  signalling = null;
  closeCall();
  extras.end();
  sessionStorage.removeItem(joinedKey);
  clearTimeout(state.endTimer);
  meter.stop();
  media.stop();  // the camera light goes off when the page can do nothing more
  els.localVideo.srcObject = null;
  els.dialog.close();
  state.serverOpen = false;
  state.refusal = refusal;
  setPhase("refused");
}

/** The pair's next session, booked in this call (by us, or told by the other side). */
function rememberNext(booking) {
  state.nextSession = { starts_at: booking.starts_at, ends_at: booking.ends_at };
}

function ensureBookingPanel() {
  if (bookingPanel === null) {
    bookingPanel = new BookingPanel({ container: els.bookingSlot, apiBase: link.apiBase,
      room: link.room, token: link.token, onBooked: (booking) => {
        rememberNext(booking);
        // The client's page shows it at once (the session poll would take up to 10 s).
        extras.channel?.send("booked", { starts_at: booking.starts_at,
          ends_at: booking.ends_at, funding: String(booking.funding ?? "") });
      } });
    els.bookingSlot.prepend(bookingPanel.button);
  }
}

// -- signalling messages ------------------------------------------------------------------

async function handle(message) {
  await mediaReady;  // our tracks must exist before any connection is built
  if (state.phase !== "joining" && state.phase !== "call") {
    return;
  }
  switch (message.type) {
    case "welcome":
      onWelcome(message);
      break;
    case "peer-joined":
      onPeerJoined(message);
      break;
    case "peer-left":
      onPeerLeft(message);
      break;
    case "signal":
      await onSignal(message);
      break;
    case "error":
      // peer_absent: nobody to relay to yet; fatal errors are followed by a close.
      break;
    case COMMIT:
      await onCommit(message);
      break;
    case REVEAL:
      await onReveal(message);
      break;
    default:
      if (typeof message.type === "string" && message.type.startsWith("x-")) {
        break;  // another extension this page does not speak
      }
      throw new Error(`unknown message type ${JSON.stringify(message.type)}`);
  }
  render();
}

function onWelcome(message) {
  setPhase("call");
  state.role = message.role;
  state.polite = Boolean(message.polite);
  state.iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : [];
  const asked = message.ice_transport_policy === "relay";
  state.relayOnly = state.relayOnly || asked || els.hideIp.checked;
  if (asked) {
    els.hideIp.checked = true;  // set for this client by the service: not theirs to undo
    els.hideIp.disabled = true;
  }
  if (state.relayOnly && !hasTurn(state.iceServers)) {
    noRelay(asked ? "noRelay" : "noRelayLocal");
    return;
  }
  state.resume = message.resume ?? null;
  state.peerPresent = Boolean(message.peer_present);
  state.peerAway = false;
  const keep = state.call?.alive ?? false;
  // Candidates and codes meant for the connection we keep are still useful; any other's not.
  signalling.flushQueue(keep);
  if (state.call) {
    state.call.polite = state.polite;
  }
  if (message.role === "professional") {
    ensureBookingPanel();
  }
  scheduleEndWarning(message.booking?.ends_at);
  state.mediaReported = null;  // tell this session where the media path stands
  if (state.call?.state === "connected") {
    reportMedia("connected");
  }
  if (state.peerPresent && !keep) {
    if (state.polite) {
      closeCall();  // the impolite side offers on a fresh connection
    } else {
      newCall({ offer: true });
    }
  }
}

/** Whether some ICE server of `servers` is a TURN server (turn: or turns: URL). */
function hasTurn(servers) {
  return servers.some((server) => [server.urls].flat()
    .some((url) => typeof url === "string" && /^turns?:/i.test(url)));
}

/** Relay only and no relay: leave (bye) and say why, rather than connect directly. */
function noRelay(key) {
  signalling?.leave();
  refuse({ key });
}

function onPeerJoined(message) {
  state.peerPresent = true;
  state.peerAway = false;
  state.peerLeft = null;
  if (typeof message.polite === "boolean") {
    state.polite = message.polite;
  }
  if (message.resumed && state.call?.alive) {
    state.call.polite = state.polite;
    return;  // the other side kept its connection, and so do we: media never stopped
  }
  if (state.polite && !message.resumed) {
    closeCall();  // the other side starts over; its offer builds our new connection
    return;
  }
  newCall({ offer: true });
}

function onPeerLeft(message) {
  if (message.reason === "dropped") {
    state.peerAway = true;  // keep the connection: it may come back with a resume
    return;
  }
  state.peerPresent = false;
  state.peerAway = false;
  state.peerLeft = message.reason ?? "left";
  closeCall();
}

async function onSignal(message) {
  const description = message.description;
  if (description) {
    if (description.type === "rollback") {
      return;  // perfect negotiation rolls back locally; nothing to do with a remote one
    }
    if (description.type === "offer"
        && (state.call === null || state.call.closed
            || state.call.isFromAnotherConnection(description))) {
      newCall({ offer: false });  // the other side built a new connection: so do we
    }
    if (state.call === null) {
      return;  // an answer to a connection already given up
    }
    try {
      await state.call.onDescription(description);
    } catch (error) {
      await recoverFromNegotiation(description, error);
    }
    return;
  }
  if (message.candidate && state.call) {
    await state.call.onCandidate(message.candidate);
  }
}

async function recoverFromNegotiation(description, error) {
  console.warn("carecall: negotiation failed; starting a new connection:", error.name);
  if (description.type === "offer") {
    newCall({ offer: false });
    await state.call.onDescription(description);
  } else if (!state.polite) {
    newCall({ offer: true });
  }
}

// -- the peer connection --------------------------------------------------------------------

function newCall({ offer }) {
  closeCall();
  const call = new Call({
    iceServers: state.iceServers,
    iceTransportPolicy: state.relayOnly ? "relay" : "all",
    polite: state.polite,
    send: (message) => signalling?.send(message),
    onTrack: (track) => onRemoteTrack(call, track),
    onStateChange: (connectionState) => serial(() => onCallState(call, connectionState)),
  });
  state.call = call;
  state.verifier = new Verifier(state.role);
  state.code = null;
  state.verifyFailed = false;
  state.verifyProblem = null;
  state.remoteStream = new MediaStream();
  els.remoteVideo.srcObject = state.remoteStream;
  call.addLocalTracks(media.stream, { offerer: offer });
  extras.attach(call);
  clearTimeout(state.connectTimer);
  state.connectTimer = setTimeout(() => serial(() => {
    if (call === state.call && !call.everConnected && state.peerPresent) {
      reportMedia("failed", call.failureCause(state.relayOnly));
      render();
    }
  }), CONNECT_TIMEOUT_MS);
  if (offer && state.polite) {
    call.offer();  // rare: we lost our connection and the other kept theirs
  }
  return call;
}

function closeCall() {
  clearTimeout(state.restartTimer);
  clearTimeout(state.connectTimer);
  if (state.call !== null) {
    if (state.mediaReported?.state === "connected") {
      reportMedia("disconnected");
    }
    state.call.close();
    state.call = null;
    extras.detach();
  }
  state.verifier = null;
  state.code = null;
  state.verifyFailed = false;
  state.verifyProblem = null;
  state.remoteStream = null;
  els.remoteVideo.srcObject = null;
  show(els.sound, false);
}

/** Tell the server where our media path stands (for attendance), once per change. */
function reportMedia(mediaState, cause = null) {
  const video = extras.sendingVideo;
  const last = state.mediaReported;
  if ((last?.state !== mediaState || last.video !== video) && signalling) {
    state.mediaReported = { state: mediaState, video };
    signalling.send({ type: "media", state: mediaState, video,
      ...(cause === null ? {} : { cause }) });
  }
}

async function onCallState(call, connectionState) {
  if (call !== state.call) {
    return;
  }
  if (connectionState === "connected") {
    clearTimeout(state.restartTimer);
    reportMedia("connected");
    await startVerification();
  } else if (connectionState === "failed") {
    if (call.everConnected) {
      reportMedia("disconnected");
    } else {
      reportMedia("failed", call.failureCause(state.relayOnly));
    }
    if (!state.polite && state.peerPresent) {
      // ICE restart first (same DTLS session, same code); a new connection if that fails.
      call.restartIce();
      clearTimeout(state.restartTimer);
      state.restartTimer = setTimeout(() => serial(() => {
        if (state.call === call && call.state !== "connected" && state.peerPresent) {
          newCall({ offer: true });
          render();
        }
      }), ICE_RESTART_GRACE_MS);
    }
  }
  render();
}

function onRemoteTrack(call, track) {
  if (call !== state.call || state.remoteStream === null) {
    return;
  }
  for (const old of state.remoteStream.getTracks()) {
    if (old.kind === track.kind) {
      state.remoteStream.removeTrack(old);
    }
  }
  state.remoteStream.addTrack(track);
  playRemote();
}

async function playRemote() {
  const video = els.remoteVideo;
  try {
    await video.play();
  } catch (error) {
    if (error.name !== "NotAllowedError") {
      return;  // AbortError: replaced by a newer stream
    }
    // Autoplay with sound needs a click (after a reload, say): play muted and offer one.
    video.muted = true;
    show(els.sound, true);
    try {
      await video.play();
    } catch {
      // nothing more to try without the user
    }
  }
}

// -- the verification code ---------------------------------------------------------------

async function startVerification() {
  const verifier = state.verifier;
  if (verifier === null || verifier.commitSent) {
    return;
  }
  signalling?.send(await verifier.commitMessage());
  await maybeReveal();
}

async function maybeReveal() {
  const reveal = state.verifier?.revealMessage();
  if (reveal) {
    signalling?.send(reveal);
  }
  await updateCode();
}

async function onCommit(message) {
  if (state.verifier === null) {
    return;
  }
  try {
    state.verifier.onCommit(message);
  } catch (error) {
    if (!(error instanceof VerificationError)) {
      throw error;
    }
    state.verifyFailed = true;
    state.verifyProblem = error.message;
    return;
  }
  await maybeReveal();
}

async function onReveal(message) {
  if (state.verifier === null) {
    return;
  }
  try {
    await state.verifier.onReveal(message);
  } catch (error) {
    if (!(error instanceof VerificationError)) {
      throw error;
    }
    state.verifyFailed = state.code === null;
    state.verifyProblem = error.message;
    return;
  }
  await updateCode();
}

const FINGERPRINT_TRIES = 20;  // the certificates show in the stats soon after DTLS is up
const FINGERPRINT_RETRY_MS = 100;

/** The code once both nonces are known; "not verified" when it cannot be computed. */
async function updateCode() {
  const { verifier, call } = state;
  if (verifier === null || call === null || verifier.theirNonce === null) {
    return;
  }
  let prints = null;
  let problem = null;
  try {
    prints = await dtlsFingerprints(call.pc);
    for (let tries = 1; prints === null && tries < FINGERPRINT_TRIES; tries += 1) {
      await new Promise((resolve) => { setTimeout(resolve, FINGERPRINT_RETRY_MS); });
      if (verifier !== state.verifier) {
        return;  // a new connection, a new run
      }
      prints = await dtlsFingerprints(call.pc);
    }
  } catch (error) {
    if (!(error instanceof VerificationError)) {
      throw error;
    }
    problem = error.message;
  }
  if (verifier !== state.verifier) {
    return;
  }
  if (prints === null) {
    state.verifyFailed = true;
    state.verifyProblem = problem ?? "the DTLS certificates of the connection are not known";
    console.warn(`carecall: no verification code: ${state.verifyProblem}`);
    return;
  }
  state.code = await verifier.code(...prints);
  state.verifyFailed = false;
  state.verifyProblem = null;
}

// -- the end of the booked time -------------------------------------------------------------

function scheduleEndWarning(endsAt) {
  clearTimeout(state.endTimer);
  const end = Date.parse(endsAt ?? "");
  if (Number.isNaN(end)) {
    return;
  }
  const warn = () => {
    state.endWarning = endsAt;
    render();
    // Keep the minutes left up to date until the end.
    if (end > now()) {
      state.endTimer = setTimeout(warn, Math.min(60_000, end - now() + 50));
    }
  };
  const delay = end - WARNING_BEFORE_END_MS - now();
  if (delay <= 0) {
    warn();
  } else {
    state.endTimer = setTimeout(warn, delay);
  }
}

// -- start ------------------------------------------------------------------------------

function wireControls() {
  els.join.addEventListener("click", join);
  els.rejoin.addEventListener("click", rejoin);
  els.hangup.addEventListener("click", askHangUp);
  els.hangupConfirm.addEventListener("click", hangUp);
  els.hangupCancel.addEventListener("click", () => els.dialog.close());
  els.retry.addEventListener("click", () => {
    setPhase("checking");
    start();
  });
  els.mute.addEventListener("click", () => {
    media.setMicrophone(!media.microphoneOn);
    extras.sync();
  });
  els.camera.addEventListener("click", () => {
    media.setCamera(!media.cameraOn);
    extras.sync();
  });
  els.sound.addEventListener("click", () => {
    els.remoteVideo.muted = false;
    els.remoteVideo.play().catch(() => {});
    show(els.sound, false);
  });
  els.hideIp.addEventListener("change", () => {
    if (els.hideIp.checked) {
      sessionStorage.setItem(hideIpKey, "1");
    } else {
      sessionStorage.removeItem(hideIpKey);
    }
    testNetwork();  // what the call will use has changed
  });
  els.speaker.addEventListener("click", testSpeaker);
  els.recheck.addEventListener("click", testNetwork);
  els.lateButton.addEventListener("click", sendLate);
  els.cameraSelect.addEventListener("change", switchDevices);
  els.microphoneSelect.addEventListener("change", switchDevices);
  els.language.addEventListener("change", () => {
    setLanguage(els.language.value, { remember: true });
    render();
  });
  // The microphone meter may wait for a first gesture (autoplay policy).
  const resumeMeter = () => {
    if (state.micBlocked && !meter.blocked) {
      state.micBlocked = false;
      render();
    }
  };
  document.addEventListener("pointerdown", resumeMeter);
  document.addEventListener("keydown", resumeMeter);
  window.addEventListener("online", () => signalling?.reconnectNow());
}

function fillChoices() {
  for (const [code, name] of Object.entries(LANGUAGES)) {
    const option = new Option(name, code, false, code === language());
    option.lang = code;
    els.language.append(option);
  }
  for (const minutes of LATE_CHOICES) {
    els.lateMinutes.append(new Option("", String(minutes)));
  }
}

/** Check the link; then the lobby (and the camera), or the refusal without asking for it. */
async function start() {
  if (!link.room || !link.token) {
    refuse(MISSING_TOKEN);
    return;
  }
  const { session, refusal } = await fetchSession();
  if (refusal) {
    refuse(refusal);
    return;
  }
  if (!adoptSession(session)) {
    return;
  }
  const rejoining = sessionStorage.getItem(joinedKey) && state.roomOpen;
  setPhase("lobby");
  mediaReady = startPreview();
  testNetwork();  // runs beside everything else: joining never waits for it
  if (!state.roomOpen) {
    countDown();
  }
  polling ??= setInterval(pollSession, SESSION_POLL_MS);
  if (rejoining) {
    join();  // a reload during the call: straight back in, as a fresh connection
  }
  await mediaReady;
  render();
}

setLanguage(chooseLanguage());
fillChoices();
wireControls();
els.hideIp.checked = sessionStorage.getItem(hideIpKey) === "1";
render();
start();
