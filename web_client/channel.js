// The call's data channel (docs/protocol.md, "The call's data channel"): what the two
// parties tell each other that is not media, peer to peer and encrypted by DTLS. The
// server never sees it. This module checks what arrives and builds what is sent; app.js
// decides what to do with it.

export const MAX_FRAME_BYTES = 16 * 1024;
export const MAX_CHAT_CHARS = 2000;
const MAX_ID_CHARS = 64;
const GRADES = ["good", "fair", "poor"];
const FIGURES = ["rtt_ms", "loss_pct", "out_kbps", "in_fps", "in_video_kbps"];

const isBool = (value) => typeof value === "boolean";
const isText = (value, max) => typeof value === "string" && value.length >= 1
  && value.length <= max;
const isTime = (value) => typeof value === "string" && !Number.isNaN(Date.parse(value));

// What each kind must carry; a frame that fails its check is dropped.
const CHECKS = {
  state: (m) => ["mic", "camera", "video", "screen"].every((name) => isBool(m[name])),
  stats: (m) => GRADES.includes(m.quality) && FIGURES.every((name) => m[name] === null
    || m[name] === undefined || (typeof m[name] === "number" && Number.isFinite(m[name]))),
  "audio-only": (m) => isBool(m.on),
  chat: (m) => isText(m.id, MAX_ID_CHARS) && isText(m.text, MAX_CHAT_CHARS)
    && (m.at === undefined || isTime(m.at)),
  booked: (m) => isTime(m.starts_at) && isTime(m.ends_at) && typeof m.funding === "string",
};

/** A frame from the other side: the message, or null to ignore (bad, big or unknown). */
export function parseFrame(data) {
  if (typeof data !== "string" || data.length > MAX_FRAME_BYTES) {
    return null;
  }
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    return null;
  }
  if (message === null || typeof message !== "object" || Array.isArray(message)) {
    return null;
  }
  const check = Object.hasOwn(CHECKS, message.t) ? CHECKS[message.t] : null;
  return check !== null && check(message) ? message : null;
}

/** One connection's channel: sends when open, hands checked messages to `onMessage`. */
export class CallChannel {
  /**
   * @param {RTCDataChannel} channel
   * @param {{onOpen: () => void, onMessage: (message: object) => void}} handlers
   */
  constructor(channel, { onOpen, onMessage }) {
    this.channel = channel;
    channel.onopen = () => onOpen();
    channel.onmessage = ({ data }) => {
      const message = parseFrame(data);
      if (message !== null) {
        onMessage(message);
      }
    };
  }

  get open() {
    return this.channel.readyState === "open";
  }

  /** Send `{t: kind, ...fields}`; false when the channel is not open (nothing is queued). */
  send(kind, fields = {}) {
    if (!this.open) {
      return false;
    }
    this.channel.send(JSON.stringify({ t: kind, ...fields }));
    return true;
  }
}
