// One RTCPeerConnection and its negotiation: perfect negotiation (W3C WebRTC 1.0 section
// 10.x, "Perfect Negotiation Example") with the server's `polite` flag, and trickle ICE.
//
// Invariants (docs/protocol.md):
// - the impolite side makes the offers: its negotiationneeded drives them, the first one
//   as soon as the tracks are added (the app creates a Call only once both are present);
// - the polite side never starts a negotiation by itself, because the headless aiortc
//   peer opposite a polite browser treats any later offer as a brand-new connection;
//   it answers, and on glare it yields (setRemoteDescription rolls its offer back);
// - candidates that arrive before a remote description wait in a queue;
// - a Call is used for one connection only: a new connection is a new Call;
// - both sides create the negotiated data channel (docs/protocol.md, "The call's data
//   channel") before their first offer or answer, so the offerer's offer carries it;
// - the video m-line can always send: a side without a camera still answers sendrecv,
//   so a shared screen or the camera again is a replaceTrack, never a renegotiation
//   (which the polite side may not start, opposite aiortc).

const FINGERPRINT = /^a=fingerprint:\S+ (\S+)/m;

export function sdpFingerprint(sdp) {
  const match = FINGERPRINT.exec(sdp ?? "");
  return match ? match[1].toUpperCase() : null;
}

export class Call {
  /**
   * @param {object} options
   * @param {RTCIceServer[]} options.iceServers  from welcome.ice_servers
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy]  "relay": gather and offer
   *   TURN relay candidates only, so the other party never learns our address
   * @param {boolean} options.polite
   * @param {(message: object) => void} options.send  to the signalling socket
   * @param {(track: MediaStreamTrack) => void} options.onTrack
   * @param {(state: RTCPeerConnectionState) => void} options.onStateChange
   */
  constructor({ iceServers, iceTransportPolicy = "all", polite, send, onTrack,
    onStateChange }) {
    this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy });
    this.polite = polite;
    this.send = send;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswer = false;
    this.pendingCandidates = [];
    this.closed = false;
    this.localCandidateTypes = new Set();
    this.everConnected = false;
    const pc = this.pc;
    this.channel = pc.createDataChannel("carecall", { negotiated: true, id: 0, ordered: true });
    pc.onicecandidate = ({ candidate }) => {
      // The end-of-candidates marker is not needed: aiortc never waits for it.
      if (candidate && candidate.candidate) {
        this.localCandidateTypes.add(candidate.type);
        this.send({ type: "signal", candidate: { candidate: candidate.candidate,
          sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex } });
      }
    };
    pc.ontrack = ({ track }) => onTrack(track);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") {
        this.everConnected = true;
      }
      if (!this.closed) {
        onStateChange(pc.connectionState);
      }
    };
    pc.onnegotiationneeded = () => {
      if (!this.polite) {
        this.offer();
      }
    };
  }

  get state() {
    return this.closed ? "closed" : this.pc.connectionState;
  }

  /** Still able to carry media (the headless peer's `_media_alive`). */
  get alive() {
    return ["new", "connecting", "connected"].includes(this.state);
  }

  /** Send our tracks; an offerer also asks to receive a kind it does not send. */
  addLocalTracks(stream, { offerer }) {
    const kinds = new Set();
    for (const track of stream ? stream.getTracks() : []) {
      this.pc.addTrack(track, stream);
      kinds.add(track.kind);
    }
    if (offerer) {
      // The offer must carry both m-lines; an answerer gets them from the offer.
      // Video can be sent later (a shared screen) without a new offer.
      for (const kind of ["audio", "video"]) {
        if (!kinds.has(kind)) {
          this.pc.addTransceiver(kind, { direction: kind === "video" ? "sendrecv" : "recvonly" });
        }
      }
    }
  }

  /** The sender of our video m-line (camera, shared screen or nothing), if negotiated. */
  get videoSender() {
    const transceiver = this.pc.getTransceivers().find((tr) => tr.receiver.track?.kind
      === "video" && !tr.stopped);
    return transceiver?.sender ?? null;
  }

  /** Swap the camera or microphone without renegotiating. */
  async replaceTrack(track) {
    for (const sender of this.pc.getSenders()) {
      if (sender.track && sender.track.kind === track.kind) {
        await sender.replaceTrack(track);
      }
    }
  }

  /** What video we send: a camera or screen track, or null for none (audio only). */
  async sendVideo(track) {
    const sender = this.videoSender;
    if (sender !== null && sender.track !== track) {
      await sender.replaceTrack(track);
    }
  }

  /**
   * Why a connection that never came up failed (the causes of docs/protocol.md, "Media
   * and attendance"): ICE found no working pair, or none with a relay when only relays
   * were allowed; or ICE worked and DTLS did not.
   */
  failureCause(relayOnly) {
    const ice = this.pc.iceConnectionState;
    if (ice === "connected" || ice === "completed") {
      return "dtls_failed";
    }
    if (relayOnly && !this.localCandidateTypes.has("relay")) {
      return "no_relay_candidate";
    }
    return "no_candidate_pair";
  }

  async offer() {
    if (this.closed) {
      return;
    }
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.#sendDescription();
    } catch (error) {
      console.warn("carecall: could not make an offer:", error.name);
    } finally {
      this.makingOffer = false;
    }
  }

  /** ICE restart on the same connection (RFC 8445 section 9): the impolite side's job. */
  restartIce() {
    if (!this.closed) {
      this.pc.restartIce();  // fires negotiationneeded, which makes the offer
    }
  }

  /** True when an offer comes from a different connection than the one we talk to. */
  isFromAnotherConnection(description) {
    const current = this.pc.remoteDescription;
    if (description.type !== "offer" || !current) {
      return false;
    }
    return sdpFingerprint(description.sdp) !== sdpFingerprint(current.sdp);
  }

  async onDescription(description) {
    if (this.closed) {
      return;
    }
    const pc = this.pc;
    if (description.type === "answer" && pc.signalingState !== "have-local-offer") {
      return;  // a late answer to an offer that was rolled back or superseded
    }
    const readyForOffer = !this.makingOffer
      && (pc.signalingState === "stable" || this.settingRemoteAnswer);
    const collision = description.type === "offer" && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) {
      return;  // glare: the impolite side keeps its own offer
    }
    this.settingRemoteAnswer = description.type === "answer";
    try {
      // On glare the polite side's own offer is rolled back implicitly here.
      await pc.setRemoteDescription({ type: description.type, sdp: description.sdp });
    } finally {
      this.settingRemoteAnswer = false;
    }
    await this.#flushCandidates();
    if (description.type === "offer") {
      this.#answerVideoSendrecv();
      await pc.setLocalDescription();
      this.#sendDescription();
    }
  }

  async onCandidate(candidate) {
    if (this.closed || !candidate || !candidate.candidate) {
      return;
    }
    this.pendingCandidates.push(candidate);
    await this.#flushCandidates();
  }

  close() {
    if (!this.closed) {
      this.closed = true;
      this.pc.close();
    }
  }

  /** Without a camera our video m-line would answer recvonly: keep it able to send. */
  #answerVideoSendrecv() {
    for (const transceiver of this.pc.getTransceivers()) {
      if (transceiver.receiver.track?.kind === "video" && transceiver.direction === "recvonly"
          && transceiver.mid !== null) {
        transceiver.direction = "sendrecv";
      }
    }
  }

  #sendDescription() {
    const { type, sdp } = this.pc.localDescription;
    this.send({ type: "signal", description: { type, sdp } });
  }

  async #flushCandidates() {
    if (this.closed || !this.pc.remoteDescription) {
      return;
    }
    const pending = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const { candidate, sdpMid, sdpMLineIndex } of pending) {
      try {
        await this.pc.addIceCandidate({ candidate, sdpMid, sdpMLineIndex });
      } catch {
        // A candidate for an offer we ignored or a connection since replaced: harmless.
      }
    }
  }
}
