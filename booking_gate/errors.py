"""Errors of the booking gate.

    GateError                    500 internal_error (never shown with details)
    ├── InvalidRequest           422 invalid_request / invalid_id / invalid_time_range / ...
    ├── Unauthorized             401 unauthorized
    ├── Forbidden                403 forbidden
    ├── NotFound                 404 not_found
    ├── Conflict                 409 booking_exists / no_credits / slot_taken /
    │                                not_modifiable / booking_cancelled / party_erased /
    │                                session_over
    └── RateLimited              429 rate_limited

Each error carries the contract's machine ``code``, its HTTP ``status`` and the
offending ``field`` (or None); the aiohttp adapter turns it into
``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GateError(Exception):
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class InvalidRequest(GateError):
    status = 422
    default_code = "invalid_request"


class Unauthorized(GateError):
    status = 401
    default_code = "unauthorized"


class Forbidden(GateError):
    status = 403
    default_code = "forbidden"


class NotFound(GateError):
    status = 404
    default_code = "not_found"


class Conflict(GateError):
    status = 409
    default_code = "conflict"


class RateLimited(GateError):
    status = 429
    default_code = "rate_limited"
