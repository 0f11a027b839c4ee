"""Join tokens: EdDSA (Ed25519) JWTs issued by the gate (docs/contract.md section 2).

The signing key is generated on first start and kept as a PEM file (mode 0600), or
read from ``CARECALL_SIGNING_KEY``. Only the public half leaves the gate, as a JWKS.
During a key rotation the gate also publishes and accepts retired keys
(``CARECALL_RETIRED_SIGNING_KEYS``): tokens they signed keep working, new ones are
signed with the current key. Every token names its key in the header's ``kid`` (the
key's RFC 7638 thumbprint); a token naming no published key is invalid.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
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
# How far a token's ``iat`` may lie ahead of the server's clock (seconds).
MAX_CLOCK_SKEW = 60


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


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys in the PEM files ``paths``: each a private key (a retired
    ``signing_key.pem``, of which only the public half is kept) or a public key."""
    keys = []
    for path in paths:
        try:
            pem = path.read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read the retired signing key {path}: "
                             f"{error.strerror or error}") from None
        key: object
        try:
            key = (serialization.load_pem_private_key(pem, password=None)
                   if b"PRIVATE KEY" in pem else serialization.load_pem_public_key(pem))
        except (ValueError, TypeError):
            raise ValueError(f"{path} does not hold an unencrypted PEM key") from None
        if isinstance(key, Ed25519PrivateKey):
            key = key.public_key()
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} does not hold an Ed25519 key")
        keys.append(key)
    return keys


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
    """Signs join tokens and verifies them for the gate's own in-call endpoints.

    ``key`` signs; ``retired`` are public keys of earlier signing keys whose tokens are
    still accepted (a rotation). All of them are published in ``jwks``, ``key`` first.
    """

    def __init__(self, key: Ed25519PrivateKey, join_early: timedelta, overrun: timedelta,
                 retired: Sequence[Ed25519PublicKey] = ()) -> None:
        self._key = key
        self.jwk = public_jwk(key.public_key())
        self.kid = self.jwk["kid"]
        self._keys: dict[str, Ed25519PublicKey] = {self.kid: key.public_key()}
        jwks = [self.jwk]
        for public in retired:
            jwk = public_jwk(public)
            if jwk["kid"] not in self._keys:
                self._keys[jwk["kid"]] = public
                jwks.append(jwk)
        self.jwks: dict[str, list[dict[str, str]]] = {"keys": jwks}
        self.join_early = join_early
        self.overrun = overrun

    def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        """The published public key that ``kid`` names, or None."""
        return self._keys.get(kid)

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
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return IssuedToken(token, exp)

    def verify(self, token: str, now: datetime, *, check_window: bool = True) -> TokenClaims:
        """Check key id, signature, algorithm, issuer, audience and time; raise Unauthorized.

        ``check_window`` False skips only ``nbf``/``exp``: the lobby (``lobby.py``) answers
        a genuine token before or after its window with the session's state, not 401.
        Every other check, ``iat`` not in the future among them, still applies.
        """
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise Unauthorized("the join token is invalid") from None
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthorized("the join token is signed with an unknown key")
        try:
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                options={"require": REQUIRED_CLAIMS, "verify_iat": False, "verify_nbf": False,
                         "verify_exp": False},
            )
        except jwt.PyJWTError:
            raise Unauthorized("the join token is invalid") from None
        times = [claims[name] for name in ("iat", "nbf", "exp")]
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in times):
            raise Unauthorized("the join token has malformed claims")
        try:
            parsed = TokenClaims(
                sub=str(claims["sub"]), role=Role(claims["role"]), room=str(claims["room"]),
                bkg=str(claims["bkg"]), iat=times[0], nbf=times[1], exp=times[2],
                jti=str(claims["jti"]),
            )
        except (ValueError, TypeError):
            raise Unauthorized("the join token has malformed claims") from None
        ts = now.timestamp()
        if parsed.iat > ts + MAX_CLOCK_SKEW:
            raise Unauthorized("the join token was issued in the future")
        if check_window and not parsed.nbf <= ts < parsed.exp:
            raise Unauthorized("the join token is outside its validity window")
        return parsed


def join_url(public_url: str, room_id: str, token: str) -> str:
    # The token rides in the fragment so it never reaches a server access log.
    return f"{public_url.rstrip('/')}/s/{room_id}#t={token}"


def new_room_id() -> str:
    return secrets.token_urlsafe(24)  # 192 bits
