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
MEDIA_STATES = ("connected", "disconnected")
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
    connected: bool


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
        return Media(state == "connected")
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
