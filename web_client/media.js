// The local camera and microphone: acquisition with clear reasons when it fails, device
// lists for the pickers, and the mute / camera-off switches (track.enabled, so no
// renegotiation is ever needed for them).

// Why acquisition failed, as a code (`media.<code>` in i18n.js holds its words): insecure,
// denied, missing, busy, noCamera (sound only), noMicrophone (picture only).

function problemOf(error) {
  switch (error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "denied";
    case "NotReadableError":
    case "AbortError":
      return "busy";
    default:
      return "missing";  // NotFoundError, OverconstrainedError
  }
}

function constraint(deviceId) {
  return deviceId ? { deviceId: { exact: deviceId } } : true;
}

export class LocalMedia {
  constructor() {
    this.stream = null;
    this.problem = null;
    this.microphoneOn = true;
    this.cameraOn = true;
  }

  get videoTrack() {
    return this.stream?.getVideoTracks()[0] ?? null;
  }

  get audioTrack() {
    return this.stream?.getAudioTracks()[0] ?? null;
  }

  /** Open the chosen (or default) devices; on failure keep what works and say why. */
  async start({ cameraId = "", microphoneId = "" } = {}) {
    if (!navigator.mediaDevices?.getUserMedia) {
      this.#replace(null, "insecure");
      return this;
    }
    this.stop();  // phones cannot open a camera twice: release it before switching
    const video = constraint(cameraId);
    const audio = constraint(microphoneId);
    try {
      this.#replace(await navigator.mediaDevices.getUserMedia({ video, audio }), null);
      return this;
    } catch (error) {
      const problem = problemOf(error);
      if (problem === "denied") {
        this.#replace(null, problem);
        return this;
      }
      // One of the two may be missing or busy: keep the other.
      for (const [constraints, partial] of [[{ audio }, "noCamera"], [{ video }, "noMicrophone"]]) {
        try {
          this.#replace(await navigator.mediaDevices.getUserMedia(constraints), partial);
          return this;
        } catch {
          // try the next
        }
      }
      this.#replace(null, problem);
      return this;
    }
  }

  /** Cameras and microphones for the pickers (labels are known once permission is given). */
  async devices() {
    if (!navigator.mediaDevices?.enumerateDevices) {
      return { cameras: [], microphones: [] };
    }
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      cameras: all.filter((d) => d.kind === "videoinput" && d.deviceId),
      microphones: all.filter((d) => d.kind === "audioinput" && d.deviceId),
    };
  }

  setMicrophone(on) {
    this.microphoneOn = on;
    if (this.audioTrack) {
      this.audioTrack.enabled = on;
    }
  }

  setCamera(on) {
    this.cameraOn = on;
    if (this.videoTrack) {
      this.videoTrack.enabled = on;
    }
  }

  stop() {
    for (const track of this.stream?.getTracks() ?? []) {
      track.stop();
    }
    this.stream = null;
  }

  #replace(stream, problem) {
    this.stop();
    this.stream = stream;
    this.problem = problem;
    this.setMicrophone(this.microphoneOn);
    this.setCamera(this.cameraOn);
  }
}
