// The call page: wiring of the lobby, the signalling socket, the peer connection, the
// verification code and the professional's booking panel. docs/protocol.md is the
// behaviour this follows; peer/client.py is the headless peer it must interoperate with.
//
// Invariants:
// - all signalling messages and peer-connection events are handled one at a time, in
//   order (`serial`), so a negotiation step never interleaves with another;
// - once both parties are present the impolite side offers; a `peer-joined` that is not
//   a resume means the other side lost its connection, so ours is rebuilt too;
// - `status` says "connected" only while the media path is up (connectionState).

import { BookingPanel } from "./booking.js";
import { Call } from "./call.js";
import { LocalMedia, PROBLEMS } from "./media.js";
import { Signalling } from "./signalling.js";
import { $, MISSING_TOKEN, formatTime, refusalText, show } from "./ui.js";
import { COMMIT, REVEAL, VerificationError, Verifier, dtlsFingerprints } from "./verify.js";

const WARNING_BEFORE_END_MS = 5 * 60 * 1000;
// After an ICE restart that does not bring the path back, start over on a new connection.
const ICE_RESTART_GRACE_MS = 8000;

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
    wsUrl: `${scheme}://${location.host}${base}/ws?room=${encodeURIComponent(room)}`,
  };
}

const link = parseLink(window.location);
const joinedKey = `carecall:joined:${link.room}`;
// The lobby's Hide my IP choice survives a reload (which joins straight back in).
const hideIpKey = `carecall:hide-ip:${link.room}`;
const media = new LocalMedia();

const els = {
  status: $("status"), warning: $("ending-warning"), refused: $("refused"), error: $("error"),
  ended: $("ended"), rejoin: $("rejoin-button"), callArea: $("call-area"),
  remoteVideo: $("remote-video"), placeholder: $("remote-placeholder"),
  localVideo: $("local-video"), sound: $("sound-button"), lobby: $("lobby"),
  notice: $("media-notice"), cameraSelect: $("camera-select"),
  microphoneSelect: $("microphone-select"), join: $("join-button"), inCall: $("in-call"),
  mute: $("mute-button"), camera: $("camera-button"), hangup: $("hangup-button"),
  code: $("verification-code"), bookingSlot: $("booking-slot"), hideIp: $("hide-ip-option"),
};

// Hide my IP asked (welcome's ice_transport_policy "relay", or the lobby's checkbox) but
// the service offers no TURN server: connecting directly would show the address.
const NO_RELAY = "Hide my IP needs a relay server, which this service has not configured, "
  + "so the call was not connected: a direct connection would show your IP address to the "
  + "other party. Ask the service to set up a relay server";
const NO_RELAY_LOCAL = `${NO_RELAY}, or reload this page and join without "Hide my IP".`;

const state = {
  phase: "lobby",  // lobby | joining | call | ended | refused
  previewing: true,
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
  mediaReported: null,
  restartTimer: null,
  endTimer: null,
};

let signalling = null;
let bookingPanel = null;
let mediaReady = Promise.resolve();
let work = Promise.resolve();

/** Run `task` after everything queued before it. */
function serial(task) {
  work = work.then(task).catch((error) => {
    console.error("carecall:", error);
  });
  return work;
}

// -- rendering ------------------------------------------------------------------------

function statusText() {
  switch (state.phase) {
    case "lobby":
      return state.previewing ? "Checking your camera and microphone…"
        : "Not in the call yet. Check your camera and microphone, then join.";
    case "refused":
      return "Not in the call: see the reason below.";
    case "ended":
      return "You left the call.";
    case "joining":
      return "Joining the session…";
    default:
      break;
  }
  const pc = state.call?.state;
  if (pc === "connected") {
    if (state.peerAway) {
      return "Call connected. The other person's connection dropped; waiting for them…";
    }
    return state.serverOpen ? "Call connected." : "Call connected. Reconnecting to the server…";
  }
  if (!state.serverOpen) {
    return "Connection to the server lost; reconnecting…";
  }
  if (!state.peerPresent) {
    if (state.peerLeft === "bye") {
      return "The other person left the call. You can wait here for them to come back.";
    }
    return state.peerLeft ? "The other person's connection was lost. Waiting for them…"
      : "Waiting for the other person to join…";
  }
  if (state.peerAway) {
    return "The other person's connection dropped; waiting for them…";
  }
  if (pc === "failed" || pc === "disconnected") {
    return "The connection was interrupted; trying to recover…";
  }
  return "Connecting the call…";
}

function render() {
  const inCall = state.phase === "joining" || state.phase === "call";
  document.body.dataset.phase = state.phase;
  els.status.textContent = statusText();
  show(els.lobby, state.phase === "lobby");
  show(els.inCall, inCall);
  show(els.callArea, state.phase === "lobby" || inCall);
  show(els.refused, state.phase === "refused");
  show(els.ended, state.phase === "ended");
  show(els.remoteVideo, inCall);
  show(els.placeholder, inCall && state.call?.state !== "connected");
  els.placeholder.textContent = state.peerPresent ? "Connecting…"
    : "Waiting for the other person…";
  els.code.textContent = state.code ?? (state.verifyFailed ? "not verified" : "······");
  els.code.classList.toggle("failed", state.code === null && state.verifyFailed);
  els.code.title = state.code === null && state.verifyFailed ? (state.verifyProblem ?? "") : "";
  els.mute.textContent = media.microphoneOn ? "Mute" : "Unmute";
  els.mute.setAttribute("aria-pressed", String(!media.microphoneOn));
  els.mute.setAttribute("aria-label", media.microphoneOn ? "Mute your microphone"
    : "Unmute your microphone");
  els.mute.disabled = media.audioTrack === null;
  els.camera.textContent = media.cameraOn ? "Camera off" : "Camera on";
  els.camera.setAttribute("aria-pressed", String(!media.cameraOn));
  els.camera.setAttribute("aria-label", media.cameraOn ? "Turn your camera off"
    : "Turn your camera on");
  els.camera.disabled = media.videoTrack === null;
}

function showNotice() {
  const problem = media.problem;
  els.notice.textContent = problem ? PROBLEMS[problem] : "";
  show(els.notice, problem !== null);
  els.join.textContent = media.stream ? "Join the session" : "Join without camera and microphone";
  els.join.setAttribute("aria-label", els.join.textContent);
}

// -- the lobby: preview and device choice ----------------------------------------------

function fillSelect(select, devices, current, noun) {
  select.replaceChildren();
  devices.forEach((device, index) => {
    const option = document.createElement("option");
    option.value = device.deviceId;
    option.textContent = device.label || `${noun} ${index + 1}`;
    option.selected = device.deviceId === current;
    select.append(option);
  });
  if (devices.length === 0) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = `No ${noun.toLowerCase()} found`;
    select.append(option);
  }
  select.disabled = devices.length < 2;
}

async function startPreview(choice = {}) {
  state.previewing = true;
  render();
  await media.start(choice);
  els.localVideo.srcObject = media.stream;
  els.localVideo.classList.toggle("off", media.videoTrack === null || !media.cameraOn);
  const { cameras, microphones } = await media.devices();
  fillSelect(els.cameraSelect, cameras, media.videoTrack?.getSettings().deviceId, "Camera");
  fillSelect(els.microphoneSelect, microphones, media.audioTrack?.getSettings().deviceId,
    "Microphone");
  showNotice();
  state.previewing = false;
  render();
}

async function switchDevices() {
  await startPreview({ cameraId: els.cameraSelect.value,
    microphoneId: els.microphoneSelect.value });
  if (state.call) {
    for (const track of media.stream?.getTracks() ?? []) {
      await state.call.replaceTrack(track);
    }
  }
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
  if (state.phase !== "lobby") {
    return;
  }
  sessionStorage.setItem(joinedKey, "1");  // a reload comes straight back into the call
  state.phase = "joining";
  render();
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
}

function hangUp() {
  signalling?.leave();
  signalling = null;
  closeCall();
  sessionStorage.removeItem(joinedKey);
  clearTimeout(state.endTimer);
  media.stop();
  els.localVideo.srcObject = null;
  Object.assign(state, { phase: "ended", serverOpen: false, peerPresent: false,
    peerAway: false, peerLeft: null, resume: null });
  render();
  els.rejoin.focus();
}

async function rejoin() {
  state.phase = "lobby";
  mediaReady = startPreview({ cameraId: els.cameraSelect.value,
    microphoneId: els.microphoneSelect.value });
  await mediaReady;
  join();
}

/** Show the refused panel: the server's `refusal`, or `text` when the page itself gave up. */
function refuse(refusal, text = null) {
  signalling = null;
  closeCall();
  sessionStorage.removeItem(joinedKey);
  clearTimeout(state.endTimer);
  media.stop();  // the camera light goes off when the page can do nothing more
  els.localVideo.srcObject = null;
  state.phase = "refused";
  state.serverOpen = false;
  els.error.textContent = text ?? refusalText(refusal);
  show(els.warning, false);
  render();
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
  state.phase = "call";
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
    noRelay(asked ? `${NO_RELAY}.` : NO_RELAY_LOCAL);
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
  if (message.role === "professional" && bookingPanel === null) {
    bookingPanel = new BookingPanel({ container: els.bookingSlot, apiBase: link.apiBase,
      room: link.room, token: link.token });
    els.bookingSlot.prepend(bookingPanel.button);
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
function noRelay(text) {
  signalling?.leave();
  refuse(null, text);
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
  if (offer && state.polite) {
    call.offer();  // rare: we lost our connection and the other kept theirs
  }
  return call;
}

function closeCall() {
  clearTimeout(state.restartTimer);
  if (state.call !== null) {
    if (state.mediaReported === "connected") {
      reportMedia("disconnected");
    }
    state.call.close();
    state.call = null;
  }
  state.verifier = null;
  state.code = null;
  state.verifyFailed = false;
  state.verifyProblem = null;
  state.remoteStream = null;
  els.remoteVideo.srcObject = null;
  show(els.sound, false);
}

function reportMedia(mediaState) {
  if (state.mediaReported !== mediaState && signalling) {
    state.mediaReported = mediaState;
    signalling.send({ type: "media", state: mediaState });
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
    reportMedia("disconnected");
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
    const left = Math.ceil((end - Date.now()) / 60000);
    els.warning.textContent = left > 0
      ? `The booked time ends in ${left} minute${left === 1 ? "" : "s"}, at ${formatTime(endsAt)}.`
      : `The booked time ended at ${formatTime(endsAt)}.`;
    show(els.warning, true);
  };
  const delay = end - WARNING_BEFORE_END_MS - Date.now();
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
  els.hangup.addEventListener("click", hangUp);
  els.mute.addEventListener("click", () => {
    media.setMicrophone(!media.microphoneOn);
    render();
  });
  els.camera.addEventListener("click", () => {
    media.setCamera(!media.cameraOn);
    els.localVideo.classList.toggle("off", !media.cameraOn);
    render();
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
  });
  els.cameraSelect.addEventListener("change", switchDevices);
  els.microphoneSelect.addEventListener("change", switchDevices);
  window.addEventListener("online", () => signalling?.reconnectNow());
}

async function main() {
  wireControls();
  els.hideIp.checked = sessionStorage.getItem(hideIpKey) === "1";
  if (!link.room || !link.token) {
    refuse(MISSING_TOKEN);
    return;
  }
  mediaReady = startPreview();
  if (sessionStorage.getItem(joinedKey)) {
    join();  // a reload during the call: straight back in, as a fresh connection
  }
  await mediaReady;
  els.join.disabled = false;
  render();
}

main();
