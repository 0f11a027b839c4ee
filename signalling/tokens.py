"""Join token verification with the gate's public keys (docs/contract.md section 2). Pure.

The header's ``kid`` names the key (``key_id``): the caller looks it up among the keys
the gate publishes (two during a rotation) and verifies with that one; a token without
a ``kid``, or naming no published key, is invalid. Only EdDSA is accepted; ``iss``,
``aud`` and the required claims are checked here, the time window and the booking's
state by the admission check.
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


def key_id(token: str) -> str:
    """The ``kid`` in the token's header (not yet trusted: it only picks the key)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise BadToken(f"the join token is not valid ({type(error).__name__})") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise BadToken("the join token names no signing key ('kid')")
    return kid


def verify(token: str, key: Ed25519PublicKey) -> Claims:
    """The claims of ``token`` if ``key`` signed it with EdDSA for signalling."""
    try:
        claims = jwt.decode(
            token, key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER,
            # Window checks belong to admission, which answers 4410 rather than 4401.
            options={"require": REQUIRED, "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False},
        )
    except jwt.PyJWTError as error:
        raise BadToken(f"the join token is not valid ({type(error).__name__})") from None
    times = [claims[name] for name in ("iat", "nbf", "exp")]
    # Whole seconds only: not "5", not 1.5, not true, not Infinity (int() would overflow).
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in times):
        raise BadToken("the join token has malformed claims")
    try:
        return Claims(sub=str(claims["sub"]), role=Role(claims["role"]),
                      room=str(claims["room"]), booking_id=str(claims["bkg"]),
                      iat=times[0], nbf=times[1], exp=times[2])
    except (ValueError, TypeError):
        raise BadToken("the join token has malformed claims") from None
