"""Resume tokens (signalling.resume): round trip, and None for anything not valid here, now."""

from __future__ import annotations

import pytest

from signalling.resume import check, issue

SECRET = b"resume-secret-0123456789abcdef"
EXPIRY = 1_795_432_200
TOKEN = issue(SECRET, "room-1", "client", "sess-AbC_12", EXPIRY)


def test_issue_then_check_gives_the_session_back() -> None:
    """A token issued for room, role and session checks out to that session before expiry."""
    assert TOKEN.startswith(f"sess-AbC_12.{EXPIRY}.")
    assert check(SECRET, TOKEN, "room-1", "client", EXPIRY - 1) == "sess-AbC_12"


@pytest.mark.parametrize(("secret", "room", "role", "now"), [
    (SECRET, "room-2", "client", EXPIRY - 1),
    (SECRET, "room-1", "professional", EXPIRY - 1),
    (b"another-secret", "room-1", "client", EXPIRY - 1),
    (SECRET, "room-1", "client", EXPIRY),
    (SECRET, "room-1", "client", EXPIRY + 3600),
], ids=["wrong-room", "wrong-role", "wrong-secret", "expired-at-expiry", "expired-later"])
def test_token_not_valid_here_or_now_gives_none(secret: bytes, room: str, role: str,
                                                now: int) -> None:
    """Another room, role or secret, or a time at/after expiry, is refused."""
    assert check(secret, TOKEN, room, role, now) is None


SESSION, EXPIRY_TEXT, MAC = TOKEN.split(".")


@pytest.mark.parametrize("token", [
    "",
    "garbage",
    f"{SESSION}.{EXPIRY_TEXT}",
    f"{TOKEN}.extra",
    f"{SESSION}.soon.{MAC}",
    f"{SESSION}.-{EXPIRY_TEXT}.{MAC}",
    f"{SESSION}.{EXPIRY_TEXT}.",
    f"{SESSION}.{EXPIRY_TEXT}.{MAC[:-1]}{'B' if MAC.endswith('A') else 'A'}",
    f"{SESSION}.{int(EXPIRY_TEXT) + 86_400}.{MAC}",
    f"other-session.{EXPIRY_TEXT}.{MAC}",
    f"{SESSION}.\u00b2.{MAC}",
    f"{SESSION}.\u0661\u0662.{MAC}",
    f"{SESSION}.{EXPIRY_TEXT}.{MAC[:-1]}\u00e9",
], ids=["empty", "one-part", "two-parts", "four-parts", "expiry-not-digits",
        "negative-expiry", "empty-mac", "tampered-mac", "extended-expiry", "other-session",
        "superscript-digit", "arabic-indic-digits", "non-ascii-mac"])
def test_malformed_or_tampered_token_gives_none(token: str) -> None:
    """Anything but an untouched token is refused with None, never an exception."""
    assert check(SECRET, token, "room-1", "client", EXPIRY - 1) is None
