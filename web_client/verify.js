// The verification code (docs/security.md): the browser's half of the commit-then-reveal
// exchange that peer/verification.py implements for the headless peer. Both must compute
// the same 6 digits from the same inputs (tests/test_verification.py pins "513170").
//
// Invariants:
// - a party reveals its nonce only after it has sent its commit AND received the other's;
// - the other's commit may change only until we reveal (before that, nothing of ours is
//   known to whoever sent it, so a replaced commit gains an attacker nothing);
// - a reveal counts only if it opens the commit under the OTHER role (a reflected commit fails).

export const COMMIT = "x-verify-commit";
export const REVEAL = "x-verify-reveal";
const ROLES = ["professional", "client"];
const encoder = new TextEncoder();

export class VerificationError extends Error {}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text) {
  if (typeof text !== "string" || text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    return null;
  }
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i += 1) {
    bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  }
  return bytes;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** hex(SHA-256("carecall-commit-v1|" + role + "|" + nonce)), the nonce as raw bytes. */
export async function commitment(role, nonce) {
  return toHex(await sha256(concat(encoder.encode(`carecall-commit-v1|${role}|`), nonce)));
}

/** Upper-case, colon-separated hex: the form SDP and WebRTC stats use. */
export function normaliseFingerprint(value) {
  const hexits = String(value).replaceAll(":", "").trim().toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hexits)) {
    throw new VerificationError("a SHA-256 fingerprint has 32 bytes");
  }
  return hexits.match(/../g).join(":");
}

/**
 * The 6-digit code: SHA-256 over
 * "carecall-verify-v1|FP_pro|FP_client|hex(N_pro)|hex(N_client)", first 8 bytes as a
 * big-endian unsigned integer, mod 10^6, zero-padded.
 */
export async function computeCode(fpProfessional, fpClient, nonceProfessional, nonceClient) {
  const material = [
    "carecall-verify-v1", normaliseFingerprint(fpProfessional), normaliseFingerprint(fpClient),
    toHex(nonceProfessional), toHex(nonceClient),
  ].join("|");
  const digest = await sha256(encoder.encode(material));
  const value = new DataView(digest.buffer).getBigUint64(0, false) % 1000000n;
  return value.toString().padStart(6, "0");
}

/** One run of the exchange for one peer connection (new connection, new run). */
export class Verifier {
  constructor(role, nonce = crypto.getRandomValues(new Uint8Array(32))) {
    if (!ROLES.includes(role)) {
      throw new VerificationError(`unknown role ${role}`);
    }
    this.role = role;
    this.nonce = nonce;
    this.theirCommit = null;
    this.theirNonce = null;
    this.commitSent = false;
    this.revealSent = false;
  }

  get otherRole() {
    return this.role === "professional" ? "client" : "professional";
  }

  async commitMessage() {
    const commit = await commitment(this.role, this.nonce);
    this.commitSent = true;
    return { type: COMMIT, commit };
  }

  /** The reveal once both commits are out; null until then (or when already sent). */
  revealMessage() {
    if (!this.commitSent || this.theirCommit === null || this.revealSent) {
      return null;
    }
    this.revealSent = true;
    return { type: REVEAL, nonce: toHex(this.nonce) };
  }

  onCommit(message) {
    const commit = message.commit;
    if (typeof commit !== "string" || !/^[0-9a-f]{64}$/.test(commit)) {
      throw new VerificationError("malformed commit");
    }
    if (this.revealSent && this.theirCommit !== commit) {
      throw new VerificationError("the other party changed its commit after our reveal");
    }
    this.theirCommit = commit;
  }

  async onReveal(message) {
    if (this.theirCommit === null || !this.revealSent) {
      throw new VerificationError("a reveal came before the commits were exchanged");
    }
    const nonce = fromHex(message.nonce);
    if (nonce === null || nonce.length !== 32
        || await commitment(this.otherRole, nonce) !== this.theirCommit) {
      throw new VerificationError("the reveal does not match the commit");
    }
    this.theirNonce = nonce;
  }

  /** The code from our own and the other's certificate fingerprints; null until revealed. */
  async code(localFingerprint, remoteFingerprint) {
    if (this.theirNonce === null) {
      return null;
    }
    if (this.role === "professional") {
      return computeCode(localFingerprint, remoteFingerprint, this.nonce, this.theirNonce);
    }
    return computeCode(remoteFingerprint, localFingerprint, this.theirNonce, this.nonce);
  }
}

async function sha256Fingerprint(certificate) {
  // The stats give the digest named by the certificate's signature algorithm; the code
  // needs SHA-256 of the certificate as used on the wire, so hash the DER when they differ.
  if (certificate.fingerprintAlgorithm === "sha-256" && certificate.fingerprint) {
    return normaliseFingerprint(certificate.fingerprint);
  }
  const der = Uint8Array.from(atob(certificate.base64Certificate), (c) => c.charCodeAt(0));
  return normaliseFingerprint(toHex(await sha256(der)));
}

const FINGERPRINT_LINE = /^a=fingerprint:(\S+)[ \t]+(\S+)[ \t]*$/gim;

/** Every `a=fingerprint` line of an SDP, session- and media-level: [{algorithm, value}]. */
export function sdpFingerprintLines(sdp) {
  return Array.from(String(sdp ?? "").matchAll(FINGERPRINT_LINE),
    (match) => ({ algorithm: match[1].toLowerCase(), value: match[2] }));
}

/**
 * The SHA-256 fingerprint an SDP (RFC 8122) declares for its DTLS certificate.
 *
 * `whose` is "ours" for our own negotiated description: the browser wrote it about its
 * own certificate, so its SHA-256 line is the truth whatever other lines it has. For the
 * other side's ("theirs") every line must be SHA-256 and name one certificate: the browser
 * checks the certificate presented in the handshake against lines of its own choosing
 * (RFC 8122 section 5 has it pick the hash function it prefers; some accept any line), so
 * beside a SHA-384 or SHA-512 line a SHA-256 one may be decoration that a relay wrote to
 * make the codes match. aiortc's descriptions carry all three; Chromium's and Firefox's
 * SHA-256 only.
 * Throws a VerificationError saying why no fingerprint can be taken.
 */
export function descriptionFingerprint(sdp, whose) {
  const side = whose === "ours" ? "our" : "the other side's";
  const lines = sdpFingerprintLines(sdp);
  if (lines.length === 0) {
    throw new VerificationError(`${side} negotiated description has no DTLS fingerprint`);
  }
  const others = [...new Set(lines.filter((l) => l.algorithm !== "sha-256")
    .map((l) => l.algorithm))];
  if (whose !== "ours" && others.length > 0) {
    throw new VerificationError(`${side} description has a ${others.join(", ")} `
      + "fingerprint: the code needs SHA-256 and cannot be computed from the description");
  }
  const values = new Set();
  for (const line of lines.filter((l) => l.algorithm === "sha-256")) {
    values.add(normaliseFingerprint(line.value));
  }
  if (values.size === 0) {
    throw new VerificationError(`${side} description has no SHA-256 fingerprint (only `
      + `${others.join(", ")}): the code cannot be computed from the description`);
  }
  if (values.size > 1) {
    throw new VerificationError(`${side} description names more than one certificate`);
  }
  return [...values][0];
}

/** (local, remote) from the certificate stats (Chromium): null when the stats lack them. */
async function statsFingerprints(pc) {
  const stats = await pc.getStats();
  for (const report of stats.values()) {
    if (report.type !== "transport" || report.dtlsState !== "connected"
        || !report.localCertificateId || !report.remoteCertificateId) {
      continue;
    }
    const local = stats.get(report.localCertificateId);
    const remote = stats.get(report.remoteCertificateId);
    if (local && remote) {
      return [await sha256Fingerprint(local), await sha256Fingerprint(remote)];
    }
  }
  return null;
}

/** The connected RTCDtlsTransport; `undefined` when the browser exposes none. */
function connectedTransport(pc) {
  let exposed = false;
  for (const transceiver of pc.getTransceivers()) {
    const transport = transceiver.sender?.transport;
    if (transport) {
      exposed = true;
      if (transport.state === "connected") {
        return transport;
      }
    }
  }
  return exposed ? null : undefined;
}

/**
 * (local, remote) SHA-256 fingerprints of the DTLS certificates in use, from the first
 * source the browser offers:
 * 1. getStats(): the connected transport's localCertificateId / remoteCertificateId
 *    (Chromium);
 * 2. the certificate the other side presented, RTCDtlsTransport.getRemoteCertificates(),
 *    and ours from our negotiated description (Firefox: its stats carry no certificates);
 * 3. both negotiated descriptions (currentLocalDescription / currentRemoteDescription),
 *    under the rules of descriptionFingerprint().
 * Null until DTLS is connected; throws a VerificationError when the code cannot be had.
 */
export async function dtlsFingerprints(pc) {
  const fromStats = await statsFingerprints(pc);
  if (fromStats !== null) {
    return fromStats;
  }
  const transport = connectedTransport(pc);
  if (transport === null || (transport === undefined && pc.connectionState !== "connected")
      || !pc.currentLocalDescription || !pc.currentRemoteDescription) {
    return null;
  }
  const local = descriptionFingerprint(pc.currentLocalDescription.sdp, "ours");
  if (typeof transport?.getRemoteCertificates === "function") {
    const [der] = transport.getRemoteCertificates();
    return der ? [local, normaliseFingerprint(toHex(await sha256(der)))] : null;
  }
  return [local, descriptionFingerprint(pc.currentRemoteDescription.sdp, "theirs")];
}
