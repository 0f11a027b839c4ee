"""The gate's join tokens (booking_gate.tokens): kid, retired keys, the JWKS, key files."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from booking_gate.config import retired_keys_from_env
from booking_gate.errors import Unauthorized
from booking_gate.model import (
    Booking,
    BookingId,
    BookingStatus,
    ClientId,
    Funding,
    HubId,
    ProfessionalId,
    Role,
    RoomId,
    Source,
)
from booking_gate.tokens import TokenIssuer, load_public_keys, public_jwk

NOW = datetime(2026, 11, 23, 9, 55, tzinfo=UTC)
STARTS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


def booking() -> Booking:
    return Booking(
        booking_id=BookingId("b-1"), professional_id=ProfessionalId("pro-1"),
        client_id=ClientId("cli-1"), hub_id=HubId("acme"), starts_at=STARTS,
        ends_at=STARTS + timedelta(minutes=50), funding=Funding.SPONSORED, source=Source.HUB,
        status=BookingStatus.CONFIRMED, room_id=RoomId("room-1"),
        created_at=NOW - timedelta(days=1), changed_at=NOW - timedelta(days=1))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def test_issued_tokens_name_the_signing_key_and_verify() -> None:
    """issue() puts the signing key's kid in the header; verify() accepts the token."""
    key = Ed25519PrivateKey.generate()
    issuer = TokenIssuer(key, WINDOW, WINDOW)
    token = issuer.issue(booking(), Role.CLIENT, NOW).token
    assert jwt.get_unverified_header(token)["kid"] == public_jwk(key.public_key())["kid"]
    assert issuer.verify(token, NOW).sub == "cli-1"


def test_a_retired_key_is_published_after_the_signing_key_and_accepted() -> None:
    """Tokens of the retired key verify; the JWKS lists the signing key first, each once."""
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    old_token = TokenIssuer(old, WINDOW, WINDOW).issue(booking(), Role.CLIENT, NOW).token
    issuer = TokenIssuer(new, WINDOW, WINDOW, [old.public_key(), old.public_key(),
                                               new.public_key()])
    assert issuer.jwks == {"keys": [public_jwk(new.public_key()), public_jwk(old.public_key())]}
    assert issuer.verify(old_token, NOW).sub == "cli-1"
    new_token = issuer.issue(booking(), Role.CLIENT, NOW).token
    assert jwt.get_unverified_header(new_token)["kid"] == issuer.kid == issuer.jwk["kid"]
    assert issuer.verification_key(public_jwk(old.public_key())["kid"]) is not None
    assert issuer.verification_key("nope") is None


def test_without_the_retired_key_its_tokens_are_refused() -> None:
    """After the rotation ends (retired key dropped) the old tokens are Unauthorized."""
    old = Ed25519PrivateKey.generate()
    old_token = TokenIssuer(old, WINDOW, WINDOW).issue(booking(), Role.CLIENT, NOW).token
    with pytest.raises(Unauthorized) as caught:
        TokenIssuer(Ed25519PrivateKey.generate(), WINDOW, WINDOW).verify(old_token, NOW)
    assert caught.value.message == "the join token is signed with an unknown key"


@pytest.mark.parametrize(("kid", "message"), [
    (None, "the join token is signed with an unknown key"),
    ("unknown", "the join token is signed with an unknown key"),
    (7, "the join token is invalid"),
], ids=["no-kid", "unknown", "number"])
def test_verify_honours_kid(kid: object, message: str) -> None:
    """The gate's own key, under no kid, an unknown one or a non-string one: Unauthorized."""
    key = Ed25519PrivateKey.generate()
    issuer = TokenIssuer(key, WINDOW, WINDOW)
    claims = jwt.decode(issuer.issue(booking(), Role.CLIENT, NOW).token,
                        options={"verify_signature": False})
    if kid == 7:  # PyJWT will not write a non-string kid: built by hand
        signing_input = (f"{b64url(json.dumps({'alg': 'EdDSA', 'kid': 7}).encode())}."
                         f"{b64url(json.dumps(claims).encode())}")
        token = f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"
    else:
        token = jwt.encode(claims, key, algorithm="EdDSA",
                           headers={"kid": kid} if kid is not None else None)
    with pytest.raises(Unauthorized) as caught:
        issuer.verify(token, NOW)
    assert caught.value.message == message


def test_a_retired_kid_over_the_current_keys_signature_is_refused() -> None:
    """The key is the one kid names: a signature by another published key does not do."""
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuer = TokenIssuer(new, WINDOW, WINDOW, [old.public_key()])
    claims = jwt.decode(issuer.issue(booking(), Role.CLIENT, NOW).token,
                        options={"verify_signature": False})
    mixed = jwt.encode(claims, new, algorithm="EdDSA",
                       headers={"kid": public_jwk(old.public_key())["kid"]})
    with pytest.raises(Unauthorized) as caught:
        issuer.verify(mixed, NOW)
    assert caught.value.message == "the join token is invalid"


def test_load_public_keys_reads_private_and_public_pem(tmp_path: Path) -> None:
    """A retired signing_key.pem and a bare public key PEM both give the public key."""
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (tmp_path / "old.pem").write_bytes(private_pem(first))
    (tmp_path / "old.pub").write_bytes(public_pem(second))
    keys = load_public_keys([tmp_path / "old.pem", tmp_path / "old.pub"])
    assert [public_jwk(k) for k in keys] == [public_jwk(first.public_key()),
                                             public_jwk(second.public_key())]


def test_load_public_keys_refuses_what_is_not_an_ed25519_pem(tmp_path: Path) -> None:
    """A missing file, garbage and an EC key are refused, naming the file."""
    ec = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (tmp_path / "ec.pem").write_bytes(ec)
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN PUBLIC KEY-----\nnope\n")
    cases = {
        tmp_path / "absent.pem": f"cannot read the retired signing key {tmp_path / 'absent.pem'}"
                                 ": No such file or directory",
        tmp_path / "junk.pem": f"{tmp_path / 'junk.pem'} does not hold an unencrypted PEM key",
        tmp_path / "ec.pem": f"{tmp_path / 'ec.pem'} does not hold an Ed25519 key",
    }
    for path, message in cases.items():
        with pytest.raises(ValueError) as caught:
            load_public_keys([path])
        assert str(caught.value) == message


def test_retired_keys_from_env(tmp_path: Path) -> None:
    """CARECALL_RETIRED_SIGNING_KEYS: comma-separated files, checked at start; unset: none."""
    for name in ("a.pem", "b.pem"):
        (tmp_path / name).write_bytes(private_pem(Ed25519PrivateKey.generate()))
    assert retired_keys_from_env({}) == ()
    assert retired_keys_from_env({"CARECALL_RETIRED_SIGNING_KEYS": ""}) == ()
    listed = f"{tmp_path / 'a.pem'}, {tmp_path / 'b.pem'},"
    assert retired_keys_from_env({"CARECALL_RETIRED_SIGNING_KEYS": listed}) == (
        tmp_path / "a.pem", tmp_path / "b.pem")
    with pytest.raises(ValueError) as caught:
        retired_keys_from_env({"CARECALL_RETIRED_SIGNING_KEYS": str(tmp_path / "c.pem")})
    assert str(caught.value).startswith("CARECALL_RETIRED_SIGNING_KEYS: cannot read")


def test_a_token_issued_more_than_a_minute_ahead_of_the_clock_is_refused() -> None:
    """``iat`` 30 days ahead (a gate with a broken clock, or a key used elsewhere): 401;
    within the minute of skew the token still verifies."""
    issuer = TokenIssuer(Ed25519PrivateKey.generate(), WINDOW, WINDOW)
    ahead = issuer.issue(booking(), Role.CLIENT, NOW + timedelta(days=30)).token
    with pytest.raises(Unauthorized, match="issued in the future"):
        issuer.verify(ahead, NOW)
    slightly = issuer.issue(booking(), Role.CLIENT, NOW + timedelta(seconds=50)).token
    assert issuer.verify(slightly, NOW).sub == "cli-1"


def test_check_window_false_skips_only_nbf_and_exp() -> None:
    """Before nbf and after exp a genuine token is 401 by default and verifies with
    check_window=False; a forged signature or a future iat is refused either way."""
    issuer = TokenIssuer(Ed25519PrivateKey.generate(), WINDOW, WINDOW)
    token = issuer.issue(booking(), Role.CLIENT, NOW - timedelta(days=2)).token
    for now in (STARTS - timedelta(days=1), STARTS + timedelta(days=1)):
        with pytest.raises(Unauthorized, match="outside its validity window"):
            issuer.verify(token, now)
        assert issuer.verify(token, now, check_window=False).sub == "cli-1"
    forged = TokenIssuer(Ed25519PrivateKey.generate(), WINDOW, WINDOW).issue(
        booking(), Role.CLIENT, NOW).token
    with pytest.raises(Unauthorized):
        issuer.verify(forged, NOW, check_window=False)
    ahead = issuer.issue(booking(), Role.CLIENT, NOW + timedelta(days=30)).token
    with pytest.raises(Unauthorized, match="issued in the future"):
        issuer.verify(ahead, NOW, check_window=False)
