"""Join token verification with the gate's public key (CONTRACT.md section 2). Pure.

Only EdDSA is accepted; ``iss``, ``aud`` and the required claims are checked here, the
time window and the booking's state by the admission check.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signalling.errors import BadToken
from signalling.room import Role

ISSUER = "carecall-gate"
AUDIENCE = "carecall-signalling"
REQUIRED = ["exp", "iat", "room", "role", "sub", "bkg", "nbf", "iss", "aud"]


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    role: Role
    room: str
    booking_id: str
    iat: int
    nbf: int
    exp: int


def verify(token: str, key: Ed25519PublicKey) -> Claims:
    try:
        claims = jwt.decode(
            token, key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER,
            # Window checks belong to admission, which answers 4410 rather than 4401.
            options={"require": REQUIRED, "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False},
        )
    except jwt.PyJWTError as error:
        raise BadToken(f"the join token is not valid ({type(error).__name__})") from None
    try:
        return Claims(sub=str(claims["sub"]), role=Role(claims["role"]),
                      room=str(claims["room"]), booking_id=str(claims["bkg"]),
                      iat=int(claims["iat"]), nbf=int(claims["nbf"]), exp=int(claims["exp"]))
    except (ValueError, TypeError):
        raise BadToken("the join token has malformed claims") from None
