"""ICE servers for welcome (signalling.ice): configured STUN/TURN and TURN-REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from signalling.config import SignallingConfig
from signalling.ice import IceConfig, ice_servers, split_urls, turn_credential

EXPIRY = 1_795_432_200
STUN = ("stun:stun.care.example:3478",)
TURN = ("turn:turn.care.example:3478?transport=udp", "turns:turn.care.example:5349")


def expected_credential(secret: str, username: str) -> str:
    """TURN REST: base64(HMAC-SHA1(secret, username)), computed here without the module."""
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), "sha1").digest()
                            ).decode()


def test_nothing_configured_means_no_servers() -> None:
    """With no configuration there are no ICE servers at all: no public STUN by default."""
    assert IceConfig() == IceConfig(stun_urls=(), turn_urls=(), turn_secret=None)
    assert SignallingConfig().ice == IceConfig()
    assert ice_servers(IceConfig(), "room-1", "client", EXPIRY) == []


def test_stun_only() -> None:
    """STUN URLs alone give one entry with no username or credential."""
    assert ice_servers(IceConfig(stun_urls=STUN), "room-1", "client", EXPIRY) == [
        {"urls": list(STUN)}]


@pytest.mark.parametrize("config", [
    IceConfig(turn_urls=TURN),
    IceConfig(turn_urls=TURN, turn_secret=""),
    IceConfig(turn_secret="s3cret"),
], ids=["urls-without-secret", "empty-secret", "secret-without-urls"])
def test_turn_needs_both_urls_and_a_secret(config: IceConfig) -> None:
    """Half a TURN configuration yields no TURN entry (never one without credentials)."""
    assert ice_servers(config, "room-1", "client", EXPIRY) == []


@pytest.mark.parametrize(("room", "role"), [("room-1", "professional"), ("r-9f2", "client")],
                         ids=["professional", "client"])
def test_turn_rest_username_and_credential(room: str, role: str) -> None:
    """username is ``<expiry>:<room>:<role>``; credential is base64 HMAC-SHA1 of it."""
    config = IceConfig(stun_urls=STUN, turn_urls=TURN, turn_secret="s3cret")
    username = f"{EXPIRY}:{room}:{role}"
    assert ice_servers(config, room, role, EXPIRY) == [
        {"urls": list(STUN)},
        {"urls": list(TURN), "username": username,
         "credential": expected_credential("s3cret", username)},
    ]


def test_turn_credential_is_hmac_sha1_and_depends_on_secret_and_username() -> None:
    """The credential is a 20-byte SHA-1 MAC; another secret or username changes it."""
    credential = turn_credential("s3cret", f"{EXPIRY}:room-1:client")
    assert credential == expected_credential("s3cret", f"{EXPIRY}:room-1:client")
    assert len(base64.b64decode(credential)) == hashlib.sha1().digest_size
    assert credential != turn_credential("other", f"{EXPIRY}:room-1:client")
    assert credential != turn_credential("s3cret", f"{EXPIRY}:room-1:professional")


@pytest.mark.parametrize(("value", "urls"), [
    (None, ()),
    ("", ()),
    (" , ,", ()),
    ("stun:a:3478", ("stun:a:3478",)),
    (" stun:a:3478 , turn:b:3478?transport=tcp,, ", ("stun:a:3478", "turn:b:3478?transport=tcp")),
], ids=["unset", "empty", "only-separators", "one", "trimmed-and-empty-dropped"])
def test_split_urls(value: str | None, urls: tuple[str, ...]) -> None:
    """Comma-separated URLs from the environment, trimmed, blanks dropped."""
    assert split_urls(value) == urls
