"""REST routes for signalling nodes that run apart from the gate (``carecall signalling``).

A node asks about the booking behind a room when a party joins, and about all its open
rooms at once when it revalidates them. Both take the API key, like the attendance
events the node reports (``POST /api/v1/attendance/events`` in ``api.py``).
"""

from __future__ import annotations

from aiohttp import web

from booking_gate.api import endpoint, json_response, read_json
from booking_gate.appkeys import SERVICE

routes = web.RouteTableDef()


@routes.get("/api/v1/signalling/rooms/{room_id}")
@endpoint("signalling_room")
async def signalling_room(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].signalling_room(
        request.match_info["room_id"]))


@routes.post("/api/v1/signalling/rooms")
@endpoint("signalling_rooms")
async def signalling_rooms(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await request.app[SERVICE].signalling_rooms(body))
