"""The ``/ws`` endpoint: a thin adapter from WebSocket frames to the room hub.

Order of a join: Origin allow-list (1008), failed-admission budget of the address
(4429), ``hello`` within the time limit (4408/4400), admission (4401/4403/4404/4410),
then ``welcome``. Logs carry room and session ids only: never SDP, candidates,
addresses, tokens or credentials.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from signalling import messages, resume
from signalling.appkeys import (
    ADMISSION,
    CLOCK,
    CONFIG,
    FAILED_JOINS,
    HUB,
    METRICS,
    RESUME_SECRET,
)
from signalling.errors import (
    CloseCode,
    HelloTimeout,
    ProtocolError,
    RateLimited,
    SignallingError,
)
from signalling.hub import Connection
from signalling.ice import ice_servers
from signalling.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

_connection_ids = itertools.count(1)


def origin_allowed(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: the token alone authenticates
    config = request.app[CONFIG]
    if "*" in config.extra_origins or origin in config.extra_origins:
        return True
    public = urlsplit(config.public_url)
    if origin == f"{public.scheme}://{public.netloc}":
        return True
    host = urlsplit(origin).hostname
    return host in ("localhost", "127.0.0.1", "::1")


def client_address(request: web.Request) -> str:
    """The client's address for rate limits (never logged): behind a trusted proxy, the
    last address of X-Forwarded-For, which that proxy appended."""
    remote = request.remote or "unknown"
    if remote in request.app[CONFIG].trusted_proxies:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return remote


async def _refuse(ws: web.WebSocketResponse, request: web.Request, code: CloseCode,
                  error_code: str, message: str) -> None:
    request.app[METRICS].refusals.labels(str(int(code))).inc()
    if not ws.closed:
        try:
            await ws.send_str(messages.encode(messages.error(error_code, message)))
            await ws.close(code=code, message=error_code.encode())
        except (ConnectionError, RuntimeError):
            pass


async def _read_hello(ws: web.WebSocketResponse, limit: float) -> messages.Hello:
    try:
        msg = await asyncio.wait_for(ws.receive(), limit)
    except TimeoutError:
        raise HelloTimeout(f"no hello within {limit:g} s") from None
    if msg.type is not WSMsgType.TEXT:
        raise ProtocolError("the first message must be a text hello")
    parsed = messages.parse(msg.data)
    if not isinstance(parsed, messages.Hello):
        raise ProtocolError("'hello' must be the first message")
    return parsed


async def ws_handler(request: web.Request) -> web.StreamResponse:
    config, metrics, clock = request.app[CONFIG], request.app[METRICS], request.app[CLOCK]
    ws = web.WebSocketResponse(heartbeat=config.heartbeat, compress=False,
                               max_msg_size=messages.MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    if not origin_allowed(request):
        await _refuse(ws, request, CloseCode.POLICY_VIOLATION, "origin_not_allowed",
                      "this origin may not open the signalling socket")
        return ws
    address = client_address(request)
    failed = request.app[FAILED_JOINS]
    if not failed.allowed(address, time.monotonic()):
        await _refuse(ws, request, CloseCode.RATE_LIMITED, "rate_limited",
                      "too many refused joins from this address; wait a minute")
        return ws
    try:
        hello = await _read_hello(ws, config.hello_timeout)
        admitted = await request.app[ADMISSION].admit(hello.token, request.query.get("room"),
                                                      clock())
    except SignallingError as error:
        if ws.close_code is None:
            failed.spend(address, time.monotonic())
        logger.info("join refused: %s", error.code)
        await _refuse(ws, request, error.close_code, error.code, error.message)
        return ws
    claims, booking = admitted.claims, admitted.booking
    secret = request.app[RESUME_SECRET]
    expiry = int(booking.closes_at.timestamp())
    continued = None
    if hello.resume:
        continued = resume.check(secret, hello.resume, claims.room, claims.role.value,
                                 int(clock().timestamp()))
    session_id = continued or secrets.token_urlsafe(12)
    conn = Connection(next(_connection_ids), ws, claims.room, claims.role, booking, session_id)
    welcome = {
        "type": "welcome", "role": claims.role.value, "session_id": session_id,
        "resume": resume.issue(secret, claims.room, claims.role.value, session_id, expiry),
        "ice_servers": ice_servers(config.ice, claims.room, claims.role.value, expiry),
        "booking": {"starts_at": messages.rfc3339(booking.starts_at),
                    "ends_at": messages.rfc3339(booking.ends_at)},
    }
    hub = request.app[HUB]
    metrics.admissions.inc()
    metrics.connections.inc()
    logger.info("joined room %s as %s (session %s%s)", claims.room, claims.role.value,
                session_id, ", resumed" if continued else "")
    await hub.join(conn, hello.can_rollback, continued is not None, welcome)
    try:
        await _serve(conn, request)
    finally:
        metrics.connections.dec()
        if not conn.closed_by_server:
            await hub.drop(conn)
        logger.info("connection closed in room %s (session %s)", claims.room, session_id)
    return ws


async def _serve(conn: Connection, request: web.Request) -> None:
    config, hub, ws = request.app[CONFIG], request.app[HUB], conn.ws
    bucket = TokenBucket(config.message_rate, config.message_burst)
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            if msg.type is WSMsgType.BINARY:
                await _refuse(ws, request, CloseCode.MALFORMED, "malformed_message",
                              "frames must be text")
            break
        try:
            if not bucket.take(time.monotonic()):
                raise RateLimited("too many messages; slow down")
            parsed = messages.parse(msg.data)
        except SignallingError as error:
            logger.info("closing session %s: %s", conn.session_id, error.code)
            await _refuse(ws, request, error.close_code, error.code, error.message)
            break
        if isinstance(parsed, messages.Signal | messages.Extension):
            if not await hub.relay(conn, parsed.raw):
                await conn.send(messages.error("peer_absent", "the other party is not here"))
        elif isinstance(parsed, messages.Media):
            await hub.media(conn, parsed.connected)
        elif isinstance(parsed, messages.Bye):
            await hub.bye(conn)
            conn.closed_by_server = True
            await ws.close(code=1000, message=b"bye")
            break
        else:
            await _refuse(ws, request, CloseCode.MALFORMED, "malformed_message",
                          "'hello' may only be sent once")
            break
    if ws.close_code == CloseCode.MESSAGE_TOO_BIG:
        request.app[METRICS].refusals.labels("1009").inc()
