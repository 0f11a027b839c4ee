"""The /ws wire parser (signalling.messages): exact refusals, accepted shapes, relaying."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from signalling.errors import BadToken, CloseCode, ProtocolError
from signalling.messages import (
    MEDIA_CAUSES,
    Bye,
    Extension,
    Hello,
    Media,
    Signal,
    encode,
    error,
    media,
    parse,
    relayed,
    rfc3339,
)

CAUSE_MESSAGE = ("'cause' must be a snake_case name of at most 32 characters, one of "
                 "no_candidate_pair, no_relay_candidate, dtls_failed, permission_denied, "
                 "unknown")
OFFER = {"type": "offer", "sdp": "v=0\r\n"}
CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 5000 typ host",
             "sdpMid": "0", "sdpMLineIndex": 0}


def text(obj: Any) -> str:
    return json.dumps(obj)


@pytest.mark.parametrize(("frame", "message", "code"), [
    ("{", "the message is not valid JSON", "malformed_message"),
    ("", "the message is not valid JSON", "malformed_message"),
    (b'{"type": "bye"}', "frames must be text, not binary", "malformed_message"),
    ("[]", "the message must be a JSON object", "malformed_message"),
    ("42", "the message must be a JSON object", "malformed_message"),
    ("null", "the message must be a JSON object", "malformed_message"),
    ('"hello"', "the message must be a JSON object", "malformed_message"),
    ("{}", "'type' is missing", "malformed_message"),
    (text({"type": 3}), "'type' is missing", "malformed_message"),
    (text({"type": None}), "'type' is missing", "malformed_message"),
    (text({"type": "foo"}),
     "'type' must be one of hello, signal, media, bye or start with 'x-' (got 'foo')",
     "malformed_message"),
    (text({"type": "x-" + "a" * 63}),
     "'type' must be one of hello, signal, media, bye or start with 'x-' (got "
     "'x-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa)", "malformed_message"),
    (text({"type": "signal"}),
     "'signal' must carry exactly one of 'description' or 'candidate'", "malformed_message"),
    (text({"type": "signal", "description": OFFER, "candidate": CANDIDATE}),
     "'signal' must carry exactly one of 'description' or 'candidate'", "malformed_message"),
    (text({"type": "signal", "description": "v=0"}),
     "'description' must be an object", "malformed_message"),
    (text({"type": "signal", "description": {"type": "bogus", "sdp": "v=0"}}),
     "'description.type' must be one of offer, answer, rollback (got 'bogus')",
     "malformed_message"),
    (text({"type": "signal", "description": {"sdp": "v=0"}}),
     "'description.type' must be one of offer, answer, rollback (got None)",
     "malformed_message"),
    (text({"type": "signal", "description": {"type": "offer"}}),
     "'description.sdp' must be a string", "malformed_message"),
    (text({"type": "signal", "description": {"type": "answer", "sdp": 1}}),
     "'description.sdp' must be a string", "malformed_message"),
    (text({"type": "signal", "candidate": "candidate:1"}),
     "'candidate' must be an object or null", "malformed_message"),
    (text({"type": "signal", "candidate": {"sdpMid": "0"}}),
     "'candidate.candidate' must be a string", "malformed_message"),
    (text({"type": "media", "state": "up"}),
     "'state' must be one of connected, disconnected, failed (got 'up')",
     "malformed_message"),
    (text({"type": "media"}),
     "'state' must be one of connected, disconnected, failed (got None)",
     "malformed_message"),
    (text({"type": "media", "state": "connected", "video": "yes"}),
     "'video' must be true or false", "malformed_message"),
    (text({"type": "media", "state": "connected", "video": None}),
     "'video' must be true or false", "malformed_message"),
    (text({"type": "media", "state": "connected", "cause": "unknown"}),
     "'cause' is only allowed with state failed", "malformed_message"),
    (text({"type": "media", "state": "failed", "cause": 3}), CAUSE_MESSAGE,
     "malformed_message"),
    (text({"type": "media", "state": "failed", "cause": ""}), CAUSE_MESSAGE,
     "malformed_message"),
    (text({"type": "media", "state": "failed", "cause": "x" * 33}), CAUSE_MESSAGE,
     "malformed_message"),
    (text({"type": "media", "state": "failed", "cause": "No Relay"}), CAUSE_MESSAGE,
     "malformed_message"),
    (text({"type": "media", "state": "failed", "cause": "caf\u00e9"}), CAUSE_MESSAGE,
     "malformed_message"),
    (text({"type": "hello", "token": "t", "agent": "firefox"}),
     "'agent' must be one of browser, aiortc (got 'firefox')", "malformed_message"),
    (text({"type": "hello", "token": "t", "can_rollback": "yes"}),
     "'can_rollback' must be true or false", "malformed_message"),
    (text({"type": "hello", "token": "t", "resume": 5}), "'resume' must be a string",
     "malformed_message"),
    (text({"type": "hello", "token": "t", "resume": "r" * 513}), "'resume' must be a string",
     "malformed_message"),
], ids=[
    "truncated-json", "empty", "binary", "array", "number", "null", "string", "no-type",
    "type-not-string", "type-null", "unknown-type", "x-type-too-long", "signal-neither",
    "signal-both", "description-not-object", "description-bad-type", "description-no-type",
    "description-no-sdp", "description-sdp-not-string", "candidate-not-object",
    "candidate-without-candidate", "media-bad-state", "media-no-state",
    "media-video-not-bool", "media-video-null", "media-cause-without-failed",
    "media-cause-not-string", "media-cause-empty", "media-cause-too-long",
    "media-cause-not-snake-case", "media-cause-not-ascii", "hello-bad-agent",
    "hello-bad-can-rollback", "hello-resume-not-string", "hello-resume-too-long",
])
def test_malformed_frames_are_refused_with_an_exact_message(frame: str | bytes, message: str,
                                                            code: str) -> None:
    """Each malformed frame raises ProtocolError (4400) with its exact message and code."""
    with pytest.raises(ProtocolError) as caught:
        parse(frame)
    assert caught.value.message == message
    assert str(caught.value) == message
    assert caught.value.code == code
    assert caught.value.close_code is CloseCode.MALFORMED


@pytest.mark.parametrize(("frame", "message", "code"), [
    (text({"type": "hello"}), "'token' must be a non-empty string", "token_missing"),
    (text({"type": "hello", "token": ""}), "'token' must be a non-empty string",
     "token_missing"),
    (text({"type": "hello", "token": 7}), "'token' must be a non-empty string",
     "token_missing"),
    (text({"type": "hello", "token": None}), "'token' must be a non-empty string",
     "token_missing"),
    (text({"type": "hello", "token": "t" * 4097}), "'token' must be at most 4096 characters",
     "invalid_token"),
    (text({"type": "hello", "agent": "firefox"}), "'token' must be a non-empty string",
     "token_missing"),
], ids=["no-token", "empty-token", "token-not-string", "token-null", "token-too-long",
        "no-token-and-bad-agent"])
def test_hello_without_a_usable_token_is_4401(frame: str, message: str, code: str) -> None:
    """A missing or malformed token in hello is BadToken (4401), not a malformed message."""
    with pytest.raises(BadToken) as caught:
        parse(frame)
    assert (caught.value.message, caught.value.code, caught.value.close_code) == (
        message, code, CloseCode.UNAUTHORIZED)


def test_a_token_of_4096_characters_is_accepted() -> None:
    """The token limit is inclusive: 4,096 characters parse."""
    parsed = parse(text({"type": "hello", "token": "t" * 4096}))
    assert isinstance(parsed, Hello) and parsed.token == "t" * 4096


def test_media_builder_round_trips_through_the_parser() -> None:
    """messages.media builds what parse reads back; every cause in the set survives."""
    for cause in MEDIA_CAUSES:
        assert parse(encode(media("failed", video=False, cause=cause))) == Media(
            "failed", False, cause)
    assert media("connected") == {"type": "media", "state": "connected", "video": True}
    assert parse(encode(media("connected"))).connected is True  # type: ignore[union-attr]


@pytest.mark.parametrize(("obj", "expected"), [
    ({"type": "hello", "token": "t"}, Hello("t", "browser", True, None)),
    ({"type": "hello", "token": "t", "agent": "aiortc"}, Hello("t", "aiortc", False, None)),
    ({"type": "hello", "token": "t", "agent": "aiortc", "can_rollback": True, "resume": "r"},
     Hello("t", "aiortc", True, "r")),
    ({"type": "hello", "token": "t", "agent": "browser", "can_rollback": False},
     Hello("t", "browser", False, None)),
    ({"type": "media", "state": "connected"}, Media("connected", True, None)),
    ({"type": "media", "state": "disconnected"}, Media("disconnected", True, None)),
    ({"type": "media", "state": "connected", "video": False}, Media("connected", False)),
    ({"type": "media", "state": "failed"}, Media("failed", True, None)),
    ({"type": "media", "state": "failed", "video": False, "cause": "no_relay_candidate"},
     Media("failed", False, "no_relay_candidate")),
    ({"type": "media", "state": "failed", "cause": "ice_gremlins_v2"},
     Media("failed", True, "unknown")),
    ({"type": "bye"}, Bye()),
], ids=["hello-default-browser", "hello-aiortc-cannot-roll-back", "hello-full",
        "hello-browser-without-rollback", "media-connected", "media-disconnected",
        "media-audio-only", "media-failed-without-cause", "media-failed-with-cause",
        "media-unknown-cause-is-unknown", "bye"])
def test_well_formed_client_messages_parse(obj: dict[str, Any], expected: object) -> None:
    """hello defaults can_rollback from the agent; media and bye parse to their types."""
    assert parse(text(obj)) == expected


@pytest.mark.parametrize("signal", [
    {"type": "signal", "description": OFFER},
    {"type": "signal", "description": {"type": "answer", "sdp": "v=0\r\n"}},
    {"type": "signal", "description": {"type": "rollback"}},
    {"type": "signal", "candidate": CANDIDATE},
    {"type": "signal", "candidate": {"candidate": "", "sdpMid": "0"}},
    {"type": "signal", "candidate": None},
], ids=["offer", "answer", "rollback-without-sdp", "candidate", "empty-candidate",
        "null-candidate-end-of-candidates"])
def test_signals_are_kept_raw(signal: dict[str, Any]) -> None:
    """Valid descriptions and candidates (null: end of candidates) keep the raw object."""
    parsed = parse(text(signal))
    assert parsed == Signal(signal)


def test_extension_messages_are_returned_unchanged() -> None:
    """An x- message comes back as Extension holding exactly what was sent, unknown keys too."""
    obj = {"type": "x-verify", "code": "1234", "nested": {"a": [1, None, True]}}
    parsed = parse(text(obj))
    assert isinstance(parsed, Extension)
    assert parsed.raw == obj


def test_relayed_adds_from_and_keeps_everything_else() -> None:
    """relayed() is the sent object plus ``from``; the original dict is not modified."""
    raw = {"type": "signal", "description": OFFER, "extra": 1}
    out = relayed(raw, "client")
    assert out == {"type": "signal", "description": OFFER, "extra": 1, "from": "client"}
    assert "from" not in raw


def test_relayed_overrides_a_forged_from() -> None:
    """A sender cannot pretend to be the other party: ``from`` is always the server's word."""
    assert relayed({"type": "x-verify", "from": "professional"}, "client")["from"] == "client"


def test_error_and_encode_shapes() -> None:
    """error() has type, code and message; encode() is compact JSON."""
    assert error("peer_absent", "nobody") == {"type": "error", "code": "peer_absent",
                                             "message": "nobody"}
    assert encode({"type": "bye", "n": [1, 2]}) == '{"type":"bye","n":[1,2]}'


@pytest.mark.parametrize("when", [
    datetime(2026, 11, 23, 10, 0, 5, 999_999, tzinfo=UTC),
    datetime(2026, 11, 23, 11, 0, 5, tzinfo=timezone(timedelta(hours=1))),
], ids=["utc-drops-microseconds", "offset-converted"])
def test_rfc3339_is_utc_with_z(when: datetime) -> None:
    """Times on the wire are whole seconds in UTC with a Z."""
    assert rfc3339(when) == "2026-11-23T10:00:05Z"


def test_the_gate_knows_every_cause_the_wire_allows() -> None:
    """signalling's MEDIA_CAUSES and the gate's FAILURE_CAUSES are the same set, and the
    rules have a sentence for each (booking_gate imports nothing of signalling)."""
    from booking_gate.model import FAILURE_CAUSES
    from booking_gate.rules import FAILURE_SENTENCES

    assert MEDIA_CAUSES == FAILURE_CAUSES
    assert set(FAILURE_SENTENCES) == set(MEDIA_CAUSES)
