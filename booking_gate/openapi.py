"""The OpenAPI 3.1 description of the booking gate's REST API (docs/contract.md section 3).

The document mirrors what ``service`` and ``validation`` accept and return: the same field
names, bounds and enums, and ``additionalProperties: false`` on every request body because
unknown fields are refused with 422. It is built fresh on each call from small helpers, so
callers may mutate the result freely.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from booking_gate.billing_csv import HEADER as CSV_HEADER
from booking_gate.lobby import MAX_NOTICES, RUNNING_LATE_MINUTES, SessionState
from booking_gate.model import (
    FAILURE_CAUSES,
    REPORTED_KINDS,
    BookingStatus,
    EventKind,
    Funding,
    Outcome,
    Payer,
    RecordStatus,
    Role,
    Source,
)
from booking_gate.rules import HUB_NOTICE_HOURS
from booking_gate.service import (
    MAX_EVENTS_PER_BATCH,
    MAX_EXPORT_LIMIT,
    MAX_NOTICE_HOURS,
    MAX_ROOMS_PER_BATCH,
)
from booking_gate.validation import MAX_AVAILABILITY, MAX_NAME, MAX_TEXT
from booking_gate.webhooks import BookedBy, DeliveryState, WebhookType

__all__ = ["openapi_document"]

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,190}$"
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
CLOCK_OR_MIDNIGHT_PATTERN = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"

_INVALID = "`invalid_request`: malformed JSON, a missing, wrong or unknown field; `invalid_id`"
_INVALID_RANGE = _INVALID + "; `invalid_time_range`: `ends_at` not after `starts_at`"


# -- schema helpers ---------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    """``schema`` or JSON null, the JSON Schema 2020-12 way (OpenAPI 3.1 has no ``nullable``)."""
    return {"oneOf": [schema, {"type": "null"}]}


def _text(max_len: int = MAX_TEXT, **extra: Any) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_len, **extra}


def _integer(low: int, high: int | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "integer", "minimum": low, **extra}
    if high is not None:
        schema["maximum"] = high
    return schema


def _enum(values: type[StrEnum], *, nullable: bool = False) -> Schema:
    members: list[str | None] = [member.value for member in values]
    if nullable:
        return {"type": ["string", "null"], "enum": [*members, None]}
    return {"type": "string", "enum": members}


def _time(description: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "format": "date-time"}
    if description:
        schema["description"] = description
    return schema


def _object(properties: Schema, required: tuple[str, ...] | None = None, *,
            closed: bool = False, description: str | None = None) -> Schema:
    """An object schema; ``required`` defaults to every property (response shapes)."""
    schema: Schema = {"type": "object", "properties": properties,
                      "required": list(properties if required is None else required)}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def _body(properties: Schema, required: tuple[str, ...], **kwargs: Any) -> Schema:
    """A request body: unknown fields are refused (``validation.Body``)."""
    return _object(properties, required, closed=True, **kwargs)


# -- operation helpers ------------------------------------------------------------


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": _json(schema)}


def _error(codes: str) -> Schema:
    return {"description": codes, "content": _json(_ref("Error"))}


def _path_param(name: str, description: str, *, pattern: bool = True) -> Schema:
    schema: Schema = {"type": "string"}
    if pattern:
        schema["pattern"] = ID_PATTERN
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


def _query_param(name: str, schema: Schema, description: str, *,
                 required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}


def _op(operation_id: str, summary: str, tag: str, responses: Schema, *,
        body: str | None = None, params: tuple[str, ...] = (),
        query: tuple[Schema, ...] = (), public: bool = False,
        not_found: str | None = None, conflict: str | None = None,
        invalid: str | None = _INVALID) -> Schema:
    """One operation: path parameters by component name, errors by their codes."""
    operation: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    parameters = [{"$ref": f"#/components/parameters/{p}"} for p in params] + list(query)
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
    all_responses = dict(responses)
    if public:
        operation["security"] = []
    else:
        all_responses["401"] = _error("`unauthorized`: missing or wrong API key")
    if not_found is not None:
        all_responses["404"] = _error(f"`not_found`: {not_found}")
    if conflict is not None:
        all_responses["409"] = _error(conflict)
    if invalid is not None:
        all_responses["422"] = _error(invalid)
    operation["responses"] = all_responses
    return operation


# -- the document -----------------------------------------------------------------


def _schemas() -> Schema:
    role = _enum(Role)
    outcome = _enum(Outcome)
    id_ = _ref("Id")
    reason = _nullable(_text(description="free text"))
    window = {"weekday": _integer(0, 6, description="0 = Monday"),
              "start": {"type": "string", "pattern": CLOCK_PATTERN, "examples": ["09:00"]},
              "end": {"type": "string", "pattern": CLOCK_OR_MIDNIGHT_PATTERN,
                      "examples": ["17:00", "24:00"]}}
    person = {"name": _text(MAX_NAME), "email": _text(254, pattern=EMAIL_PATTERN),
              "timezone": _text(64, description="IANA time zone name",
                                examples=["Europe/Oslo"])}
    professional = {
        **person,
        "session_minutes": _integer(5, 480, default=50),
        "buffer_minutes": _integer(0, 240, default=10),
        "slot_minutes": _integer(
            5, 1440, description="The grid of bookable starts from each availability "
            "window's start, at least `session_minutes`; default `session_minutes + "
            "buffer_minutes` (a 50-minute session with a 10-minute buffer starts on the "
            "hour)."),
        "cancellation_notice_hours": _integer(
            0, MAX_NOTICE_HOURS, default=HUB_NOTICE_HOURS,
            description="The notice a cancellation of a booking outside hubs needs not to "
            "be late (hub bookings always need 24 hours)."),
        "availability": {"type": "array", "maxItems": MAX_AVAILABILITY, "default": [],
                         "items": _ref("AvailabilityWindow"),
                         "description": "Wall-clock windows in `timezone`; end after start."},
    }
    hide_ip = {"type": "boolean", "default": False,
               "description": "Hide my IP: the client connects through a relay (TURN) only, "
               "so the professional never learns the client's address."}
    clients_hide_ip = {"type": "boolean", "default": False,
                       "description": "Hide my IP for every client of the hub, whatever "
                       "the client's own `hide_ip`."}
    block = {"starts_at": _time(), "ends_at": _time(), "reason": reason}
    credits = {"client_id": id_, "hub_id": _nullable(id_),
               "balance": _integer(0, description="credits free to book"),
               "reserved": _integer(0, description="credits held by unsettled bookings")}
    booking = {"professional_id": id_, "client_id": id_,
               "starts_at": _time(), "ends_at": _time(),
               "funding": _enum(Funding), "source": _enum(Source)}
    party = {"joined": {"type": "boolean"}, "first_joined_at": _nullable(_time()),
             "present_seconds": _integer(0),
             "intervals": {"type": "array", "items": _ref("Interval")}}
    link = {"url": {"type": "string", "format": "uri"}, "expires_at": _time()}
    # Signalling reports these; running_late is the gate's own (POST .../running-late).
    reported = {"type": "string", "enum": [k.value for k in EventKind if k in REPORTED_KINDS]}
    event = {"event_id": id_, "booking_id": id_, "role": role, "kind": reported,
             "at": _time("server clock"), "reason": _nullable(_text(
                 64, description="media_connected: `video` or `audio_only` (whether this "
                 "party sends video; null is video); media_failed: the cause the peer "
                 f"named ({', '.join(FAILURE_CAUSES)}) or null; left: why"))}
    return {
        "Id": {"type": "string", "pattern": ID_PATTERN,
               "description": "An identifier chosen by the booking system."},
        "Error": _object({"error": _object({
            "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "message": {"type": "string"},
            "field": {"type": ["string", "null"]},
        })}),
        "AvailabilityWindow": _body(window, ("weekday", "start", "end")),
        "ProfessionalInput": _body(professional, ("name", "email", "timezone")),
        "Professional": _object({"professional_id": id_, **professional}),
        "BlockInput": _body(block, ("starts_at", "ends_at"),
                            description="At most 366 days long."),
        "Block": _object({"block_id": {"type": "string"}, "professional_id": id_, **block}),
        "ClientInput": _body({**person, "hub_id": _nullable(id_), "hide_ip": hide_ip},
                             ("name", "email", "timezone")),
        "Client": _object({"client_id": id_, **person, "hub_id": _nullable(id_),
                           "hide_ip": hide_ip}),
        "HubInput": _body({"clients_hide_ip": clients_hide_ip}, ()),
        "Hub": _object({"hub_id": id_, "clients_hide_ip": clients_hide_ip}),
        "CreditGrant": _body({"client_id": id_, "credits": _integer(1, 10_000)},
                             ("client_id", "credits")),
        "Credits": _object(credits),
        "BookingInput": _body(booking, tuple(booking), description="At most 24 hours long."),
        "Booking": _object({"booking_id": id_, **booking, "status": _enum(BookingStatus),
                            "room_id": {"type": "string"},
                            "cancellation": _nullable(_ref("Cancellation"))}),
        "Cancellation": _object({"by": role, "at": _time(), "late": {"type": "boolean"},
                                 "chargeable": {"type": "boolean"}}),
        "CancelInput": _body({"by": role, "reason": reason}, ("by",)),
        "RescheduleInput": _body({"starts_at": _time(), "ends_at": _time(), "by": role},
                                 ("starts_at", "ends_at", "by")),
        "JoinLink": _object(link),
        "Links": _object({"professional": _ref("JoinLink"), "client": _ref("JoinLink")}),
        "Interval": _object({"from": _time(), "to": _nullable(_time("null: still present"))}),
        "PartyAttendance": _object(party),
        "OverrideEntry": _object({"from": _enum(Outcome, nullable=True), "to": outcome,
                                  "reason": {"type": "string"}, "by": {"type": "string"},
                                  "at": _time()}),
        "AttendanceRecord": _object({
            "booking_id": id_, "status": _enum(RecordStatus),
            "outcome": _enum(Outcome, nullable=True), "billable": {"type": "boolean"},
            "payer": _enum(Payer, nullable=True), "rule_version": {"type": "string"},
            "explanation": {"type": "string"},
            "parties": _object({"professional": _ref("PartyAttendance"),
                                "client": _ref("PartyAttendance")}),
            "together_seconds": _integer(0), "media_connected": {"type": "boolean"},
            "video_seconds": {**_integer(0), "description": (
                "Seconds both were present with the media path connected and every "
                "connected party sending video (docs/attendance.md). 0 in records "
                "finalised under carecall-rules/1, which did not measure it.")},
            "audio_only_seconds": {**_integer(0), "description": (
                "Seconds both were present with the media path connected while a "
                "connected party sent no video. video_seconds + audio_only_seconds <= "
                "together_seconds. 0 under carecall-rules/1.")},
            "notices": {"type": "array", "items": _ref("Notice"),
                        "description": "The parties' running-late notices inside the "
                        "booking's window, oldest first. Never presence."},
            "overrides": {"type": "array", "items": _ref("OverrideEntry"),
                          "description": "Audit trail, oldest first."},
        }, tuple(name for name in (
            "booking_id", "status", "outcome", "billable", "payer", "rule_version",
            "explanation", "parties", "together_seconds", "media_connected",
            "video_seconds", "audio_only_seconds", "notices"))),
        "Notice": _object({
            "by": role, "kind": {"type": "string", "enum": [EventKind.RUNNING_LATE.value]},
            "minutes": {"type": "integer", "enum": list(RUNNING_LATE_MINUTES)},
            "at": _time("server clock")}),
        "AttendancePage": _object({
            "items": {"type": "array", "items": _ref("AttendanceRecord")},
            "next_cursor": {"type": ["string", "null"]},
        }),
        "OverrideInput": _body({"outcome": outcome, "reason": _text(),
                                "by": _nullable(_text(128, description="the author for the "
                                                      "audit trail; else the caller"))},
                               ("outcome", "reason")),
        "AttendanceEvent": _body(event, ("event_id", "booking_id", "role", "kind", "at")),
        "AttendanceEventBatch": _body({"events": {
            "type": "array", "minItems": 1, "maxItems": MAX_EVENTS_PER_BATCH,
            "items": _ref("AttendanceEvent")}}, ("events",)),
        "IngestResult": _object({"received": _integer(1, MAX_EVENTS_PER_BATCH),
                                 "stored": _integer(0, MAX_EVENTS_PER_BATCH,
                                                    description="new, not seen before")}),
        "BookingPage": _object({
            "items": {"type": "array", "items": _ref("Booking")},
            "next_cursor": {"type": ["string", "null"]},
        }),
        "CancellationTerms": _object({
            "late": {"type": "boolean", "description": "less notice than the policy's"},
            "chargeable": {"type": "boolean",
                           "description": "late and by the client: a fee may apply"},
            "notice_hours": _integer(0, description="the policy's notice: 24 for hub "
                                     "bookings, else the professional's"),
            "message": {"type": "string", "description": "a sentence to show before the "
                        "cancellation is confirmed"},
        }),
        "Jwk": _object({"kty": {"const": "OKP"}, "crv": {"const": "Ed25519"},
                        "x": {"type": "string"}, "alg": {"const": "EdDSA"},
                        "use": {"const": "sig"}, "kid": {"type": "string"}}),
        "Jwks": _object({"keys": {"type": "array", "items": _ref("Jwk")}}),
        "Health": _object({"status": {"const": "ok"}}),
    }


def _parameters() -> Schema:
    return {
        "ProfessionalId": _path_param("professional_id", "The professional's id."),
        "ClientId": _path_param("client_id", "The client's id."),
        "HubId": _path_param("hub_id", "The sponsoring hub's id."),
        "BookingId": _path_param("booking_id", "The booking's id."),
        "BlockId": _path_param("block_id", "The id `addBlock` returned.", pattern=False),
        "RoomId": _path_param("room_id", "The room's id (a booking's `room_id`)."),
    }


def _export_query() -> tuple[Schema, ...]:
    return (
        _query_param("from", _time(), "First `starts_at` included.", required=True),
        _query_param("to", _time(), "First `starts_at` excluded.", required=True),
        _query_param("hub_id", {"type": "string", "pattern": ID_PATTERN}, "Only this hub."),
        _query_param("outcome", _enum(Outcome), "Only final records with this outcome."),
        _query_param("limit", _integer(1, MAX_EXPORT_LIMIT, default=100),
                     "Page size (JSON only)."),
        _query_param("cursor", {"type": "string"},
                     "`next_cursor` of the previous page (JSON only)."),
        _query_param("format", {"type": "string", "enum": ["json", "csv"]},
                     "`csv`: the billing CSV, as with `Accept: text/csv`; wins over Accept."),
    )


def _bookings_query() -> tuple[Schema, ...]:
    ident = {"type": "string", "pattern": ID_PATTERN}
    return (
        _query_param("professional_id", ident, "Only this professional's bookings."),
        _query_param("client_id", ident, "Only this client's bookings."),
        _query_param("hub_id", ident, "Only bookings of this hub."),
        _query_param("status", _enum(BookingStatus), "Only bookings in this status."),
        _query_param("from", _time(), "First `starts_at` included."),
        _query_param("to", _time(), "First `starts_at` excluded."),
        _query_param("limit", _integer(1, MAX_EXPORT_LIMIT, default=100), "Page size."),
        _query_param("cursor", {"type": "string"}, "`next_cursor` of the previous page."),
    )


CSV_DESCRIPTION = (
    "The billing CSV (RFC 4180, UTF-8, CRLF), streamed: a header row, then one row per "
    "booking in `starts_at` order. Columns: " + ", ".join(f"`{c}`" for c in CSV_HEADER)
    + ". Minutes are whole minutes, rounded down; `billable` is `true` or `false`; a "
    "pending record has an empty `outcome` and `payer`. The client is named by "
    "`client_id` only. A cell that a spreadsheet would run as a formula (starting with "
    "`=`, `+`, `-`, `@`, a tab or a line break) starts with `'`."
)


_ERASED_ID = "`party_erased`: the id is the pseudonym of an erased person"


def _erase_op(kind: str, param: str) -> Schema:
    """``DELETE`` of a person: the erasure on request (docs/security.md)."""
    operation = _op(
        f"erase{kind.title()}", f"Erase a {kind} (GDPR art. 17).", "people",
        {"204": {"description": "Erased: name and email removed, the id pseudonymised in "
                                "the billing records, the erasure audited."}},
        params=(param,), not_found=f"unknown {kind}, or one already erased")
    operation["description"] = (
        f"Removes the {kind}'s name and email everywhere, including stored emails and "
        "webhook events, and replaces the id by a random pseudonym (`erased-...`) in the "
        "bookings, attendance and credit records kept for billing. Join links of the "
        f"{kind} stop working. A second erasure of the same id is 404 `not_found`.")
    return operation


def _paths() -> Schema:
    booking = _ok("The booking.", _ref("Booking"))
    record = _ok("The attendance record.", _ref("AttendanceRecord"))
    unknown_booking = "unknown booking"
    return {
        "/api/v1/professionals/{professional_id}": {"put": _op(
            "putProfessional", "Create or replace a professional.", "people",
            {"200": _ok("The stored professional.", _ref("Professional"))},
            body="ProfessionalInput", params=("ProfessionalId",),
            invalid=_INVALID + "; `invalid_time_range`: an availability window ends too soon",
            conflict=_ERASED_ID), "delete": _erase_op("professional", "ProfessionalId")},
        "/api/v1/professionals/{professional_id}/blocks": {"post": _op(
            "addBlock", "Block out a professional's time.", "people",
            {"201": _ok("The block.", _ref("Block"))}, body="BlockInput",
            params=("ProfessionalId",), not_found="unknown professional",
            invalid=_INVALID_RANGE)},
        "/api/v1/professionals/{professional_id}/blocks/{block_id}": {"delete": _op(
            "deleteBlock", "Remove a block.", "people", {"204": {"description": "Removed."}},
            params=("ProfessionalId", "BlockId"), not_found="unknown professional or block")},
        "/api/v1/clients/{client_id}": {"put": _op(
            "putClient", "Create or replace a client.", "people",
            {"200": _ok("The stored client.", _ref("Client"))}, body="ClientInput",
            params=("ClientId",), conflict=_ERASED_ID),
            "delete": _erase_op("client", "ClientId")},
        "/api/v1/hubs/{hub_id}": {
            "put": _op(
                "putHub", "Set a hub's settings (a hub needs no other set-up).", "people",
                {"200": _ok("The hub's settings.", _ref("Hub"))}, body="HubInput",
                params=("HubId",)),
            "get": _op(
                "getHub", "Read a hub's settings (the defaults if never set).", "people",
                {"200": _ok("The hub's settings.", _ref("Hub"))}, params=("HubId",)),
        },
        "/api/v1/hubs/{hub_id}/credits": {"post": _op(
            "grantCredits", "Grant sponsored credits to a client of the hub.", "people",
            {"200": _ok("The client's credits.", _ref("Credits"))}, body="CreditGrant",
            params=("HubId",), not_found="unknown client",
            invalid=_INVALID + " (also when the client does not belong to the hub)")},
        "/api/v1/clients/{client_id}/credits": {"get": _op(
            "getCredits", "Read a client's sponsored credits.", "people",
            {"200": _ok("The client's credits.", _ref("Credits"))}, params=("ClientId",),
            not_found="unknown client")},
        "/api/v1/bookings/{booking_id}": {
            "put": _op(
                "putBooking", "Create a booking (idempotent).", "bookings",
                {"201": _ok("Created.", _ref("Booking")),
                 "200": _ok("It already existed with the same content.", _ref("Booking"))},
                body="BookingInput", params=("BookingId",),
                not_found="unknown professional or client",
                conflict="`booking_exists`: other content under this id; `no_credits`: no "
                         "sponsored credit left; `slot_taken`: overlaps a booking or block",
                invalid=_INVALID_RANGE),
            "get": _op("getBooking", "Read a booking.", "bookings", {"200": booking},
                       params=("BookingId",), not_found=unknown_booking),
        },
        "/api/v1/bookings/{booking_id}/cancel": {"post": _op(
            "cancelBooking", "Cancel a booking (idempotent).", "bookings", {"200": booking},
            body="CancelInput", params=("BookingId",), not_found=unknown_booking,
            conflict="`not_modifiable`: the session has already ended")},
        "/api/v1/bookings/{booking_id}/reschedule": {"post": _op(
            "rescheduleBooking", "Move a hub booking to another time.", "bookings",
            {"200": booking}, body="RescheduleInput", params=("BookingId",),
            not_found=unknown_booking, invalid=_INVALID_RANGE,
            conflict="`not_modifiable`: not a hub booking, or the session has ended; "
                     "`booking_cancelled`; `slot_taken`: the new time is not free")},
        "/api/v1/bookings/{booking_id}/links": {"post": _op(
            "issueLinks", "Issue fresh join links for both parties.", "bookings",
            {"200": _ok("One join link per party.", _ref("Links"))}, params=("BookingId",),
            not_found=unknown_booking,
            conflict="`booking_cancelled`; `party_erased`: a party of the booking was erased")},
        "/api/v1/bookings/{booking_id}/attendance": {"get": _op(
            "getAttendance", "Read a booking's attendance record.", "attendance",
            {"200": record}, params=("BookingId",), not_found=unknown_booking)},
        "/api/v1/attendance": {"get": _op(
            "exportAttendance", "Export attendance records by booking start (billing).",
            "attendance", {"200": {
                "description": "JSON: one page, ordered by `starts_at`. CSV (`Accept: "
                               "text/csv` or `format=csv`): every row of the range.",
                "content": {**_json(_ref("AttendancePage")), "text/csv": {
                    "schema": {"type": "string", "description": CSV_DESCRIPTION},
                    "example": ",".join(CSV_HEADER) + "\r\n"}}}},
            query=_export_query(),
            invalid=_INVALID + " (also an unknown query parameter, a foreign `cursor`, or "
                               "`limit` or `cursor` with CSV); "
                               "`invalid_time_range`: `to` not after `from`")},
        "/api/v1/bookings": {"get": _op(
            "listBookings", "List bookings, ordered by `starts_at`.", "bookings",
            {"200": _ok("One page; `next_cursor` is null on the last.", _ref("BookingPage"))},
            query=_bookings_query(),
            invalid=_INVALID + " (also an unknown query parameter or a foreign `cursor`); "
                               "`invalid_time_range`: `to` not after `from`")},
        "/api/v1/bookings/{booking_id}/cancellation-terms": {"get": _op(
            "getCancellationTerms", "What cancelling the booking now would mean.",
            "bookings", {"200": _ok("The terms, as a cancel now would apply them.",
                                    _ref("CancellationTerms"))},
            params=("BookingId",),
            query=(_query_param("by", _enum(Role), "Who would cancel.", required=True),),
            not_found=unknown_booking,
            conflict="`booking_cancelled`; `not_modifiable`: the session has already ended",
            invalid=_INVALID + " (also an unknown query parameter)")},
        "/api/v1/bookings/{booking_id}/attendance/override": {"post": _op(
            "overrideAttendance", "Override an attendance outcome, with an audit entry.",
            "attendance", {"200": record}, body="OverrideInput", params=("BookingId",),
            not_found=unknown_booking)},
        "/api/v1/attendance/events": {"post": _op(
            "ingestAttendanceEvents", "Ingest attendance events from signalling nodes.",
            "attendance", {"200": _ok("How many were received and newly stored.",
                                      _ref("IngestResult"))},
            body="AttendanceEventBatch", not_found=unknown_booking)},
        "/.well-known/jwks.json": {"get": _op(
            "getJwks", "Public keys that verify join tokens.", "operations",
            {"200": {**_ok("The JSON Web Key Set.", _ref("Jwks")), "headers": {
                "Cache-Control": {"description": "`public, max-age=N`: how many seconds a "
                                  "signalling node may keep the keys before refetching.",
                                  "schema": {"type": "string"}}}}},
            public=True, invalid=None)},
        "/healthz": {"get": _op(
            "getHealth", "Liveness check.", "operations",
            {"200": _ok("Alive.", _ref("Health"))}, public=True, invalid=None)},
        "/metrics": {"get": _op(
            "getMetrics", "Prometheus metrics.", "operations",
            {"200": {"description": "Prometheus text exposition format.",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}},
            public=True, invalid=None)},
        "/api/v1/openapi.json": {"get": _op(
            "getOpenapi", "This OpenAPI document.", "operations",
            {"200": _ok("The OpenAPI 3.1 document.", {"type": "object"})},
            public=True, invalid=None)},
    }


def _webhook_schemas() -> Schema:
    role = _enum(Role)
    credits_why = {"type": "string", "enum": ["grant", "reserve", "release", "consume"]}
    envelope: dict[str, Schema] = {
        "BookingCreatedData": {"allOf": [_ref("Booking"), _object({
            "booked_by": {**_enum(BookedBy), "description": "`booking_system`: through "
                          "this API; `professional`: in the call (book next session)"}})]},
        "BookingRescheduledData": {"allOf": [_ref("Booking"), _object({
            "previous": _object({"starts_at": _time(), "ends_at": _time()}),
            "rescheduled_by": role})]},
        "CreditsChangedData": {"allOf": [_ref("Credits"), _object({
            "why": {**credits_why, "description": "the ledger entry: a grant, a booking's "
                    "reservation, its release or its consumption"},
            "booking_id": _nullable(_ref("Id")), "note": {"type": ["string", "null"]}})]},
    }
    data = {
        WebhookType.BOOKING_CREATED: "BookingCreatedData",
        WebhookType.BOOKING_RESCHEDULED: "BookingRescheduledData",
        WebhookType.BOOKING_CANCELLED: "Booking",
        WebhookType.ATTENDANCE_FINALIZED: "AttendanceRecord",
        WebhookType.ATTENDANCE_OVERRIDDEN: "AttendanceRecord",
        WebhookType.CREDITS_CHANGED: "CreditsChangedData",
    }
    for event_type, name in data.items():
        envelope[_webhook_schema_name(event_type)] = _object({
            "type": {"const": event_type.value},
            "timestamp": _time("when the change happened"),
            "data": _ref(name)})
    return {
        **envelope,
        "WebhookStatus": _object({
            "configured": {"type": "boolean", "description": "CARECALL_WEBHOOK_URL is set"},
            "enabled": {"type": "boolean",
                        "description": "false after the receiver answered 410 Gone"},
            "disabled_at": _nullable(_time())}),
        "WebhookDelivery": _object({
            "webhook_id": {"type": "string", "description": "the `webhook-id` header"},
            "type": {"type": "string", "enum": [t.value for t in WebhookType]},
            "state": _enum(DeliveryState), "attempts": _integer(0),
            "last_status": {"type": ["integer", "null"],
                            "description": "the receiver's last HTTP status; null: none "
                            "yet, or no answer"},
            "next_attempt_at": _nullable(_time("while pending"))}),
        "WebhookDeliveryPage": _object({
            "items": {"type": "array", "items": _ref("WebhookDelivery")},
            "next_cursor": {"type": ["string", "null"]}}),
    }


def _webhook_schema_name(event_type: WebhookType) -> str:
    """``booking.created`` → ``BookingCreatedEvent``."""
    return "".join(part.capitalize() for part in event_type.value.split(".")) + "Event"


def _webhook_paths() -> Schema:
    webhook_id = _path_param("webhook_id", "An event's `webhook-id`.", pattern=False)
    retry = _op("retryWebhookDelivery", "Deliver an event again (a failed one, or a "
                "pending one now).", "webhooks",
                {"202": _ok("Due now; the sender is woken.", _ref("WebhookDelivery"))},
                not_found="unknown webhook id",
                conflict="`already_delivered`: it was delivered", invalid=None)
    retry["parameters"] = [webhook_id]
    return {
        "/api/v1/webhooks": {"get": _op(
            "getWebhookStatus", "Whether webhooks are configured and enabled.", "webhooks",
            {"200": _ok("The receiver's state.", _ref("WebhookStatus"))}, invalid=None)},
        "/api/v1/webhooks/enable": {"post": _op(
            "enableWebhooks", "Deliver to the receiver again after it answered 410 Gone.",
            "webhooks", {"200": _ok("Enabled.", _ref("WebhookStatus"))}, invalid=None,
            conflict="`webhooks_not_configured`: no CARECALL_WEBHOOK_URL")},
        "/api/v1/webhooks/deliveries": {"get": _op(
            "listWebhookDeliveries", "Webhook events and their delivery, oldest first.",
            "webhooks", {"200": _ok("One page.", _ref("WebhookDeliveryPage"))},
            query=(_query_param("state", _enum(DeliveryState), "Only this state."),
                   _query_param("limit", _integer(1, MAX_EXPORT_LIMIT, default=100),
                                "Page size."),
                   _query_param("cursor", {"type": "string"},
                                "`next_cursor` of the previous page.")),
            invalid=_INVALID + " (also an unknown query parameter or a foreign `cursor`)")},
        "/api/v1/webhooks/deliveries/{webhook_id}/retry": {"post": retry},
    }


WEBHOOK_DESCRIPTION = (
    "POSTed to CARECALL_WEBHOOK_URL, signed as Standard Webhooks specify: `webhook-id` "
    "(one per event, the same on every retry: deduplicate by it), `webhook-timestamp` "
    "(Unix seconds of the attempt) and `webhook-signature`, `v1,<base64 HMAC-SHA256 of "
    "\"{webhook-id}.{webhook-timestamp}.{body}\">` keyed with the bytes of the "
    "`whsec_<base64>` secret; during a secret rotation two such entries, space-separated. "
    "One booking's events arrive in the order they happened. Any answer but 2xx is "
    "retried with backoff for at least 24 hours; 410 Gone stops deliveries until "
    "`POST /api/v1/webhooks/enable`."
)


def _webhooks() -> Schema:
    headers = [
        {"name": "webhook-id", "in": "header", "required": True,
         "schema": {"type": "string"}, "description": "The event's id."},
        {"name": "webhook-timestamp", "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9]+$"},
         "description": "Unix seconds of this attempt."},
        {"name": "webhook-signature", "in": "header", "required": True,
         "schema": {"type": "string"},
         "description": "Space-separated `v1,<base64>` signatures."},
    ]
    found: Schema = {}
    for event_type in WebhookType:
        name = _webhook_schema_name(event_type)
        found[event_type.value] = {"post": {
            "operationId": f"{name[0].lower()}{name[1:]}",
            "summary": f"The `{event_type.value}` event.", "tags": ["webhooks"],
            "description": WEBHOOK_DESCRIPTION, "parameters": headers, "security": [],
            "requestBody": {"required": True, "content": _json(_ref(name))},
            "responses": {
                "200": {"description": "Received (any 2xx is)."},
                "410": {"description": "Gone: deliveries stop until re-enabled."}},
        }}
    return found


def _scheduling_schemas() -> Schema:
    slot = _object({"starts_at": _time(), "ends_at": _time()})
    request = {"request_id": {"type": "string"}, "hub_id": _ref("Id"),
               "professional": _object({"name": {"type": ["string", "null"]}}),
               "credits": _integer(1, 100), "note": _nullable(_text()),
               "status": {"type": "string", "enum": ["pending", "approved", "declined"]},
               "created_at": _time(), "decided_at": _nullable(_time()),
               "granted": {"type": ["integer", "null"]}}
    entry = {"kind": {"type": "string", "enum": ["grant", "reserve", "release", "consume"]},
             "amount": _integer(1), "booking_id": _nullable(_ref("Id")), "at": _time(),
             "note": _nullable({"type": "string"})}
    ice_server = _object({"urls": {"type": "array", "items": {"type": "string"}},
                          "username": {"type": "string"}, "credential": {"type": "string"}},
                         ("urls",), description="An RTCIceServer, as in `welcome`.")
    session = {
        "role": _enum(Role),
        "state": _enum(SessionState),
        "starts_at": _time(), "ends_at": _time(),
        "opens_at": _time("`starts_at` minus the join-early window"),
        "closes_at": _time("`ends_at` plus the overrun window"),
        "now": _time("the server's clock: count down on it, not the device's"),
        "professional": _object({"name": {"type": "string"},
                                 "timezone": {"type": "string"}}),
        "client": _object({"first_name": {"type": "string",
                                          "description": "The first word of the name."}}),
        "notices": {"type": "array", "items": _ref("Notice"),
                    "description": "This booking's running-late notices, oldest first."},
        "next_session": _nullable(_object({"starts_at": _time(), "ends_at": _time(),
                                           "funding": _enum(Funding)},
                                          description="The pair's next confirmed booking "
                                          "starting at or after this one's `ends_at`.")),
        "support": {"type": ["string", "null"],
                    "description": "`CARECALL_SUPPORT_TEXT`, or null."},
        "ice_servers": {"type": "array", "items": _ref("IceServer"),
                        "description": "STUN/TURN for the lobby's network check (TURN "
                        "credentials expire at `closes_at`); empty unless the state is "
                        "`too_early` or `open`."},
        "ice_transport_policy": {"type": "string", "enum": ["all", "relay"],
                                 "description": "`relay` for a client who hides their IP "
                                 "(as in `welcome`): the network check then tries the relay "
                                 "only."},
    }
    return {
        "IceServer": ice_server,
        "RoomSession": _object(session),
        "RunningLateInput": _body({"minutes": {"type": "integer",
                                               "enum": list(RUNNING_LATE_MINUTES)}},
                                  ("minutes",)),
        "Slot": slot,
        "NextSlots": _object({
            "timezone": {"type": "string"},
            "session_minutes": {"type": "integer",
                                "description": "How long a booked session lasts."},
            "client_first_name": {"type": "string",
                                  "description": "The first word of the client's name "
                                  "(\"\" once erased)."},
            "sponsored_credits_left": {"type": "integer", "minimum": 0,
                                       "description": "The client's free sponsored "
                                       "credits, which the next booking would draw on; "
                                       "0: it would be self-paid (private)."},
            "slots": {"type": "array", "items": _ref("Slot")}}),
        "NextBookingInput": _body({"starts_at": _time("a `starts_at` from next-slots"),
                                   "idempotency_key": _text(64)},
                                  ("starts_at", "idempotency_key")),
        "CreditRequestInput": _body({
            "client_email": _text(254, pattern=EMAIL_PATTERN),
            "professional_email": _text(254, pattern=EMAIL_PATTERN),
            "credits": _integer(1, 100, default=1), "note": _nullable(_text())},
            ("client_email", "professional_email")),
        "CreditRequest": _object(request, description="The hub's view: never the client."),
        "CreditRequestList": _object({"items": {"type": "array",
                                                "items": _ref("CreditRequest")}}),
        "ApproveInput": _body({"credits": _integer(1, 100)}, ()),
        "CreditHistory": _object({
            "client_id": _ref("Id"), "hub_id": _nullable(_ref("Id")),
            "balance": {"type": "integer"}, "reserved": {"type": "integer"},
            "entries": {"type": "array", "items": _object(entry)}}),
    }


def _scheduling_paths() -> Schema:
    token: list[Schema] = [{"joinToken": []}]
    room = _path_param("room_id", "The room of the caller's join token.", pattern=False)
    request_id = _path_param("request_id", "The credit request's id.")
    token_errors = {"401": _error("`unauthorized`: missing, forged or expired join token"),
                    "403": _error("`forbidden`: a token of another room, a cancelled or "
                                  "moved booking, or (to book) the client's token")}
    slots = _op("getNextSlots", "Free slots of the professional (in-call).", "scheduling",
                {"200": _ok("Free slots, on the `slot_minutes` grid.", _ref("NextSlots")),
                 **token_errors},
                query=(_query_param("days", _integer(1, 60, default=14), "How far ahead."),),
                public=True)
    book = _op("bookNextSession", "Book the client's next session (professional, in-call).",
               "scheduling",
               {"201": _ok("Created: sponsored if a credit is left, else private.",
                           _ref("Booking")),
                "200": _ok("The booking this idempotency key already made.", _ref("Booking")),
                **token_errors},
               body="NextBookingInput", public=True,
               conflict="`slot_taken`: not a free slot (any more)")
    lobby_errors = {
        "401": _error("`invalid_token`: missing, malformed or forged join token (its time "
                      "window is not checked here)"),
        "403": _error("`forbidden`: a token of another room, or not of a party of this "
                      "booking"),
        "404": _error("`not_found`: a genuine token for a room no booking has")}
    lobby = _op("getRoomSession", "The lobby's view of a join link's session.", "scheduling",
                {"200": _ok("The session, in whatever state.", _ref("RoomSession")),
                 **lobby_errors}, public=True, invalid=None)
    late = _op("postRunningLate", "A party says they are running late (not presence).",
               "scheduling",
               {"201": _ok("Stored: the notice.", _ref("Notice")), **lobby_errors,
                "403": _error("`forbidden`: a token of another room, not of a party, or "
                              "of a cancelled or moved booking"),
                "429": _error(f"`rate_limited`: this party sent {MAX_NOTICES} notices for "
                              f"this booking already")},
               body="RunningLateInput", public=True,
               conflict="`session_over`: the window has closed",
               invalid="`invalid_request`: `minutes` not one of "
                       f"{', '.join(map(str, RUNNING_LATE_MINUTES))}, or malformed JSON")
    for operation in (slots, book, lobby, late):
        operation["security"] = token
        operation["parameters"] = [room, *operation.get("parameters", [])]
    decided = _ok("The request, as the hub sees it.", _ref("CreditRequest"))
    approve = _op("approveCreditRequest", "Approve: grant the credits to the client.",
                  "credits", {"200": decided}, params=("HubId",),
                  not_found="unknown request", conflict="`already_decided`: it was declined")
    approve["requestBody"] = {"required": False, "content": _json(_ref("ApproveInput"))}
    decline = _op("declineCreditRequest", "Decline a credit request.", "credits",
                  {"200": decided}, params=("HubId",), not_found="unknown request",
                  conflict="`already_decided`: it was approved")
    for operation in (approve, decline):
        operation["parameters"].append(request_id)
    return {
        "/api/v1/rooms/{room_id}/session": {"get": lobby},
        "/api/v1/rooms/{room_id}/running-late": {"post": late},
        "/api/v1/rooms/{room_id}/next-slots": {"get": slots},
        "/api/v1/rooms/{room_id}/next-booking": {"post": book},
        "/api/v1/hubs/{hub_id}/credit-requests": {
            "post": _op("createCreditRequest",
                        "A professional recommends more credits for a client.", "credits",
                        {"201": _ok("Created.", _ref("CreditRequest"))},
                        body="CreditRequestInput", params=("HubId",),
                        not_found="no professional or no client of this hub with that email"),
            "get": _op("listCreditRequests", "The hub's credit requests, newest first.",
                       "credits", {"200": _ok("Requests.", _ref("CreditRequestList"))},
                       params=("HubId",),
                       query=(_query_param("status", {"type": "string", "enum": [
                           "pending", "approved", "declined"]}, "Only this status."),)),
        },
        "/api/v1/hubs/{hub_id}/credit-requests/{request_id}/approve": {"post": approve},
        "/api/v1/hubs/{hub_id}/credit-requests/{request_id}/decline": {"post": decline},
        "/api/v1/professionals/{professional_id}/calendar-url": {"get": _op(
            "getCalendarUrl", "The secret URL of a professional's calendar feed.",
            "scheduling", {"200": _ok("The feed's URL.", _object({"url": {"type": "string"}}))},
            params=("ProfessionalId",), not_found="unknown professional")},
        "/api/v1/professionals/{professional_id}/calendar.ics": {"get": _op(
            "getCalendarFeed", "A professional's bookings as a subscribable iCalendar feed.",
            "scheduling",
            {"200": {"description": "RFC 5545 calendar.",
                     "content": {"text/calendar": {"schema": {"type": "string"}}}}},
            params=("ProfessionalId",),
            query=(_query_param("key", {"type": "string"}, "The feed's secret key.",
                                required=True),),
            public=True, invalid=None,
            not_found="unknown professional, or a missing or wrong key")},
        "/api/v1/clients/{client_id}/credits/history": {"get": _op(
            "getCreditHistory", "A client's credit balance and ledger.", "credits",
            {"200": _ok("Balance and ledger entries, oldest first.", _ref("CreditHistory"))},
            params=("ClientId",), not_found="unknown client")},
    }


def _signalling_schemas() -> Schema:
    room_ids = {"type": "array", "minItems": 1, "maxItems": MAX_ROOMS_PER_BATCH,
                "items": _ref("Id")}
    return {
        "SignallingRoom": _object({
            "room_id": {"type": "string"}, "booking_id": _ref("Id"),
            "professional_id": _ref("Id"), "client_id": _ref("Id"),
            "starts_at": _time(), "ends_at": _time(), "cancelled": {"type": "boolean"},
            "changed_at": _time("the last reschedule (else the creation), to the "
                                "microsecond: tokens issued before it are stale"),
            "opens_at": _time("`starts_at` minus the join-early window: the tokens' `nbf`"),
            "closes_at": _time("`ends_at` plus the overrun window: the tokens' `exp`"),
            "client_relay_only": {"type": "boolean", "description": "The client hides "
                                  "their IP (their `hide_ip` or their hub's "
                                  "`clients_hide_ip`): the client's welcome asks for "
                                  "relay-only ICE."},
        }, description="The booking behind a room, as signalling admits parties to it."),
        "SignallingRoomsInput": _body({"room_ids": room_ids}, ("room_ids",)),
        "SignallingRooms": _object({"rooms": {
            "type": "object", "additionalProperties": _nullable(_ref("SignallingRoom")),
            "description": "Each asked room id: its booking, or null for an unknown room."}}),
    }


def _signalling_paths() -> Schema:
    return {
        "/api/v1/signalling/rooms/{room_id}": {"get": _op(
            "getSignallingRoom", "The booking behind a room (a signalling node's join check).",
            "signalling", {"200": _ok("The room's booking.", _ref("SignallingRoom"))},
            params=("RoomId",), not_found="unknown room",
            invalid="`invalid_id`: not a room id")},
        "/api/v1/signalling/rooms": {"post": _op(
            "getSignallingRooms", "The bookings behind many rooms (revalidation of open "
            "rooms).", "signalling",
            {"200": _ok("One entry per asked room.", _ref("SignallingRooms"))},
            body="SignallingRoomsInput",
            invalid=_INVALID + " (a room id, with `field` like `room_ids[3]`); "
                    "`body_too_large`: over 64 KiB")},
    }


def openapi_document(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of the booking gate served at ``public_url``."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "CareCall booking gate",
            "version": API_VERSION,
            "description": "Bookings, join links and attendance for CareCall video sessions. "
                           "Times are RFC 3339 with an offset and returned in UTC.",
        },
        "servers": [{"url": public_url.rstrip("/")}],
        "security": [{"apiKey": []}],
        "tags": [{"name": name} for name in ("people", "bookings", "attendance", "scheduling",
                                               "credits", "signalling", "webhooks",
                                               "operations")],
        "paths": {**_paths(), **_scheduling_paths(), **_signalling_paths(),
                  **_webhook_paths()},
        "webhooks": _webhooks(),
        "components": {
            "securitySchemes": {"apiKey": {
                "type": "http", "scheme": "bearer",
                "description": "The booking system's API key as a bearer token."},
                "joinToken": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A party's join token (the link's `#t=` fragment)."}},
            "parameters": _parameters(),
            "schemas": {**_schemas(), **_scheduling_schemas(), **_signalling_schemas(),
                        **_webhook_schemas()},
        },
    }
