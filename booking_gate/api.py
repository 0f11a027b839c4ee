"""The gate's REST API: thin aiohttp handlers around ``GateService``.

Each handler reads the request, calls one service method and writes JSON. Errors
become the contract's ``{"error": {...}}`` shape; anything unexpected is logged once
and answered 500 ``internal_error`` without details.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import boundedjson
from booking_gate import billing_csv
from booking_gate.appkeys import CALENDAR_SECRET, CONFIG, METRICS, SERVICE
from booking_gate.erasure import PartyKind
from booking_gate.errors import GateError, InvalidRequest, NotFound, Unauthorized
from booking_gate.openapi import openapi_document
from booking_gate.webhook_sender import refresh_metrics

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
JWKS_MAX_AGE = 300  # seconds
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def error_response(error: GateError) -> web.Response:
    return json_response(error.to_json(), status=error.status)


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise InvalidRequest(f"the body is larger than {MAX_BODY} bytes", code="body_too_large")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise InvalidRequest(f"the body is larger than {MAX_BODY} bytes", code="body_too_large")
    if optional and not raw.strip():
        return None
    try:
        return boundedjson.loads(raw, max_bytes=MAX_BODY)
    except boundedjson.JSONLimitError as error:
        raise InvalidRequest(f"the body is {error}", field=None) from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON", field=None) from None


def read_query(request: web.Request) -> dict[str, str]:
    """The query parameters, each at most once."""
    query: dict[str, str] = {}
    for key, value in request.query.items():
        if key in query:
            raise InvalidRequest(f"'{key}' is given more than once", field=key)
        query[key] = value
    return query


def check_api_key(request: web.Request) -> None:
    expected = request.app[CONFIG].api_key
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if (not expected or scheme.lower() != "bearer"
            or not hmac.compare_digest(given.strip().encode(), expected.encode())):
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")


def endpoint(route: str, *, authenticated: bool = True) -> Callable[[Handler], Handler]:
    """Wrap a handler with API-key auth, error mapping and metrics."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            metrics = request.app[METRICS]
            started = time.perf_counter()
            try:
                if authenticated:
                    check_api_key(request)
                response = await handler(request)
            except GateError as error:
                response = error_response(error)
            except Exception:
                logger.exception("unexpected error in %s", route)
                response = error_response(GateError("internal error"))
            metrics.requests.labels(route, str(response.status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - started)
            return response

        return wrapped

    return wrap


routes = web.RouteTableDef()


@routes.put("/api/v1/professionals/{professional_id}")
@endpoint("put_professional")
async def put_professional(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[SERVICE].put_professional(
        request.match_info["professional_id"], body))


@routes.post("/api/v1/professionals/{professional_id}/blocks")
@endpoint("add_block")
async def add_block(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[SERVICE].add_block(
        request.match_info["professional_id"], body), status=201)


@routes.delete("/api/v1/professionals/{professional_id}/blocks/{block_id}")
@endpoint("delete_block")
async def delete_block(request: web.Request) -> web.Response:
    await request.app[SERVICE].delete_block(request.match_info["professional_id"],
                                            request.match_info["block_id"])
    return web.Response(status=204)


@routes.put("/api/v1/clients/{client_id}")
@endpoint("put_client")
async def put_client(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[SERVICE].put_client(
        request.match_info["client_id"], body))


@routes.put("/api/v1/hubs/{hub_id}")
@endpoint("put_hub")
async def put_hub(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[SERVICE].put_hub(request.match_info["hub_id"], body))


@routes.get("/api/v1/hubs/{hub_id}")
@endpoint("get_hub")
async def get_hub(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].get_hub(request.match_info["hub_id"]))


@routes.delete("/api/v1/professionals/{professional_id}")
@endpoint("erase_professional")
async def erase_professional(request: web.Request) -> web.Response:
    await request.app[SERVICE].erase(PartyKind.PROFESSIONAL,
                                     request.match_info["professional_id"])
    return web.Response(status=204)


@routes.delete("/api/v1/clients/{client_id}")
@endpoint("erase_client")
async def erase_client(request: web.Request) -> web.Response:
    await request.app[SERVICE].erase(PartyKind.CLIENT, request.match_info["client_id"])
    return web.Response(status=204)


@routes.post("/api/v1/hubs/{hub_id}/credits")
@endpoint("grant_credits")
async def grant_credits(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[SERVICE].grant_credits(
        request.match_info["hub_id"], body))


@routes.get("/api/v1/clients/{client_id}/credits")
@endpoint("get_credits")
async def get_credits(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].get_credits(request.match_info["client_id"]))


@routes.put("/api/v1/bookings/{booking_id}")
@endpoint("put_booking")
async def put_booking(request: web.Request) -> web.Response:
    body = await read_json(request)
    booking, created = await request.app[SERVICE].put_booking(
        request.match_info["booking_id"], body)
    if created:
        request.app[METRICS].bookings_created.inc()
    return json_response(booking, status=201 if created else 200)


@routes.get("/api/v1/bookings")
@endpoint("list_bookings")
async def list_bookings(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].list_bookings(read_query(request)))


@routes.get("/api/v1/bookings/{booking_id}/cancellation-terms")
@endpoint("cancellation_terms")
async def cancellation_terms(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].cancellation_terms(
        request.match_info["booking_id"], read_query(request)))


@routes.get("/api/v1/bookings/{booking_id}")
@endpoint("get_booking")
async def get_booking(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].get_booking(request.match_info["booking_id"]))


@routes.post("/api/v1/bookings/{booking_id}/cancel")
@endpoint("cancel_booking")
async def cancel_booking(request: web.Request) -> web.Response:
    body = await read_json(request)
    booking = await request.app[SERVICE].cancel(request.match_info["booking_id"], body)
    request.app[METRICS].bookings_cancelled.inc()
    return json_response(booking)


@routes.post("/api/v1/bookings/{booking_id}/reschedule")
@endpoint("reschedule_booking")
async def reschedule_booking(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[SERVICE].reschedule(
        request.match_info["booking_id"], body))


@routes.post("/api/v1/bookings/{booking_id}/links")
@endpoint("booking_links")
async def booking_links(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].links(request.match_info["booking_id"]))


@routes.get("/api/v1/bookings/{booking_id}/attendance")
@endpoint("get_attendance")
async def get_attendance(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].attendance(
        request.match_info["booking_id"]))


@routes.post("/api/v1/bookings/{booking_id}/attendance/override")
@endpoint("override_attendance")
async def override_attendance(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[SERVICE].override(
        request.match_info["booking_id"], body, by="api-key"))


@routes.get("/api/v1/attendance")
@endpoint("export_attendance")
async def export_attendance(request: web.Request) -> web.StreamResponse:
    query = read_query(request)
    service = request.app[SERVICE]
    if not billing_csv.wants_csv(request.headers.get("Accept"), query.get("format")):
        return json_response(await service.export(query))
    export = service.export_query(query, csv=True)  # refused here, before any byte is sent
    response = web.StreamResponse(headers={
        "Content-Type": f"{billing_csv.CONTENT_TYPE}; charset=utf-8; header=present",
        "Content-Disposition": 'attachment; filename="attendance.csv"',
        "Cache-Control": "no-store"})
    await response.prepare(request)
    try:
        async for chunk in service.export_csv(export):
            await response.write(chunk)  # waits while the client is slower than the store
    except ConnectionError:
        return response  # the client went away
    except Exception as error:
        # The status is sent: cut the connection so the client sees a broken export,
        # never a short one that looks complete.
        logger.error("the CSV export failed mid-stream (%s)", type(error).__name__)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


@routes.post("/api/v1/attendance/events")
@endpoint("ingest_attendance")
async def ingest_attendance(request: web.Request) -> web.Response:
    body = await read_json(request)
    result = await request.app[SERVICE].ingest_json(body)
    request.app[METRICS].events_ingested.inc(result["stored"])
    return json_response(result)


# -- webhooks (booking_gate/webhook_sender.py) -------------------------------------------


@routes.get("/api/v1/webhooks")
@endpoint("webhook_status")
async def webhook_status(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].webhook_status())


@routes.post("/api/v1/webhooks/enable")
@endpoint("enable_webhooks")
async def enable_webhooks(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].enable_webhooks())


@routes.get("/api/v1/webhooks/deliveries")
@endpoint("webhook_deliveries")
async def webhook_deliveries(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].deliveries(read_query(request)))


@routes.post("/api/v1/webhooks/deliveries/{webhook_id}/retry")
@endpoint("retry_webhook")
async def retry_webhook(request: web.Request) -> web.Response:
    delivery = await request.app[SERVICE].retry_delivery(request.match_info["webhook_id"])
    return json_response(delivery, status=202)


@routes.get("/api/v1/openapi.json")
@endpoint("openapi", authenticated=False)
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[CONFIG].public_url))


@routes.get("/.well-known/jwks.json")
@endpoint("jwks", authenticated=False)
async def jwks(request: web.Request) -> web.Response:
    # The signing key first, then any retired key still accepted (a rotation). Nodes cache
    # it for max-age and refetch early only on a token naming a key they do not know.
    response = json_response(request.app[SERVICE].tokens.jwks)
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


@routes.get("/healthz")
@endpoint("healthz", authenticated=False)
async def healthz(request: web.Request) -> web.Response:
    await request.app[SERVICE].store.ping()
    return json_response({"status": "ok"})


@routes.get("/metrics")
@endpoint("metrics", authenticated=False)
async def metrics(request: web.Request) -> web.Response:
    if request.app[CONFIG].webhook_url:
        service = request.app[SERVICE]
        await refresh_metrics(service.store, request.app[METRICS], service.clock())
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- calendar feed (booking_gate/ics.py) ------------------------------------------------


@routes.get("/api/v1/professionals/{professional_id}/calendar-url")
@endpoint("calendar_url")
async def calendar_url(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].calendar_url(
        request.match_info["professional_id"], request.app[CALENDAR_SECRET]))


@routes.get("/api/v1/professionals/{professional_id}/calendar.ics")
@endpoint("calendar_feed", authenticated=False)
async def calendar_feed(request: web.Request) -> web.Response:
    """No API key: calendar apps subscribe with the URL alone; its ``key`` is the secret."""
    body = await request.app[SERVICE].calendar_feed(
        request.match_info["professional_id"], request.query.get("key"),
        request.app[CALENDAR_SECRET])
    return web.Response(body=body, content_type="text/calendar", charset="utf-8", headers={
        "Content-Disposition": 'inline; filename="carecall.ics"',
        "Cache-Control": "private, max-age=300", "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex"})


@routes.route("*", "/api/{tail:.*}")
@endpoint("unknown", authenticated=False)
async def unknown(request: web.Request) -> web.Response:
    raise NotFound(f"no such endpoint: {request.method} {request.path}"[:200])
