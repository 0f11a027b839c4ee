"""The verification code: a short code both parties read aloud to detect a relay in the middle.

Pure. The protocol (docs/security.md has the threat model):

1. Once its DTLS transport is connected, each party draws a 32-byte nonce ``N`` and sends
   ``{"type": "x-verify-commit", "commit": hex(SHA-256("carecall-commit-v1|" role "|" N))}``.
2. A party that has sent its commit and received the other's sends
   ``{"type": "x-verify-reveal", "nonce": hex(N)}``.
3. A reveal is checked against the earlier commit (with the *other* role, so a reflected
   commit fails). The code is then::

       digest = SHA-256("carecall-verify-v1|" FP_pro "|" FP_cli "|" hex(N_pro) "|" hex(N_cli))
       code   = int.from_bytes(digest[:8], "big") % 1_000_000, as 6 digits

   where ``FP_x`` is the SHA-256 fingerprint (upper-case hex, colon-separated, as in
   SDP) of party x's DTLS certificate *as used on the wire*: one's own certificate, and
   the certificate the other side presented in the handshake.

A relay that terminates DTLS on both sides presents its own certificates, so the two
parties hash different fingerprints; it must commit to the nonces it forwards before it
learns the honest ones, so it gets one guess at a 6-digit match: at most 1 in 10^6.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

COMMIT = "x-verify-commit"
REVEAL = "x-verify-reveal"
ROLES = ("professional", "client")


class VerificationError(Exception):
    pass


def commitment(role: str, nonce: bytes) -> str:
    return hashlib.sha256(b"carecall-commit-v1|" + role.encode() + b"|" + nonce).hexdigest()


def normalise_fingerprint(value: str) -> str:
    """Upper-case, colon-separated hex: the form SDP and WebRTC stats use."""
    hexits = value.replace(":", "").strip().upper()
    if len(hexits) != 64 or any(c not in "0123456789ABCDEF" for c in hexits):
        raise VerificationError("a SHA-256 fingerprint has 32 bytes")
    return ":".join(hexits[i:i + 2] for i in range(0, 64, 2))


def compute_code(fp_professional: str, fp_client: str, nonce_professional: bytes,
                 nonce_client: bytes) -> str:
    material = "|".join([
        "carecall-verify-v1", normalise_fingerprint(fp_professional),
        normalise_fingerprint(fp_client), nonce_professional.hex(), nonce_client.hex()])
    digest = hashlib.sha256(material.encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


@dataclass
class Verifier:
    """One run of the exchange for one peer connection (new connection, new run)."""

    role: str
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    their_commit: str | None = None
    their_nonce: bytes | None = None
    commit_sent: bool = False
    reveal_sent: bool = False

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise VerificationError(f"unknown role {self.role!r}")

    @property
    def other_role(self) -> str:
        return "client" if self.role == "professional" else "professional"

    def commit_message(self) -> dict[str, str]:
        self.commit_sent = True
        return {"type": COMMIT, "commit": commitment(self.role, self.nonce)}

    def reveal_message(self) -> dict[str, str] | None:
        """The reveal, once both commits are out; None until then (or if already sent)."""
        if not self.commit_sent or self.their_commit is None or self.reveal_sent:
            return None
        self.reveal_sent = True
        return {"type": REVEAL, "nonce": self.nonce.hex()}

    def on_commit(self, message: dict[str, object]) -> None:
        commit = message.get("commit")
        if not isinstance(commit, str) or len(commit) != 64:
            raise VerificationError("malformed commit")
        if self.their_commit is not None and self.their_commit != commit:
            raise VerificationError("the other party changed its commit")
        self.their_commit = commit

    def on_reveal(self, message: dict[str, object]) -> None:
        if self.their_commit is None or not self.reveal_sent:
            raise VerificationError("a reveal came before the commits were exchanged")
        raw = message.get("nonce")
        try:
            nonce = bytes.fromhex(raw) if isinstance(raw, str) else b""
        except ValueError:
            nonce = b""
        if len(nonce) != 32 or not hmac.compare_digest(
                commitment(self.other_role, nonce), self.their_commit):
            raise VerificationError("the reveal does not match the commit")
        self.their_nonce = nonce

    def code(self, local_fingerprint: str, remote_fingerprint: str) -> str | None:
        if self.their_nonce is None:
            return None
        if self.role == "professional":
            return compute_code(local_fingerprint, remote_fingerprint, self.nonce,
                                self.their_nonce)
        return compute_code(remote_fingerprint, local_fingerprint, self.their_nonce,
                            self.nonce)
