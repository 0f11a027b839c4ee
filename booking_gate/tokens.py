"""Join tokens: EdDSA (Ed25519) JWTs issued by the gate (CONTRACT.md section 2).

The signing key is generated on first start and kept as a PEM file (mode 0600), or
read from ``CARECALL_SIGNING_KEY``. Only the public half leaves the gate, as a JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from booking_gate.errors import Unauthorized
from booking_gate.model import Booking, BookingStatus, Role

logger = logging.getLogger(__name__)

ISSUER = "carecall-gate"
AUDIENCE = "carecall-signalling"
ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "role", "room", "bkg", "iat", "nbf", "exp", "jti"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """Read the PEM private key at ``path``, creating it (0600) when absent."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: two processes starting at once must not both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(path)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    logger.info("generated a new signing key")
    return key


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = _b64url(raw)
    # RFC 7638 thumbprint as the key id.
    thumb = hashlib.sha256(f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'.encode()).digest()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "alg": ALGORITHM, "use": "sig",
            "kid": _b64url(thumb)}


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenClaims:
    sub: str
    role: Role
    room: str
    bkg: str
    iat: int
    nbf: int
    exp: int
    jti: str


class TokenIssuer:
    """Signs join tokens and verifies them for the gate's own in-call endpoints."""

    def __init__(self, key: Ed25519PrivateKey, join_early: timedelta, overrun: timedelta) -> None:
        self._key = key
        self._public = key.public_key()
        self.public_key = self._public
        self.jwk = public_jwk(self._public)
        self.join_early = join_early
        self.overrun = overrun

    def window(self, booking: Booking) -> tuple[datetime, datetime]:
        return booking.starts_at - self.join_early, booking.ends_at + self.overrun

    def is_current(self, claims: TokenClaims, booking: Booking) -> bool:
        """Whether ``claims`` still match ``booking``: confirmed, same window, and issued
        no earlier than its last change (a booking moved away and back keeps old links dead).
        """
        opens_at, closes_at = self.window(booking)
        return (booking.status is BookingStatus.CONFIRMED
                and claims.nbf == int(opens_at.timestamp())
                and claims.exp == int(closes_at.timestamp())
                and claims.iat >= int(booking.changed_at.timestamp()))

    def issue(self, booking: Booking, role: Role, now: datetime) -> IssuedToken:
        nbf, exp = self.window(booking)
        party = booking.professional_id if role is Role.PROFESSIONAL else booking.client_id
        claims: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": party, "role": role.value,
            "room": booking.room_id, "bkg": booking.booking_id,
            "iat": int(now.timestamp()), "nbf": int(nbf.timestamp()),
            "exp": int(exp.timestamp()), "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.jwk["kid"]})
        return IssuedToken(token, exp)

    def verify(self, token: str, now: datetime) -> TokenClaims:
        """Check signature, algorithm, issuer, audience and time; raise Unauthorized."""
        try:
            claims = jwt.decode(
                token, self._public, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                options={"require": REQUIRED_CLAIMS, "verify_iat": False, "verify_nbf": False,
                         "verify_exp": False},
            )
        except jwt.PyJWTError:
            raise Unauthorized("the join token is invalid") from None
        ts = now.timestamp()
        if not claims["nbf"] <= ts < claims["exp"]:
            raise Unauthorized("the join token is outside its validity window")
        try:
            return TokenClaims(
                sub=str(claims["sub"]), role=Role(claims["role"]), room=str(claims["room"]),
                bkg=str(claims["bkg"]), iat=int(claims["iat"]), nbf=int(claims["nbf"]),
                exp=int(claims["exp"]), jti=str(claims["jti"]),
            )
        except (ValueError, TypeError):
            raise Unauthorized("the join token has malformed claims") from None


def join_url(public_url: str, room_id: str, token: str) -> str:
    # The token rides in the fragment so it never reaches a server access log.
    return f"{public_url.rstrip('/')}/s/{room_id}#t={token}"


def new_room_id() -> str:
    return secrets.token_urlsafe(24)  # 192 bits
