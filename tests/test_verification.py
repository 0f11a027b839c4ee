"""The verification code's pure protocol (peer/verification.py, docs/security.md)."""

from __future__ import annotations

import pytest

from peer.verification import (
    COMMIT,
    REVEAL,
    VerificationError,
    Verifier,
    commitment,
    compute_code,
    normalise_fingerprint,
)

FP_PRO = ":".join(["AA"] * 32)
FP_CLIENT = ":".join(["BB"] * 32)
FP_RELAY = ":".join(["CC"] * 32)


def test_known_vector() -> None:
    """A fixed vector pins the computation (the browser client must give the same)."""
    # Independently: SHA-256 over the documented material string, first 8 bytes mod 10^6.
    assert compute_code(FP_PRO, FP_CLIENT, bytes(range(32)), bytes(range(32, 64))) == "513170"


def run_exchange(pro: Verifier, client: Verifier) -> None:
    client.on_commit(pro.commit_message())
    pro.on_commit(client.commit_message())
    pro_reveal, client_reveal = pro.reveal_message(), client.reveal_message()
    assert pro_reveal is not None and client_reveal is not None
    client.on_reveal(pro_reveal)
    pro.on_reveal(client_reveal)


def test_honest_parties_compute_the_same_code() -> None:
    """Each side sees its own certificate locally and the other's remotely: codes match."""
    pro, client = Verifier("professional"), Verifier("client")
    run_exchange(pro, client)
    code = pro.code(FP_PRO, FP_CLIENT)
    assert code is not None and len(code) == 6 and code.isdigit()
    assert client.code(FP_CLIENT, FP_PRO) == code


def test_swapped_fingerprints_give_different_codes() -> None:
    """With a relay's certificate in the middle the two codes differ."""
    pro, client = Verifier("professional"), Verifier("client")
    run_exchange(pro, client)
    assert pro.code(FP_PRO, FP_RELAY) != client.code(FP_CLIENT, FP_RELAY)


def test_no_reveal_before_both_commits() -> None:
    """A party reveals its nonce only after sending its commit and receiving the other's."""
    pro = Verifier("professional")
    assert pro.reveal_message() is None
    pro.commit_message()
    assert pro.reveal_message() is None
    pro.on_commit(Verifier("client").commit_message())
    reveal = pro.reveal_message()
    assert reveal is not None and reveal["type"] == REVEAL
    assert pro.reveal_message() is None  # only once


def test_a_reflected_commit_is_refused() -> None:
    """A relay sending a party its own commit and reveal back fails the check."""
    pro = Verifier("professional")
    own_commit = pro.commit_message()
    assert own_commit["type"] == COMMIT
    pro.on_commit(own_commit)
    own_reveal = pro.reveal_message()
    assert own_reveal is not None
    with pytest.raises(VerificationError, match="does not match"):
        pro.on_reveal(own_reveal)


@pytest.mark.parametrize("message", [
    {"nonce": "00" * 32}, {"nonce": "zz"}, {"nonce": 5}, {},
], ids=["wrong-nonce", "not-hex", "not-string", "missing"])
def test_a_reveal_that_does_not_open_the_commit_is_refused(message: dict[str, object]) -> None:
    """Only the nonce behind the commit is accepted."""
    pro, client = Verifier("professional"), Verifier("client")
    pro.on_commit(client.commit_message())
    pro.commit_message()
    pro.reveal_message()
    with pytest.raises(VerificationError):
        pro.on_reveal(message)


def test_a_changed_commit_is_refused() -> None:
    """The other party cannot swap its commitment after sending one."""
    pro = Verifier("professional")
    pro.on_commit({"commit": commitment("client", b"1" * 32)})
    with pytest.raises(VerificationError, match="changed"):
        pro.on_commit({"commit": commitment("client", b"2" * 32)})


@pytest.mark.parametrize("value,expected", [
    ("aa" * 32, FP_PRO), (FP_PRO.lower(), FP_PRO), (FP_PRO, FP_PRO),
], ids=["bare-lower", "colon-lower", "canonical"])
def test_fingerprints_are_normalised(value: str, expected: str) -> None:
    """Case and colons do not change the code's input."""
    assert normalise_fingerprint(value) == expected


def test_a_short_fingerprint_is_refused() -> None:
    """Only SHA-256 fingerprints (32 bytes) are accepted."""
    with pytest.raises(VerificationError):
        normalise_fingerprint("AB:CD")
