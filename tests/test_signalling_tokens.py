"""Join token verification in signalling (signalling.tokens): EdDSA only, iss, aud, claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signalling.errors import BadToken, CloseCode
from signalling.room import Role
from signalling.tokens import AUDIENCE, ISSUER, Claims, key_id, verify

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()
OTHER_KEY = Ed25519PrivateKey.generate()
IAT, NBF, EXP = 1_795_420_000, 1_795_429_500, 1_795_434_600
CLAIMS: dict[str, Any] = {
    "iss": ISSUER, "aud": AUDIENCE, "sub": "cli-1", "role": "client", "room": "room-1",
    "bkg": "b-1", "iat": IAT, "nbf": NBF, "exp": EXP, "jti": "j-1",
}


def sign(claims: dict[str, Any], key: Ed25519PrivateKey = KEY) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(secret: bytes) -> str:
    """The algorithm-confusion forgery: HS256 keyed with the (public) verification key.

    Built by hand because PyJWT itself refuses to use a PEM key as an HMAC secret.
    """
    signing_input = (f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
                     f"{b64url(json.dumps(CLAIMS).encode())}")
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in CLAIMS.items() if k not in names}


def test_valid_token_gives_its_claims() -> None:
    """A token signed with the gate's key, right iss and aud, gives typed Claims."""
    assert verify(sign(CLAIMS), PUBLIC) == Claims(
        sub="cli-1", role=Role.CLIENT, room="room-1", booking_id="b-1", iat=IAT, nbf=NBF,
        exp=EXP)


def test_time_window_is_not_checked_here() -> None:
    """Long-expired and not-yet-valid tokens verify: the window is admission's (4410) job."""
    claims = {**CLAIMS, "iat": 1_000, "nbf": 4_000_000_000, "exp": 2_000}
    assert verify(sign(claims), PUBLIC).exp == 2_000


PEM = PUBLIC.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
RAW = PUBLIC.public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize(("token", "message"), [
    (hs256_with_public_key(PEM), "the join token is not valid (InvalidAlgorithmError)"),
    (hs256_with_public_key(RAW), "the join token is not valid (InvalidAlgorithmError)"),
    (jwt.encode(CLAIMS, None, algorithm="none"),
     "the join token is not valid (InvalidAlgorithmError)"),
    (sign(CLAIMS, OTHER_KEY), "the join token is not valid (InvalidSignatureError)"),
    (sign({**CLAIMS, "iss": "someone-else"}), "the join token is not valid (InvalidIssuerError)"),
    (sign({**CLAIMS, "aud": ISSUER}), "the join token is not valid (InvalidAudienceError)"),
    (sign(without("exp")), "the join token is not valid (MissingRequiredClaimError)"),
    (sign(without("iat")), "the join token is not valid (MissingRequiredClaimError)"),
    (sign(without("nbf")), "the join token is not valid (MissingRequiredClaimError)"),
    (sign(without("room")), "the join token is not valid (MissingRequiredClaimError)"),
    (sign(without("role")), "the join token is not valid (MissingRequiredClaimError)"),
    (sign(without("sub")), "the join token is not valid (MissingRequiredClaimError)"),
    (sign(without("bkg")), "the join token is not valid (MissingRequiredClaimError)"),
    (sign(without("iss")), "the join token is not valid (MissingRequiredClaimError)"),
    (sign(without("aud")), "the join token is not valid (MissingRequiredClaimError)"),
    ("not-a-jwt", "the join token is not valid (DecodeError)"),
    (sign({**CLAIMS, "role": "admin"}), "the join token has malformed claims"),
    (sign({**CLAIMS, "role": "Client"}), "the join token has malformed claims"),
    (sign({**CLAIMS, "iat": "yesterday"}), "the join token has malformed claims"),
    # Found by bench/fuzz.py: int(Infinity) overflowed instead of refusing.
    (sign({**CLAIMS, "exp": float("inf")}), "the join token has malformed claims"),
    (sign({**CLAIMS, "nbf": 1.5}), "the join token has malformed claims"),
], ids=[
    "hs256-keyed-with-public-pem", "hs256-keyed-with-raw-public-key", "alg-none",
    "other-signing-key", "wrong-iss", "wrong-aud", "missing-exp", "missing-iat",
    "missing-nbf", "missing-room", "missing-role", "missing-sub", "missing-bkg", "missing-iss",
    "missing-aud", "garbage", "role-not-a-party", "role-wrong-case", "iat-not-a-number",
    "exp-infinite", "nbf-not-whole",
])
def test_bad_tokens_are_refused(token: str, message: str) -> None:
    """Forged, mis-addressed or incomplete tokens raise BadToken (4401, invalid_token)."""
    with pytest.raises(BadToken) as caught:
        verify(token, PUBLIC)
    assert caught.value.message == message
    assert caught.value.code == "invalid_token"
    assert caught.value.close_code is CloseCode.UNAUTHORIZED


def with_header(header: dict[str, Any]) -> str:
    """A token with this header, built by hand (PyJWT will not write a non-string kid)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(CLAIMS).encode())}"
    return f"{signing_input}.{b64url(KEY.sign(signing_input.encode()))}"


def test_key_id_reads_the_kid_without_trusting_the_token() -> None:
    """key_id returns the header's kid, for a token of any key (it only picks the key)."""
    token = jwt.encode(CLAIMS, OTHER_KEY, algorithm="EdDSA", headers={"kid": "k-2026"})
    assert key_id(token) == "k-2026"


@pytest.mark.parametrize(("token", "message"), [
    (sign(CLAIMS), "the join token names no signing key ('kid')"),
    (jwt.encode(CLAIMS, KEY, algorithm="EdDSA", headers={"kid": ""}),
     "the join token names no signing key ('kid')"),
    (with_header({"alg": "EdDSA", "kid": 7}), "the join token is not valid (InvalidTokenError)"),
    ("not-a-jwt", "the join token is not valid (DecodeError)"),
    ("", "the join token is not valid (DecodeError)"),
], ids=["no-kid", "empty-kid", "kid-not-a-string", "garbage", "empty"])
def test_key_id_refuses_tokens_that_name_no_key(token: str, message: str) -> None:
    """No kid, an empty or non-string one, or no JWT at all: BadToken (4401)."""
    with pytest.raises(BadToken) as caught:
        key_id(token)
    assert (caught.value.message, caught.value.code, caught.value.close_code) == (
        message, "invalid_token", CloseCode.UNAUTHORIZED)
