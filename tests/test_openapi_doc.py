"""The OpenAPI document (booking_gate.openapi): valid, complete, and true to the service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator

from booking_gate import rules
from booking_gate.model import (
    AttendanceEvent,
    Booking,
    BookingId,
    BookingStatus,
    Cancellation,
    Client,
    ClientId,
    CreditAccount,
    EventId,
    EventKind,
    Funding,
    HubId,
    Professional,
    ProfessionalId,
    Role,
    RoomId,
    Source,
)
from booking_gate.openapi import openapi_document
from booking_gate.service import (
    booking_json,
    client_json,
    credits_json,
    professional_json,
    signalling_room_json,
)
from booking_gate.tokens import TokenIssuer, public_jwk
from booking_gate.validation import Body, parse_availability

DOC = openapi_document("https://gate.example/")
PUBLIC = {"/.well-known/jwks.json", "/healthz", "/metrics", "/api/v1/openapi.json",
          "/api/v1/professionals/{professional_id}/calendar.ics"}
EXPECTED = {
    ("/api/v1/professionals/{professional_id}", "put"),
    ("/api/v1/professionals/{professional_id}", "delete"),
    ("/api/v1/professionals/{professional_id}/blocks", "post"),
    ("/api/v1/professionals/{professional_id}/blocks/{block_id}", "delete"),
    ("/api/v1/clients/{client_id}", "put"),
    ("/api/v1/hubs/{hub_id}", "put"),
    ("/api/v1/hubs/{hub_id}", "get"),
    ("/api/v1/clients/{client_id}", "delete"),
    ("/api/v1/hubs/{hub_id}/credits", "post"),
    ("/api/v1/clients/{client_id}/credits", "get"),
    ("/api/v1/bookings/{booking_id}", "put"),
    ("/api/v1/bookings/{booking_id}", "get"),
    ("/api/v1/bookings/{booking_id}/cancel", "post"),
    ("/api/v1/bookings/{booking_id}/reschedule", "post"),
    ("/api/v1/bookings/{booking_id}/links", "post"),
    ("/api/v1/bookings/{booking_id}/attendance", "get"),
    ("/api/v1/attendance", "get"),
    ("/api/v1/bookings/{booking_id}/attendance/override", "post"),
    ("/api/v1/attendance/events", "post"),
    ("/.well-known/jwks.json", "get"),
    ("/healthz", "get"),
    ("/metrics", "get"),
    ("/api/v1/openapi.json", "get"),
    ("/api/v1/rooms/{room_id}/next-slots", "get"),
    ("/api/v1/rooms/{room_id}/next-booking", "post"),
    ("/api/v1/rooms/{room_id}/session", "get"),
    ("/api/v1/rooms/{room_id}/running-late", "post"),
    ("/api/v1/hubs/{hub_id}/credit-requests", "post"),
    ("/api/v1/hubs/{hub_id}/credit-requests", "get"),
    ("/api/v1/hubs/{hub_id}/credit-requests/{request_id}/approve", "post"),
    ("/api/v1/hubs/{hub_id}/credit-requests/{request_id}/decline", "post"),
    ("/api/v1/clients/{client_id}/credits/history", "get"),
    ("/api/v1/professionals/{professional_id}/calendar-url", "get"),
    ("/api/v1/professionals/{professional_id}/calendar.ics", "get"),
    ("/api/v1/signalling/rooms/{room_id}", "get"),
    ("/api/v1/signalling/rooms", "post"),
    ("/api/v1/bookings", "get"),
    ("/api/v1/bookings/{booking_id}/cancellation-terms", "get"),
    ("/api/v1/webhooks", "get"),
    ("/api/v1/webhooks/enable", "post"),
    ("/api/v1/webhooks/deliveries", "get"),
    ("/api/v1/webhooks/deliveries/{webhook_id}/retry", "post"),
}
JOIN_TOKEN = {"/api/v1/rooms/{room_id}/next-slots", "/api/v1/rooms/{room_id}/next-booking",
              "/api/v1/rooms/{room_id}/session", "/api/v1/rooms/{room_id}/running-late"}
STARTS = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ENDS = STARTS + timedelta(minutes=50)


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in DOC["paths"].items()
            for method, op in item.items()]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref: str | None = schema.get("$ref")
    if ref is None:
        return schema
    return resolve(DOC["components"]["schemas"][ref.rsplit("/", 1)[-1]])


def validator(name: str) -> Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": DOC["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(name: str, instance: object) -> None:
    errors = [e.message for e in validator(name).iter_errors(instance)]
    assert errors == [], f"{name}: {errors}"


def booking(cancelled: bool = False) -> Booking:
    cancellation = Cancellation(Role.CLIENT, STARTS - timedelta(hours=2), True, True, "ill")
    return Booking(
        BookingId("b-1"), ProfessionalId("p-1"), ClientId("c-1"), HubId("acme"), STARTS, ENDS,
        Funding.SPONSORED, Source.HUB,
        BookingStatus.CANCELLED if cancelled else BookingStatus.CONFIRMED, RoomId("r-1"),
        STARTS - timedelta(days=3), STARTS - timedelta(days=3),
        cancellation if cancelled else None)


def test_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document as OpenAPI 3.1.0."""
    validator_module = pytest.importorskip("openapi_spec_validator")
    assert DOC["openapi"] == "3.1.0"
    validator_module.validate(DOC)


def test_server_is_the_public_url() -> None:
    """The one server is the public URL without a trailing slash."""
    assert DOC["servers"] == [{"url": "https://gate.example"}]


def test_every_endpoint_is_described() -> None:
    """Each endpoint of docs/contract.md section 3 the gate serves has its path and method."""
    assert {(path, method) for path, method, _ in operations()} == EXPECTED


def test_the_document_describes_exactly_the_apps_routes() -> None:
    """Every route the gate's app serves (HEAD and the /api/ catch-all aside) is in the
    document, and nothing else is."""
    from booking_gate.app import make_app
    from booking_gate.config import GateConfig

    served = {(route.resource.canonical, route.method.lower())
              for route in make_app(GateConfig()).router.routes()
              if route.resource is not None and route.method not in ("HEAD", "*")}
    assert served == {(path, method) for path, method, _ in operations()}


def test_every_operation_has_a_unique_id_and_a_summary() -> None:
    """operationIds exist and are unique; summaries are one line."""
    ids = [op.get("operationId") for _, _, op in operations()]
    assert all(ids) and len(set(ids)) == len(ids)
    assert all(op["summary"] and "\n" not in op["summary"] for _, _, op in operations())


def test_request_bodies_refuse_unknown_fields() -> None:
    """Every request body object schema, nested ones included, is closed."""
    seen = []

    def check(schema: dict[str, Any]) -> None:
        schema = resolve(schema)
        if schema.get("type") == "object":
            seen.append(schema)
            assert schema["additionalProperties"] is False
            for prop in schema["properties"].values():
                check(prop)
        elif schema.get("type") == "array":
            check(schema["items"])

    for _, _, op in operations():
        if "requestBody" in op:
            check(op["requestBody"]["content"]["application/json"]["schema"])
    # 15 bodies plus availability windows and events
    assert len(seen) == 17


def test_security_is_global_except_for_public_endpoints() -> None:
    """The bearer API key guards the API; jwks, healthz, metrics and the doc are open."""
    assert DOC["security"] == [{"apiKey": []}]
    scheme = DOC["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, _, op in operations():
        if path in PUBLIC:
            assert op["security"] == [] and "401" not in op["responses"]
        elif path in JOIN_TOKEN:
            assert op["security"] == [{"joinToken": []}] and "401" in op["responses"]
        else:
            assert "security" not in op and "401" in op["responses"]


def test_errors_share_the_error_schema() -> None:
    """Every 4xx response is the shared Error shape and names its codes."""
    for _, _, op in operations():
        for status, response in op["responses"].items():
            if status.startswith("4"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}
                assert "`" in response["description"]
    assert_valid("Error", {"error": {"code": "slot_taken", "message": "m", "field": None}})


def test_conflict_codes_of_bookings_are_listed() -> None:
    """putBooking and reschedule name the 409 codes the service raises."""
    put = DOC["paths"]["/api/v1/bookings/{booking_id}"]["put"]["responses"]
    for code in ("booking_exists", "no_credits", "slot_taken"):
        assert code in put["409"]["description"]
    assert {"200", "201", "404", "422"} <= put.keys()
    move = DOC["paths"]["/api/v1/bookings/{booking_id}/reschedule"]["post"]["responses"]
    for code in ("not_modifiable", "booking_cancelled", "slot_taken"):
        assert code in move["409"]["description"]


def test_service_responses_match_their_schemas() -> None:
    """What service.py serialises validates against the documented response schemas."""
    assert_valid("Booking", booking_json(booking()))
    assert_valid("Booking", booking_json(booking(cancelled=True)))
    availability = tuple(w.to_json() for w in parse_availability(
        [{"weekday": 0, "start": "09:00", "end": "17:00"},
         {"weekday": 6, "start": "20:00", "end": "24:00"}]))
    assert_valid("Professional", professional_json(Professional(
        ProfessionalId("p-1"), "Dr A", "a@example.org", "Europe/Oslo", 50, 10, availability,
        STARTS)))
    assert_valid("Client", client_json(Client(ClientId("c-1"), "B", "b@example.org", "UTC",
                                              None, STARTS)))
    assert_valid("Credits", credits_json(CreditAccount(ClientId("c-1"), HubId("acme"), 3, 1)))
    assert_valid("Jwks", {"keys": [public_jwk(Ed25519PrivateKey.generate().public_key())]})


def test_signalling_rooms_match_their_schemas() -> None:
    """A room as signalling nodes get it, alone and in a batch with an unknown one, fits."""
    issuer = TokenIssuer(Ed25519PrivateKey.generate(), timedelta(minutes=15),
                         timedelta(minutes=15))
    for b in (booking(), booking(cancelled=True)):
        room = signalling_room_json(b, issuer.window(b))
        assert_valid("SignallingRoom", room)
        assert_valid("SignallingRooms", {"rooms": {"r-1": room, "r-unknown": None}})
    assert not validator("SignallingRooms").is_valid({"rooms": {"r-1": {"room_id": "r-1"}}})
    assert_valid("SignallingRoomsInput", {"room_ids": ["r-1", "r-2"]})
    assert not validator("SignallingRoomsInput").is_valid({"room_ids": []})
    assert not validator("SignallingRoomsInput").is_valid({"room_ids": ["r"] * 1001})


def test_jwks_documents_its_cache_lifetime() -> None:
    """The JWKS answer documents its Cache-Control header (signalling nodes cache by it)."""
    ok = DOC["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"]
    assert "max-age" in ok["headers"]["Cache-Control"]["description"]


def test_attendance_records_match_their_schema() -> None:
    """Pending and final records, with an override trail, fit AttendanceRecord."""
    windows = rules.Windows(timedelta(minutes=15), timedelta(minutes=20))
    events = [AttendanceEvent(EventId(f"e{i}"), BookingId("b-1"), role, kind, at)
              for i, (role, kind, at) in enumerate([
                  (Role.PROFESSIONAL, EventKind.JOINED, STARTS),
                  (Role.CLIENT, EventKind.JOINED, STARTS + timedelta(minutes=1)),
                  (Role.CLIENT, EventKind.MEDIA_CONNECTED, STARTS + timedelta(minutes=1)),
                  (Role.CLIENT, EventKind.LEFT, ENDS)])]
    events.append(AttendanceEvent(EventId("late"), BookingId("b-1"), Role.CLIENT,
                                  EventKind.RUNNING_LATE, STARTS, "5"))
    for now in (STARTS + timedelta(minutes=5), ENDS + timedelta(hours=1)):
        record = rules.evaluate(booking(), events, now, windows).to_json()
        record["overrides"] = [{"from": None, "to": "completed", "reason": "checked",
                                "by": "ops", "at": "2026-11-22T09:00:00Z"}]
        assert_valid("AttendanceRecord", record)
        assert record["notices"][0]["minutes"] == 5
    assert_valid("AttendancePage", {"items": [record], "next_cursor": None})


@pytest.mark.parametrize(("schema", "body", "allowed"), [
    ("ProfessionalInput", {"name": "Dr A", "email": "a@example.org", "timezone": "UTC",
                           "availability": [{"weekday": 1, "start": "08:30", "end": "24:00"}]},
     {"name", "email", "timezone", "session_minutes", "buffer_minutes", "slot_minutes",
      "cancellation_notice_hours", "availability"}),
    ("BookingInput", {"professional_id": "p-1", "client_id": "c-1",
                      "starts_at": "2026-11-21T10:00:00Z", "ends_at": "2026-11-21T10:50:00Z",
                      "funding": "private", "source": "direct"},
     {"professional_id", "client_id", "starts_at", "ends_at", "funding", "source"}),
    ("ClientInput", {"name": "B", "email": "b@example.org", "timezone": "UTC", "hub_id": None,
                     "hide_ip": True},
     {"name", "email", "timezone", "hub_id", "hide_ip"}),
    ("HubInput", {"clients_hide_ip": True}, {"clients_hide_ip"}),
    ("OverrideInput", {"outcome": "completed", "reason": "checked"},
     {"outcome", "reason", "by"}),
    ("RunningLateInput", {"minutes": 15}, {"minutes"}),
])
def test_request_schemas_agree_with_validation(schema: str, body: dict[str, Any],
                                               allowed: set[str]) -> None:
    """A body the service accepts validates; the same body plus an unknown field does not."""
    Body(body, allowed)
    assert set(resolve({"$ref": f"#/components/schemas/{schema}"})["properties"]) == allowed
    assert_valid(schema, body)
    assert not validator(schema).is_valid({**body, "surprise": 1})


def test_signalling_events_cannot_be_running_late() -> None:
    """AttendanceEvent (what signalling reports) has every kind but running_late."""
    event = {"event_id": "e-1", "booking_id": "b-1", "role": "client",
             "at": "2026-11-21T10:00:00Z"}
    assert_valid("AttendanceEvent", {**event, "kind": "joined"})
    assert not validator("AttendanceEvent").is_valid({**event, "kind": "running_late"})
    assert not validator("RunningLateInput").is_valid({"minutes": 7})
