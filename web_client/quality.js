// Connection quality: the figures of the last interval from `getStats`, and their grade.
// Each side grades its own view of the path and sends its figures to the other over the
// data channel (docs/protocol.md, "The call's data channel"), so each person sees both
// ends. The thresholds are the protocol's; peer/channel.py grades with the same ones.

export const SAMPLE_MS = 2000;

// [fair when worse than, poor when worse than], per figure; "worse" is above for round
// trip and loss, below for the rest.
export const THRESHOLDS = {
  rtt_ms: [200, 400],
  loss_pct: [2, 8],
  out_kbps: [400, 150],       // only while we send video
  in_video_kbps: [300, 100],  // only while the other side says its camera is on
  in_fps: [15, 8],            // likewise (the fake camera and many webcams run at 20)
};
const HIGHER_IS_WORSE = new Set(["rtt_ms", "loss_pct"]);
const ORDER = ["good", "fair", "poor"];

function figureGrade(name, value) {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return "good";  // not measured: no evidence either way
  }
  const [fair, poor] = THRESHOLDS[name];
  const worse = HIGHER_IS_WORSE.has(name) ? (limit) => value > limit : (limit) => value < limit;
  if (worse(poor)) {
    return "poor";
  }
  return worse(fair) ? "fair" : "good";
}

/** The worse of two grades (null counts as unknown and loses to any grade). */
export function worseOf(a, b) {
  if (a === null || a === undefined) {
    return b ?? null;
  }
  if (b === null || b === undefined) {
    return a;
  }
  return ORDER.indexOf(a) >= ORDER.indexOf(b) ? a : b;
}

/**
 * good / fair / poor for one side's figures. `sendingVideo`: we send video (so the
 * outgoing bitrate matters); `expectVideo`: the other side sends camera video (so too
 * little of it received is the path's fault, not a camera turned off or a still screen).
 */
export function grade(figures, { sendingVideo, expectVideo }) {
  const names = ["rtt_ms", "loss_pct"];
  if (sendingVideo) {
    names.push("out_kbps");
  }
  if (expectVideo) {
    names.push("in_video_kbps", "in_fps");
  }
  return names.map((name) => figureGrade(name, figures[name])).reduce(worseOf, "good");
}

/** Reads a peer connection's stats and turns two readings into the interval's figures. */
export class QualityProbe {
  constructor(pc) {
    this.pc = pc;
    this.last = null;  // {at, lost, received, videoBytes, frames}
  }

  /** The figures since the previous call, or null on the first (nothing to compare yet). */
  async sample() {
    const report = await this.pc.getStats();
    let pair = null;
    let lost = 0;
    let received = 0;
    let videoBytes = 0;
    let frames = 0;
    let at = null;
    report.forEach((entry) => {
      if (entry.type === "transport" && entry.selectedCandidatePairId) {
        pair = report.get(entry.selectedCandidatePairId) ?? pair;
      } else if (entry.type === "candidate-pair" && entry.nominated && pair === null
                 && entry.state === "succeeded") {
        pair = entry;
      } else if (entry.type === "inbound-rtp") {
        lost += Math.max(0, entry.packetsLost ?? 0);
        received += entry.packetsReceived ?? 0;
        if (entry.kind === "video") {
          videoBytes += entry.bytesReceived ?? 0;
          frames += entry.framesDecoded ?? 0;
        }
      }
      at = Math.max(at ?? 0, entry.timestamp ?? 0);
    });
    const now = { at: at ?? performance.now(), lost, received, videoBytes, frames };
    const before = this.last;
    this.last = now;
    if (before === null || now.at <= before.at) {
      return null;
    }
    const seconds = (now.at - before.at) / 1000;
    const lostDelta = Math.max(0, now.lost - before.lost);
    const packets = lostDelta + Math.max(0, now.received - before.received);
    return {
      rtt_ms: typeof pair?.currentRoundTripTime === "number"
        ? Math.round(pair.currentRoundTripTime * 1000) : null,
      loss_pct: packets > 0 ? Math.round((1000 * lostDelta) / packets) / 10 : null,
      out_kbps: typeof pair?.availableOutgoingBitrate === "number"
        ? Math.round(pair.availableOutgoingBitrate / 1000) : null,
      in_fps: Math.round((10 * Math.max(0, now.frames - before.frames)) / seconds) / 10,
      in_video_kbps: Math.round((8 * Math.max(0, now.videoBytes - before.videoBytes))
        / seconds / 1000),
    };
  }
}
