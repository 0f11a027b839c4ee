"""REST routes for the lobby, in-call booking and credit requests (thin, like ``api.py``)."""

from __future__ import annotations

from aiohttp import web

from booking_gate.api import endpoint, json_response, read_json, read_query
from booking_gate.appkeys import CREDIT_REQUESTS, INCALL, LOBBY

routes = web.RouteTableDef()


@routes.get("/api/v1/rooms/{room_id}/session")
@endpoint("room_session", authenticated=False)  # a join token, checked by Lobby
async def room_session(request: web.Request) -> web.Response:
    return json_response(await request.app[LOBBY].session(
        request.match_info["room_id"], request.headers.get("Authorization")))


@routes.post("/api/v1/rooms/{room_id}/running-late")
@endpoint("running_late", authenticated=False)  # a join token, checked by Lobby
async def running_late(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[LOBBY].running_late(
        request.match_info["room_id"], request.headers.get("Authorization"), body), status=201)


@routes.get("/api/v1/rooms/{room_id}/next-slots")
@endpoint("next_slots", authenticated=False)  # a join token, checked by InCall
async def next_slots(request: web.Request) -> web.Response:
    return json_response(await request.app[INCALL].next_slots(
        request.match_info["room_id"], request.headers.get("Authorization"), read_query(request)))


@routes.post("/api/v1/rooms/{room_id}/next-booking")
@endpoint("next_booking", authenticated=False)  # a join token, checked by InCall
async def next_booking(request: web.Request) -> web.Response:
    body = await read_json(request)
    booking, created = await request.app[INCALL].next_booking(
        request.match_info["room_id"], request.headers.get("Authorization"), body)
    return json_response(booking, status=201 if created else 200)


@routes.post("/api/v1/hubs/{hub_id}/credit-requests")
@endpoint("create_credit_request")
async def create_credit_request(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[CREDIT_REQUESTS].create(
        request.match_info["hub_id"], body), status=201)


@routes.get("/api/v1/hubs/{hub_id}/credit-requests")
@endpoint("list_credit_requests")
async def list_credit_requests(request: web.Request) -> web.Response:
    return json_response(await request.app[CREDIT_REQUESTS].list(
        request.match_info["hub_id"], read_query(request)))


@routes.post("/api/v1/hubs/{hub_id}/credit-requests/{request_id}/approve")
@endpoint("approve_credit_request")
async def approve_credit_request(request: web.Request) -> web.Response:
    body = await read_json(request, optional=True)
    return json_response(await request.app[CREDIT_REQUESTS].decide(
        request.match_info["hub_id"], request.match_info["request_id"], body, approve=True))


@routes.post("/api/v1/hubs/{hub_id}/credit-requests/{request_id}/decline")
@endpoint("decline_credit_request")
async def decline_credit_request(request: web.Request) -> web.Response:
    body = await read_json(request, optional=True)
    return json_response(await request.app[CREDIT_REQUESTS].decide(
        request.match_info["hub_id"], request.match_info["request_id"], body, approve=False))


@routes.get("/api/v1/clients/{client_id}/credits/history")
@endpoint("credit_history")
async def credit_history(request: web.Request) -> web.Response:
    return json_response(await request.app[CREDIT_REQUESTS].history(
        request.match_info["client_id"]))
