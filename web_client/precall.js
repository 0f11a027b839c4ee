// The pre-call check, in three parts that work alone: a live microphone level, a test
// sound, and a network check. No words here: the page's catalogue turns codes into text.
//
// Microphone level: RMS of the time-domain samples, in dBFS, mapped linearly from
// FLOOR_DB (-60 dBFS, shown as 0) to 0 dBFS (shown as 1). Speech at a laptop microphone
// (about -36 to -12 dBFS RMS) lands between 0.4 and 0.8; room noise stays near 0. The
// shown value rises quickly and falls slowly (ATTACK, RELEASE per 100 ms tick), so it can
// be read. Chromium may create an AudioContext "suspended" until the user interacts with
// the page (autoplay policy): the meter then resumes it on the first pointerdown or
// keydown on the document, and `blocked` says so meanwhile.
//
// Network verdicts say what was proven, never more. From the candidates one throwaway
// RTCPeerConnection gathers (types only: no address is kept or logged) and a WebSocket
// that opens and closes at once (it sends nothing, so it never counts as joining):
//   "unreachable"  the WebSocket to the call server did not open within the timeout
//                  (this wins over everything else: without the server there is no call);
//   "direct"       a server-reflexive (srflx) candidate was gathered: a STUN server saw us
//                  over UDP; or, with no srflx, a server that answers STUN over UDP is
//                  configured (stun:, or turn: over UDP, which Chromium also asks as a
//                  STUN server), host candidates exist, and gathering completed before
//                  the timeout with no icecandidateerror: the server answered with our own
//                  address (no NAT), a srflx the browser drops as a duplicate of a host
//                  candidate when those are not mDNS-hidden (camera/mic permission given);
//   "relay_only"   a relay candidate and no such proof: the call can go through the relay;
//                  a direct path was not shown (it may still work: with TURN over TCP only,
//                  say, UDP was never tried), so words for it must not promise it fails;
//   "blocked"      STUN and/or TURN configured but no srflx, no relay and no STUN answer:
//                  UDP looks blocked and the relay is unusable;
//   "no_servers"   no STUN or TURN configured: only host candidates are possible, so a
//                  direct connection works on the same network only;
//   "no_relay"     relay only was asked (Hide my IP) and no TURN server is configured:
//                  the call cannot connect, and nothing is gathered at all.
// With relayOnly the connection gathers relay candidates only (iceTransportPolicy
// "relay"), as the call then will: "direct" cannot come out of it.
// A STUN server that never answers keeps Chromium gathering well beyond any sensible
// timeout (no icecandidateerror within 12 s), so "not complete" is how silence shows.
// checkNetwork never throws for network conditions; it always closes what it opened.

const FLOOR_DB = -60;
const ATTACK = 0.6;
const RELEASE = 0.25;
const TICK_MS = 100;
const GESTURES = ["pointerdown", "keydown"];
const CANDIDATE_TYPE = /\btyp (host|srflx|prflx|relay)\b/;

/** 0..1 from an RMS amplitude (see the mapping at the top). */
function levelOf(rms) {
  if (!(rms > 0)) {
    return 0;
  }
  const db = 20 * Math.log10(rms);
  return Math.min(1, Math.max(0, (db - FLOOR_DB) / -FLOOR_DB));
}

/** Live microphone level on a <meter min="0" max="1">, with aria-valuenow/valuetext. */
export class MicMeter {
  #meter;
  #context = null;
  #source = null;
  #analyser = null;
  #samples = null;
  #timer = null;
  #level = 0;
  #onGesture = null;

  /** @param {HTMLMeterElement} meter */
  constructor(meter) {
    this.#meter = meter;
    this.#show(0);
  }

  /** Last shown value, 0..1. */
  get level() {
    return this.#level;
  }

  /** True while the AudioContext waits for a user gesture (autoplay policy). */
  get blocked() {
    return this.#context !== null && this.#context.state === "suspended";
  }

  /**
   * (Re)attach to the stream's audio track; without one the meter shows 0.
   * @param {MediaStream | null} stream
   */
  start(stream) {
    this.stop();
    const track = stream?.getAudioTracks().find((t) => t.readyState === "live");
    if (!track) {
      return;
    }
    const context = new AudioContext();
    this.#context = context;
    // A stream of its own: the caller's stream may gain or lose tracks later.
    this.#source = context.createMediaStreamSource(new MediaStream([track]));
    this.#analyser = context.createAnalyser();
    this.#analyser.fftSize = 2048;  // about 43 ms at 48 kHz: less than one tick
    // Not connected to the destination: the user must not hear themselves.
    this.#source.connect(this.#analyser);
    this.#samples = new Float32Array(this.#analyser.fftSize);
    // setInterval, not requestAnimationFrame: the meter must also move in a background tab.
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    if (context.state === "suspended") {
      // Chromium lets a page that is capturing start audio without a gesture; for any
      // other stream the context waits for the user's first pointerdown or keydown.
      context.resume().catch(() => {});
      this.#resumeOnGesture(context);
    }
  }

  /** Release the AudioContext and its nodes; the meter shows 0. */
  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
    this.#removeGestureListeners();
    this.#source?.disconnect();
    this.#context?.close().catch(() => {});  // already closed: nothing to release
    this.#context = null;
    this.#source = null;
    this.#analyser = null;
    this.#samples = null;
    this.#show(0);
  }

  #tick() {
    if (!this.#analyser) {
      return;
    }
    this.#analyser.getFloatTimeDomainData(this.#samples);
    let sum = 0;
    for (const sample of this.#samples) {
      sum += sample * sample;
    }
    const target = levelOf(Math.sqrt(sum / this.#samples.length));
    const rate = target > this.#level ? ATTACK : RELEASE;
    this.#show(this.#level + (target - this.#level) * rate);
  }

  #show(level) {
    this.#level = level < 0.001 ? 0 : level;
    this.#meter.value = this.#level;
    this.#meter.setAttribute("aria-valuenow", String(this.#level));
    this.#meter.setAttribute("aria-valuetext", `${Math.round(this.#level * 100)}%`);
  }

  #resumeOnGesture(context) {
    this.#onGesture = () => {
      this.#removeGestureListeners();
      context.resume().catch(() => {});  // closed meanwhile: stop() already cleaned up
    };
    for (const type of GESTURES) {
      document.addEventListener(type, this.#onGesture, { capture: true });
    }
  }

  #removeGestureListeners() {
    if (this.#onGesture) {
      for (const type of GESTURES) {
        document.removeEventListener(type, this.#onGesture, { capture: true });
      }
      this.#onGesture = null;
    }
  }
}

const CHIME = [  // a falling major third, like a doorbell: E5 then C5
  { frequency: 659.25, at: 0, length: 0.7 },
  { frequency: 523.25, at: 0.45, length: 0.75 },
];
const CHIME_SECONDS = 1.2;
const START_WAIT_MS = 1500;

function error(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

/**
 * Play a ~1.2 s two-note chime on the chosen output; resolves when it has finished.
 * Rejects with an Error named NotSupportedError (no Web Audio), NotFoundError (sinkId
 * unknown), NotAllowedError (the browser would not start audio: call it from a click or
 * while capturing) or AbortError (the output stopped while playing).
 * @param {{ sinkId?: string }} [options]
 */
export async function playTestSound({ sinkId = "" } = {}) {
  if (typeof AudioContext === "undefined") {
    throw error("NotSupportedError", "Web Audio is not available");
  }
  const context = new AudioContext();
  try {
    if (sinkId && typeof context.setSinkId === "function") {
      try {
        await context.setSinkId(sinkId);
      } catch (cause) {
        throw error(cause.name === "NotAllowedError" ? "NotAllowedError" : "NotFoundError",
          "cannot play on the chosen output");
      }
    }
    await startOrFail(context);
    const start = context.currentTime + 0.05;
    for (const { frequency, at, length } of CHIME) {
      note(context, frequency, start + at, length);
    }
    await new Promise((resolve, reject) => {
      // Audio time, not a timer: the chime has ended when the context clock says so. Its
      // clock stops if the output goes away: then give up after a generous wait.
      const end = start + CHIME_SECONDS;
      const giveUp = performance.now() + (CHIME_SECONDS + 2) * 1000;
      const check = setInterval(() => {
        if (context.currentTime >= end) {
          clearInterval(check);
          resolve();
        } else if (context.state !== "running" || performance.now() > giveUp) {
          clearInterval(check);
          reject(error("AbortError", "the audio output stopped"));
        }
      }, 50);
    });
  } finally {
    await context.close().catch(() => {});
  }
}

/** Resume the context, or fail within START_WAIT_MS if the autoplay policy forbids it. */
async function startOrFail(context) {
  if (context.state === "running") {
    return;
  }
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, START_WAIT_MS);
  });
  await Promise.race([context.resume().catch(() => {}), timeout]);
  clearTimeout(timer);
  if (context.state !== "running") {
    throw error("NotAllowedError", "the browser did not allow audio to start");
  }
}

/** One soft bell-like note: a sine and a quiet octave, a quick attack, a long decay. */
function note(context, frequency, at, length) {
  const gain = context.createGain();
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.25, at + 0.015);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + length);
  gain.connect(context.destination);
  for (const [multiple, level] of [[1, 1], [2, 0.15]]) {
    const oscillator = context.createOscillator();
    const partial = context.createGain();
    oscillator.frequency.value = frequency * multiple;
    partial.gain.value = level;
    oscillator.connect(partial).connect(gain);
    oscillator.start(at);
    oscillator.stop(at + length);
  }
}

function urlsOf(iceServers) {
  return iceServers.flatMap((server) => [].concat(server.urls ?? []));
}

/**
 * Can this browser reach the call server, and which ICE paths does it have?
 * @param {object} options
 * @param {RTCIceServer[]} [options.iceServers]  as in welcome.ice_servers
 * @param {string} options.wsUrl  the signalling WebSocket (it is opened and closed only)
 * @param {number} [options.timeoutMs]  for each of the two probes, which run together
 * @param {boolean} [options.relayOnly]  check the relay only, as a Hide my IP call uses
 * Throws only what is no network condition: NotSupportedError without WebRTC, and the
 * RTCPeerConnection constructor's own errors for malformed iceServers.
 * @returns {Promise<{ verdict: string, details: { host: number, srflx: number,
 *   relay: number, stunConfigured: boolean, turnConfigured: boolean,
 *   serverReachable: boolean } }>}
 */
export async function checkNetwork({ iceServers = [], wsUrl, timeoutMs = 6000,
  relayOnly = false } = {}) {
  if (typeof RTCPeerConnection === "undefined") {
    throw error("NotSupportedError", "WebRTC is not available");
  }
  const urls = urlsOf(iceServers ?? []);
  const stunConfigured = urls.some((url) => /^stuns?:/i.test(url));
  const turnConfigured = urls.some((url) => /^turns?:/i.test(url));
  const answersStunOverUdp = urls.some((url) => /^stun:/i.test(url)
    || (/^turn:/i.test(url) && !/[?&]transport=tcp\b/i.test(url)));
  if (relayOnly && !turnConfigured) {
    const serverReachable = await probeServer(wsUrl, timeoutMs);
    return { verdict: serverReachable ? "no_relay" : "unreachable", details: { host: 0,
      srflx: 0, relay: 0, stunConfigured, turnConfigured, serverReachable } };
  }
  const [serverReachable, gathered] = await Promise.all([
    probeServer(wsUrl, timeoutMs),
    gather(iceServers ?? [], timeoutMs, relayOnly ? "relay" : "all"),
  ]);
  const { host, srflx, relay } = gathered.counts;
  const details = { host, srflx, relay, stunConfigured, turnConfigured, serverReachable };
  const stunAnswered = answersStunOverUdp && host > 0 && gathered.complete
    && !gathered.serverFailed;
  let verdict;
  if (!serverReachable) {
    verdict = "unreachable";
  } else if (srflx > 0 || stunAnswered) {
    verdict = "direct";
  } else if (relay > 0) {
    verdict = "relay_only";
  } else if (stunConfigured || turnConfigured) {
    verdict = "blocked";
  } else {
    verdict = "no_servers";
  }
  return { verdict, details };
}

/** True when a WebSocket to wsUrl opens within timeoutMs; it is closed at once (1000). */
function probeServer(wsUrl, timeoutMs) {
  return new Promise((resolve) => {
    let socket;
    try {
      socket = new WebSocket(wsUrl);
    } catch {
      resolve(false);  // a malformed URL: nothing to reach
      return;
    }
    const finish = (reachable) => {
      clearTimeout(timer);
      socket.onopen = socket.onerror = socket.onclose = socket.onmessage = null;
      if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) {
        socket.close(1000);  // nothing is ever sent: a hello would count as joining
      }
      resolve(reachable);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.onopen = () => finish(true);
    socket.onerror = () => finish(false);
    socket.onclose = () => finish(false);
  });
}

/** Candidate counts by type from a throwaway connection, which is always closed. */
async function gather(iceServers, timeoutMs, iceTransportPolicy) {
  const counts = { host: 0, srflx: 0, relay: 0 };
  let serverFailed = false;
  let timer;
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy, iceCandidatePoolSize: 0 });
  try {
    const complete = new Promise((resolve) => {
      pc.onicecandidate = ({ candidate }) => {
        if (!candidate) {
          resolve(true);  // end of candidates
          return;
        }
        const type = CANDIDATE_TYPE.exec(candidate.candidate)?.[1];
        if (type in counts) {
          counts[type] += 1;
        }
      };
      pc.onicegatheringstatechange = () => {
        if (pc.iceGatheringState === "complete") {
          resolve(true);
        }
      };
      pc.onicecandidateerror = () => {
        serverFailed = true;  // which one is not needed: any failure voids the inference
      };
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    pc.createDataChannel("precall");
    await pc.setLocalDescription(await pc.createOffer());
    return { counts, complete: await complete, serverFailed };
  } catch {
    return { counts, complete: false, serverFailed };  // no offer: nothing more to learn
  } finally {
    clearTimeout(timer);
    pc.close();
  }
}
