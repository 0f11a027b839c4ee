"""The ``/ws`` wire protocol (docs/contract.md section 4): parsing and building messages.

Pure: text in, typed messages out, or ``ProtocolError`` with an exact message. Peers
(``peer/``) import the same definitions, and the browser mirrors the names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boundedjson
from signalling.errors import BadToken, ProtocolError

MAX_MESSAGE_BYTES = 64 * 1024  # "at most 64 KiB": a frame of exactly this size is allowed
TOO_BIG = f"a message may be at most {MAX_MESSAGE_BYTES} bytes (64 KiB)"
MAX_TOKEN_CHARS = 4096
CLIENT_TYPES = ("hello", "signal", "media", "bye")
MEDIA_STATES = ("connected", "disconnected", "failed")
# Why a peer's media path could not be set up (``media`` with ``state: failed``):
#   no_candidate_pair   ICE gathered candidates but every connectivity check failed
#                       (RFC 8445 7.2.5.3: the checklist failed)
#   no_relay_candidate  relay-only ICE (Hide my IP, --relay-only) and no relay
#                       candidate was gathered: no TURN server, or none usable
#   dtls_failed         ICE connected but the DTLS handshake failed (RFC 5763)
#   permission_denied   the camera/microphone was refused; a note: the path may
#                       still connect without them
#   unknown             the peer does not know why
# A well-formed name outside this set (a newer peer's) is read as ``unknown``.
MEDIA_CAUSES = ("no_candidate_pair", "no_relay_candidate", "dtls_failed",
                "permission_denied", "unknown")
MAX_CAUSE_CHARS = 32
AGENTS = ("browser", "aiortc")
DESCRIPTION_TYPES = ("offer", "answer", "rollback")


@dataclass(frozen=True, slots=True)
class Hello:
    token: str
    agent: str
    can_rollback: bool
    resume: str | None


@dataclass(frozen=True, slots=True)
class Signal:
    """A description or candidate, relayed unchanged (the raw object is kept)."""

    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Media:
    """A peer's media path state. ``video``: whether this peer sends video (a camera or
    test-pattern track that is on); ``cause``: why it failed, only with ``failed``."""

    state: str  # one of MEDIA_STATES
    video: bool = True
    cause: str | None = None

    @property
    def connected(self) -> bool:
        return self.state == "connected"


@dataclass(frozen=True, slots=True)
class Bye:
    pass


@dataclass(frozen=True, slots=True)
class Extension:
    """An ``x-*`` message, relayed unchanged."""

    raw: dict[str, Any]


ClientMessage = Hello | Signal | Media | Bye | Extension


def _check_signal(obj: dict[str, Any]) -> None:
    has_description, has_candidate = "description" in obj, "candidate" in obj
    if has_description == has_candidate:
        raise ProtocolError("'signal' must carry exactly one of 'description' or 'candidate'")
    if has_description:
        description = obj["description"]
        if not isinstance(description, dict):
            raise ProtocolError("'description' must be an object")
        if description.get("type") not in DESCRIPTION_TYPES:
            raise ProtocolError(
                f"'description.type' must be one of {', '.join(DESCRIPTION_TYPES)} "
                f"(got {description.get('type')!r:.40})")
        if description["type"] != "rollback" and not isinstance(description.get("sdp"), str):
            raise ProtocolError("'description.sdp' must be a string")
    else:
        candidate = obj["candidate"]
        # A null candidate or an empty one marks the end of candidates (JSEP 4.1.20).
        if candidate is not None and not isinstance(candidate, dict):
            raise ProtocolError("'candidate' must be an object or null")
        if isinstance(candidate, dict) and not isinstance(candidate.get("candidate"), str):
            raise ProtocolError("'candidate.candidate' must be a string")


def _media_details(obj: dict[str, Any], state: str) -> tuple[bool, str | None]:
    video, cause = obj.get("video", True), obj.get("cause")
    if not isinstance(video, bool):
        raise ProtocolError("'video' must be true or false")
    if cause is None:
        return video, None
    if state != "failed":
        raise ProtocolError("'cause' is only allowed with state failed")
    if (not isinstance(cause, str) or not 1 <= len(cause) <= MAX_CAUSE_CHARS
            or not cause.replace("_", "").isalnum() or not cause.isascii()
            or cause != cause.lower()):
        raise ProtocolError(f"'cause' must be a snake_case name of at most "
                            f"{MAX_CAUSE_CHARS} characters, one of {', '.join(MEDIA_CAUSES)}")
    return video, cause if cause in MEDIA_CAUSES else "unknown"


def media(state: str, *, video: bool = True, cause: str | None = None) -> dict[str, Any]:
    """The ``media`` message a peer sends (``cause`` only with ``failed``)."""
    message: dict[str, Any] = {"type": "media", "state": state, "video": video}
    if cause is not None:
        message["cause"] = cause
    return message


def parse(text: str | bytes) -> ClientMessage:
    """Parse one client frame; raise ``ProtocolError`` naming what is wrong (``BadToken``
    for a ``hello`` whose token is missing or malformed)."""
    if isinstance(text, bytes):
        raise ProtocolError("frames must be text, not binary")
    try:
        obj = boundedjson.loads(text, max_bytes=MAX_MESSAGE_BYTES)
    except boundedjson.JSONLimitError as error:
        raise ProtocolError(f"the message is {error}") from None
    except ValueError:
        raise ProtocolError("the message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("the message must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("'type' is missing")
    if kind.startswith("x-") and len(kind) <= 64:
        return Extension(obj)
    if kind == "hello":
        token, agent = obj.get("token"), obj.get("agent", "browser")
        can_rollback, resume = obj.get("can_rollback", agent == "browser"), obj.get("resume")
        # A missing or malformed token is 4401 (docs/contract.md section 4), not 4400.
        if not isinstance(token, str) or not token:
            raise BadToken("'token' must be a non-empty string", "token_missing")
        if len(token) > MAX_TOKEN_CHARS:
            raise BadToken(f"'token' must be at most {MAX_TOKEN_CHARS} characters")
        if agent not in AGENTS:
            raise ProtocolError(f"'agent' must be one of {', '.join(AGENTS)} (got {agent!r:.40})")
        if not isinstance(can_rollback, bool):
            raise ProtocolError("'can_rollback' must be true or false")
        if resume is not None and (not isinstance(resume, str) or len(resume) > 512):
            raise ProtocolError("'resume' must be a string")
        return Hello(token, agent, can_rollback, resume)
    if kind == "signal":
        _check_signal(obj)
        return Signal(obj)
    if kind == "media":
        state = obj.get("state")
        if state not in MEDIA_STATES:
            raise ProtocolError(
                f"'state' must be one of {', '.join(MEDIA_STATES)} (got {state!r:.40})")
        return Media(state, *_media_details(obj, state))
    if kind == "bye":
        return Bye()
    raise ProtocolError(
        f"'type' must be one of {', '.join(CLIENT_TYPES)} or start with 'x-' (got {kind!r:.40})")


def relayed(raw: dict[str, Any], sender_role: str) -> dict[str, Any]:
    """The message as the other party receives it: unchanged, with ``from`` added."""
    return {**raw, "from": sender_role}


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
