"""Errors of signalling, each carrying the WebSocket close code the contract gives it.

    SignallingError (close 1011, internal)
    ├── MessageTooBig       1009 a frame over 64 KiB
    ├── ProtocolError       4400 malformed message, unknown type, hello not first
    ├── BadToken            4401 token missing, malformed or forged
    ├── NotAllowed          4403 booking cancelled/rescheduled, token for another room
    ├── UnknownRoom         4404
    ├── HelloTimeout        4408
    ├── OutsideWindow       4410 too early or over
    ├── RateLimited         4429
    ├── GateUnavailable     1013 the gate cannot be reached now: try again later
    └── RoomsUnavailable    1013 the shared room store (Redis) cannot be reached now

    GateRefused             not a refusal of a client: the gate answered a report with 4xx

``code`` is the stable machine code sent in ``{"type": "error", "code", "message"}``.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class CloseCode(enum.IntEnum):
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # RFC 6455 registry; not a contract code: clients retry it
    MALFORMED = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    UNKNOWN_ROOM = 4404
    HELLO_TIMEOUT = 4408
    REPLACED = 4409
    OUTSIDE_WINDOW = 4410
    RATE_LIMITED = 4429


class SignallingError(Exception):
    close_code: ClassVar[CloseCode] = CloseCode.INTERNAL_ERROR
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class MessageTooBig(SignallingError):
    close_code = CloseCode.MESSAGE_TOO_BIG
    default_code = "message_too_big"


class ProtocolError(SignallingError):
    close_code = CloseCode.MALFORMED
    default_code = "malformed_message"


class BadToken(SignallingError):
    close_code = CloseCode.UNAUTHORIZED
    default_code = "invalid_token"


class NotAllowed(SignallingError):
    close_code = CloseCode.FORBIDDEN
    default_code = "forbidden"


class UnknownRoom(SignallingError):
    close_code = CloseCode.UNKNOWN_ROOM
    default_code = "unknown_room"


class HelloTimeout(SignallingError):
    close_code = CloseCode.HELLO_TIMEOUT
    default_code = "hello_timeout"


class OutsideWindow(SignallingError):
    close_code = CloseCode.OUTSIDE_WINDOW
    default_code = "outside_window"


class RateLimited(SignallingError):
    close_code = CloseCode.RATE_LIMITED
    default_code = "rate_limited"


class GateUnavailable(SignallingError):
    """The gate did not answer (down, unreachable, 5xx, timed out). A join that needs its
    word is closed with 1013 and retried by the client; open rooms carry on."""

    close_code = CloseCode.TRY_AGAIN_LATER
    default_code = "gate_unavailable"


class RoomsUnavailable(SignallingError):
    """Redis, where the rooms of a scale-out deployment live, did not answer in time.
    A join is closed with 1013 (the client retries); a relay is refused with an error and
    the connection stays open; media between the peers is not affected."""

    close_code = CloseCode.TRY_AGAIN_LATER
    default_code = "rooms_unavailable"


class GateRefused(Exception):
    """The gate answered a request with a 4xx: sending it again will not help."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"the gate refused the request: {status} {code}")
        self.status, self.code = status, code
