// What the call page adds to audio and video once connected, all over the call's data
// channel (channel.js), peer to peer: the other person's microphone and camera state,
// connection quality for both ends, audio only, screen sharing, chat, the session timer
// and, for the client, the next session the professional just booked.
//
// Invariants:
// - what we send as video is one decision, `outgoingVideo()`: nothing in audio only,
//   else the shared screen, else the camera; every change goes through `sync()`, which
//   puts it on the connection (replaceTrack: never a renegotiation), tells the other
//   side (`state`) and tells the page (`onVideoChange`, for the attendance report);
// - nothing here reaches the server: chat and figures exist in the two pages only, and
//   the chat is emptied at hang-up.

import { CallChannel } from "./channel.js";
import { Chat } from "./chat.js";
import { formatDuration, formatRange, t } from "./i18n.js";
import { SAMPLE_MS, QualityProbe, grade, worseOf } from "./quality.js";
import { $, elementsById, show } from "./ui.js";

// Audio only is suggested (or switched to) after this long poor.
export const POOR_FOR_MS = 10_000;
// The other side's figures count while they are this fresh (they come every SAMPLE_MS).
const STALE_MS = 3 * SAMPLE_MS;

export class InCall {
  /**
   * @param {object} options
   * @param {import("./media.js").LocalMedia} options.media
   * @param {() => string} options.otherName
   * @param {() => object|null} options.session  the last GET .../session answer
   * @param {() => number} options.clock  the server's clock, in ms
   * @param {() => void} options.onChange  redraw the page
   * @param {() => void} options.onVideoChange  whether we send video may have changed
   * @param {(booking: object) => void} options.onBooked  the other side booked (client)
   */
  constructor({ media, otherName, session, clock, onChange, onVideoChange, onBooked }) {
    this.media = media;
    this.otherName = otherName;
    this.session = session;
    this.clock = clock;
    this.onChange = onChange;
    this.onVideoChange = onVideoChange;
    this.onBooked = onBooked;
    this.els = elementsById([
      ["remoteMuted", "remote-muted"], ["remoteOff", "remote-camera-off"],
      ["localOff", "local-camera-off"], ["localVideo", "local-video"],
      ["notice", "call-notice"], ["suggestion", "audio-only-suggestion"],
      ["accept", "audio-only-accept"], ["dismiss", "audio-only-dismiss"],
      ["audioOnly", "audio-only-button"], ["screen", "screen-share-button"],
      ["both", "audio-only-both"], ["auto", "audio-only-auto"],
      ["quality", "quality-indicator"], ["details", "quality-details"],
      ["timer", "session-timer"],
    ]);
    this.chat = new Chat({ list: $("chat-messages"), form: $("chat-form"),
      input: $("chat-input"), button: $("chat-send"),
      send: (message) => this.channel?.send("chat", message) ?? false });
    this.call = null;
    this.channel = null;
    this.probe = null;
    this.sampler = null;
    this.timer = null;
    this.#reset();
    this.#wire();
  }

  #reset() {
    this.remote = null;  // their last `state`
    this.theirs = null;  // their last `stats`, with `at` (this device's clock)
    this.mine = null;  // our own figures and grade
    this.audioOnly = null;  // null, or who chose it: "mine" | "auto" | "theirs"
    this.note = null;  // {key, params}: the last thing to say in `call-notice`
    this.poorSince = null;
    this.dismissed = false;
    this.sharing = null;  // the shared screen's track
  }

  #wire() {
    this.els.audioOnly.addEventListener("click", () => {
      if (this.audioOnly === null) {
        this.startAudioOnly("mine");
      } else {
        this.stopAudioOnly();
      }
    });
    this.els.accept.addEventListener("click", () => this.startAudioOnly("mine"));
    this.els.dismiss.addEventListener("click", () => {
      this.dismissed = true;
      this.onChange();
    });
    this.els.screen.addEventListener("click", () => (this.sharing ? this.stopSharing()
      : this.startSharing()));
    this.els.auto.checked = localStorage.getItem("carecall:audio-only-auto") === "1";
    this.els.auto.addEventListener("change", () => {
      localStorage.setItem("carecall:audio-only-auto", this.els.auto.checked ? "1" : "0");
    });
  }

  // -- the connection ----------------------------------------------------------------

  /** A new peer connection: its channel and its stats are ours to read. */
  attach(call) {
    this.call = call;
    this.probe = new QualityProbe(call.pc);
    this.remote = null;
    this.theirs = null;
    this.mine = null;
    this.channel = new CallChannel(call.channel, {
      onOpen: () => this.#onOpen(call),
      onMessage: (message) => {
        if (call === this.call) {
          this.#onMessage(message);
          this.onChange();
        }
      },
    });
    this.chat.setReady(false);
    this.sync();
  }

  /** The peer connection closed (the other side left, or a new one is coming). */
  detach() {
    this.call = null;
    this.channel = null;
    this.probe = null;
    this.remote = null;
    this.theirs = null;
    this.chat.setReady(false);
  }

  /** The call began (we joined): the timer and the quality sampler run until `end`. */
  begin() {
    clearInterval(this.sampler);
    clearInterval(this.timer);
    this.sampler = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer = setInterval(() => this.#renderTimer(), 1000);
  }

  /** Hang-up or refusal: nothing of the call is kept. */
  end() {
    clearInterval(this.sampler);
    clearInterval(this.timer);
    this.sharing?.stop();
    this.detach();
    this.#reset();
    this.chat.clear();
  }

  #onOpen(call) {
    if (call !== this.call) {
      return;
    }
    this.chat.setReady(true);
    this.#sendState();
    if ((this.audioOnly === "mine" || this.audioOnly === "auto") && this.els.both.checked) {
      this.channel.send("audio-only", { on: true });  // a new connection: ask again
    }
    this.onChange();
  }

  #onMessage(message) {
    switch (message.t) {
      case "state":
        this.remote = message;
        break;
      case "stats":
        this.theirs = { ...message, at: Date.now() };
        break;
      case "audio-only":
        if (message.on && this.audioOnly === null) {
          this.audioOnly = "theirs";
          this.note = { key: "audioOnly.theirs" };
          this.sync();
        } else if (!message.on && this.audioOnly !== null) {
          this.audioOnly = null;
          this.note = { key: "audioOnly.theirsOff" };
          this.sync();
        }
        break;
      case "chat":
        this.chat.add({ text: message.text, at: message.at, mine: false,
          name: this.otherName() });
        break;
      case "booked":
        this.note = { key: "call.booked", params: { when: formatRange(message.starts_at,
          message.ends_at) } };
        this.onBooked(message);
        break;
      default:
        break;
    }
  }

  // -- what we send ------------------------------------------------------------------

  /** The video track to send: none in audio only, else the screen, else the camera. */
  outgoingVideo() {
    if (this.audioOnly !== null) {
      return null;
    }
    return this.sharing ?? this.media.videoTrack;
  }

  /** Whether video flows from us (for `media` reports and the other side's labels). */
  get sendingVideo() {
    const track = this.outgoingVideo();
    return track !== null && (track === this.sharing || this.media.cameraOn);
  }

  /** Put the current choice on the connection and tell both sides. */
  sync() {
    this.call?.sendVideo(this.outgoingVideo()).catch((error) => {
      console.warn("carecall: could not change the video sent:", error.name);
    });
    const local = this.sharing ? new MediaStream([this.sharing]) : this.media.stream;
    if (this.els.localVideo.srcObject !== local) {
      this.els.localVideo.srcObject = local;
    }
    this.#sendState();
    this.onVideoChange();
    this.onChange();
  }

  #sendState() {
    this.channel?.send("state", {
      mic: this.media.audioTrack !== null && this.media.microphoneOn,
      camera: this.media.videoTrack !== null && this.media.cameraOn,
      video: this.sendingVideo,
      screen: this.sharing !== null && this.audioOnly === null,
    });
  }

  /** Stop video (ours, and theirs if "ask the other person too" is ticked). */
  startAudioOnly(who) {
    this.audioOnly = who;
    this.note = { key: who === "auto" ? "audioOnly.mineAuto" : "audioOnly.mine" };
    if (this.els.both.checked) {
      this.channel?.send("audio-only", { on: true });
    }
    this.sync();
  }

  /** Video again, on both sides. */
  stopAudioOnly() {
    this.audioOnly = null;
    this.note = null;
    this.poorSince = null;
    this.channel?.send("audio-only", { on: false });
    this.sync();
  }

  async startSharing() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (error) {
      this.note = { key: "screen.failed", params: { reason: error.name } };
      this.onChange();
      return;
    }
    const [track] = stream.getVideoTracks();
    track.addEventListener("ended", () => this.stopSharing());  // the browser's own "Stop"
    this.sharing = track;
    this.note = null;
    this.sync();
  }

  stopSharing() {
    if (this.sharing !== null) {
      this.sharing.stop();
      this.sharing = null;
      this.sync();
    }
  }

  // -- quality -----------------------------------------------------------------------

  async sample() {
    const { call, probe } = this;
    if (call === null || probe === null || call.state !== "connected") {
      return;
    }
    let figures;
    try {
      figures = await probe.sample();
    } catch {
      return;  // the connection closed while reading
    }
    if (figures === null || call !== this.call) {
      return;
    }
    const remote = this.remote;
    const quality = grade(figures, { sendingVideo: this.sendingVideo,
      expectVideo: remote !== null && remote.video && remote.camera && !remote.screen });
    this.mine = { ...figures, quality };
    this.channel?.send("stats", this.mine);
    this.#watchPoor();
    this.onChange();
  }

  /** The worse of our grade and theirs (theirs only while fresh). */
  get quality() {
    const theirs = this.theirs !== null && Date.now() - this.theirs.at < STALE_MS
      ? this.theirs.quality : null;
    return worseOf(this.mine?.quality ?? null, theirs);
  }

  #watchPoor() {
    if (this.quality !== "poor") {
      this.poorSince = null;
      if (this.quality === "good") {
        this.dismissed = false;
      }
      return;
    }
    this.poorSince ??= Date.now();
    if (this.audioOnly === null && this.els.auto.checked
        && Date.now() - this.poorSince >= POOR_FOR_MS) {
      this.startAudioOnly("auto");
    }
  }

  get suggesting() {
    return this.audioOnly === null && !this.dismissed && !this.els.auto.checked
      && this.poorSince !== null && Date.now() - this.poorSince >= POOR_FOR_MS;
  }

  // -- drawing -----------------------------------------------------------------------

  render(inCall) {
    const name = this.otherName();
    const remote = inCall ? this.remote : null;
    show(this.els.remoteMuted, remote !== null && !remote.mic);
    this.els.remoteMuted.textContent = t("call.remoteMuted", { name });
    const remoteOff = remote !== null && !remote.video;
    show(this.els.remoteOff, remoteOff);
    this.els.remoteOff.textContent = remote !== null && !remote.camera && this.audioOnly === null
      ? t("call.remoteCameraOff", { name }) : t("audioOnly.tile");
    show(this.els.localOff, inCall && !this.sendingVideo);
    this.els.localOff.textContent = this.audioOnly === null ? t("call.yourCameraOff")
      : t("audioOnly.tile");
    this.els.localVideo.classList.toggle("off", !this.sendingVideo);

    const on = this.audioOnly !== null;
    this.els.audioOnly.textContent = t(on ? "audioOnly.stop" : "audioOnly.start");
    this.els.audioOnly.setAttribute("aria-label", t(on ? "audioOnly.stopLabel"
      : "audioOnly.startLabel"));
    this.els.audioOnly.setAttribute("aria-pressed", String(on));
    const sharing = this.sharing !== null;
    this.els.screen.textContent = t(sharing ? "screen.stop" : "screen.start");
    this.els.screen.setAttribute("aria-label", t(sharing ? "screen.stopLabel"
      : "screen.startLabel"));
    this.els.screen.setAttribute("aria-pressed", String(sharing));
    this.els.screen.disabled = on || !navigator.mediaDevices?.getDisplayMedia;
    show(this.els.suggestion, inCall && this.suggesting);

    const note = this.note;
    show(this.els.notice, inCall && note !== null);
    this.els.notice.textContent = note ? t(note.key, { name, ...note.params }) : "";
    this.#renderQuality(name);
    this.#renderTimer();
  }

  #renderQuality(name) {
    const quality = this.quality;
    this.els.quality.dataset.quality = quality ?? "unknown";
    this.els.quality.textContent = quality ? t("quality.label",
      { grade: t(`quality.${quality}`) }) : t("quality.unknown");
    const fresh = this.theirs !== null && Date.now() - this.theirs.at < STALE_MS;
    const lines = [
      [t("quality.you", { grade: this.mine ? t(`quality.${this.mine.quality}`)
        : t("quality.none") }), this.mine],
      [t("quality.them", { name, grade: fresh ? t(`quality.${this.theirs.quality}`)
        : t("quality.none") }), fresh ? this.theirs : null],
    ];
    this.els.details.replaceChildren(...lines.map(([title, figures]) => {
      const line = document.createElement("p");
      line.textContent = figures ? `${title}: ${describe(figures)}` : title;
      return line;
    }));
  }

  #renderTimer() {
    const session = this.session();
    if (session === null) {
      return;
    }
    const now = this.clock();
    const start = Date.parse(session.starts_at);
    const end = Date.parse(session.ends_at);
    let text;
    if (now < start) {
      text = t("call.timerBefore", { left: formatDuration(start - now) });
    } else if (now < end) {
      text = t("call.timer", { elapsed: formatDuration(now - start),
        left: formatDuration(end - now) });
    } else {
      text = t("call.timerOver", { elapsed: formatDuration(now - start) });
    }
    this.els.timer.textContent = text;
  }
}

/** "round trip 40 ms, packet loss 0 %, …" for one side's figures. */
function describe(figures) {
  const value = (key, n) => (typeof n === "number" ? t(key, { n }) : t("quality.na"));
  return t("quality.figures", {
    rtt: value("quality.ms", figures.rtt_ms), loss: value("quality.pct", figures.loss_pct),
    out: value("quality.kbps", figures.out_kbps), fps: value("quality.fps", figures.in_fps),
    kbps: value("quality.kbps", figures.in_video_kbps),
  });
}
