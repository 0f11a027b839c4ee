"""The ``/ws`` endpoint: a thin adapter from WebSocket frames to the room hub.

Order of a join: Origin allow-list (1008), ``hello`` within the time limit (4408, 4400,
1009), the token's key, signature and claims (4401), then admission (4403/4404/4410)
and ``welcome``.

Per-address limits slow down and refuse failed attempts only (docs/contract.md section 4):
an address has a budget of joins that fail before their token is shown to be the
gate's (malformed or late hello, missing, malformed or forged token). Once it is
spent, such joins wait ``rate_limited_delay`` and get 4429 instead of their reason. A
token the gate signed is never rate limited: it is admitted, or refused with its own
reason, whatever else its address sent. So the budget is checked only after the
hello is read and its signature verified: one Ed25519 check, well under a millisecond,
and garbage or an unknown ``kid`` fails before it. A gate-signed token that is refused
(cancelled, too early) cannot be a guess: it is told its reason and spends no budget.

Logs carry room and session ids only: never SDP, candidates, addresses, tokens or
credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import secrets
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from signalling import messages, resume
from signalling.appkeys import (
    ADMISSION,
    CLOCK,
    CONFIG,
    FAILED_JOINS,
    HUB,
    METRICS,
    RESUME_SECRET,
    WAITING,
)
from signalling.errors import (
    CloseCode,
    GateUnavailable,
    HelloTimeout,
    MessageTooBig,
    ProtocolError,
    RateLimited,
    RoomsUnavailable,
    SignallingError,
)
from signalling.gate import RoomBooking
from signalling.ice import ice_servers
from signalling.ratelimit import TokenBucket
from signalling.room import Role
from signalling.sockets import Connection

logger = logging.getLogger(__name__)

# How long a handler waits for the client to answer a close the server started.
CLOSE_HANDSHAKE_SECONDS = 5.0
# How long a refusal without ``wait_for_reply`` leaves the client to answer the close.
DROP_AFTER_SECONDS = 0.1


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


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """``CARECALL_TRUSTED_PROXIES`` entries as networks: an address (``10.0.0.2``, a
    network of one) or a CIDR network (``172.16.0.0/12``, host bits allowed, as in
    ``172.18.0.5/16``). Raises ValueError naming the first entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"CARECALL_TRUSTED_PROXIES: {entry!r} is neither an IP address "
                             f"nor a network (for example 10.0.0.2 or 172.16.0.0/12)"
                             ) from None
    return tuple(networks)


@functools.lru_cache(maxsize=8)
def _trusted_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    # An entry that is no address can never match a peer's address: it is left out here
    # (proxy_networks is the check that refuses it).
    found: list[IPNetwork] = []
    for entry in entries:
        with contextlib.suppress(ValueError):
            found.extend(proxy_networks((entry,)))
    return tuple(found)


def is_trusted_proxy(remote: str, entries: tuple[str, ...]) -> bool:
    """Whether the peer address ``remote`` lies in one of the trusted ``entries``."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False  # "unknown", or a Unix socket's peer: never a proxy
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.2 on a dual-stack socket
    return any(address in network for network in _trusted_networks(entries))


def client_address(request: web.Request) -> str:
    """The client's address for rate limits (never logged): behind a trusted proxy (an
    address or network of CARECALL_TRUSTED_PROXIES), the last address of
    X-Forwarded-For, which that proxy appended."""
    remote = request.remote or "unknown"
    if is_trusted_proxy(remote, request.app[CONFIG].trusted_proxies):
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return remote


class SignallingSocket(web.WebSocketResponse):
    """A server socket that says why before aiohttp's own 1009.

    aiohttp refuses a frame over ``max_msg_size`` by closing the socket itself, inside
    ``receive``; the contract wants the ``error`` message first, as for every refusal.
    """

    too_big = False  # this socket refused an oversized frame (sent the error, closed)

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"",
                    drain: bool = True) -> bool:
        if code == CloseCode.MESSAGE_TOO_BIG and not self.closed and not self.too_big:
            self.too_big = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send_str(messages.encode(
                    messages.error(MessageTooBig.default_code, messages.TOO_BIG)))
            message = message or MessageTooBig.default_code.encode()
        return await super().close(code=code, message=message, drain=drain)


async def _refuse(ws: web.WebSocketResponse, request: web.Request, code: CloseCode,
                  error_code: str, message: str, *, wait_for_reply: bool = True) -> None:
    """Send the error, then close with ``code``; without ``wait_for_reply`` the socket is
    dropped ``DROP_AFTER_SECONDS`` after the close frame, answered or not."""
    request.app[METRICS].refusals.labels(str(int(code))).inc()
    if not ws.closed:
        try:
            await ws.send_str(messages.encode(messages.error(error_code, message)))
            async with asyncio.timeout(None if wait_for_reply else DROP_AFTER_SECONDS):
                await ws.close(code=code, message=error_code.encode())
        except (ConnectionError, RuntimeError, TimeoutError):
            pass


class _Displaced(RateLimited):
    """Too many sockets of this address were waiting for their hello: the oldest goes."""


async def _receive_first(ws: SignallingSocket, limit: float,
                         displaced: asyncio.Future[None]) -> aiohttp.WSMessage:
    """The first frame, unless the limit passes or a newer socket displaces this one."""
    receive = asyncio.ensure_future(ws.receive())
    try:
        done, _ = await asyncio.wait((receive, displaced), timeout=limit,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receive
    if receive in done:
        return receive.result()
    if displaced in done:
        raise _Displaced("too many connections from this address are waiting to join")
    raise HelloTimeout(f"no hello within {limit:g} s")


async def _read_hello(request: web.Request, ws: SignallingSocket,
                      limit: float) -> messages.Hello | None:
    """The first message as a ``hello``, or None when the client left without one.

    While it waits, the socket counts against its address's waiting sockets."""
    waiting, metrics = request.app[WAITING], request.app[METRICS]
    address = client_address(request)
    displaced: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    victim = waiting.add(address, displaced)
    if isinstance(victim, asyncio.Future) and not victim.done():
        victim.set_result(None)
    metrics.waiting.set(len(waiting))
    try:
        msg = await _receive_first(ws, limit, displaced)
    finally:
        waiting.remove(address, displaced)
        metrics.waiting.set(len(waiting))
    if msg.type is WSMsgType.TEXT:
        parsed = messages.parse(msg.data)
        if not isinstance(parsed, messages.Hello):
            raise ProtocolError("'hello' must be the first message")
        return parsed
    if msg.type is WSMsgType.BINARY:
        raise ProtocolError("the first message must be a text hello")
    if ws.too_big:
        raise MessageTooBig(messages.TOO_BIG)  # already said and closed by the socket
    return None


async def _refuse_unproven(ws: SignallingSocket, request: web.Request, address: str,
                           error: SignallingError) -> None:
    """Refuse a join whose token was not shown to be the gate's, within the address's
    budget with its own reason, past it with 4429 after a short wait."""
    logger.info("join refused: %s", error.code)
    within_budget = request.app[FAILED_JOINS].take(address, time.monotonic())
    if within_budget or ws.closed:
        await _refuse(ws, request, error.close_code, error.code, error.message)
        return
    await asyncio.sleep(request.app[CONFIG].rate_limited_delay)
    await _refuse(ws, request, CloseCode.RATE_LIMITED, RateLimited.default_code,
                  "too many refused joins from this address; wait a minute")


def _where(error: BaseException) -> str:
    """Where ``error`` was raised, as ``file.py:123``: a log line with no data in it."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def transport_policy(role: Role, booking: RoomBooking) -> str:
    """``welcome``'s ``ice_transport_policy`` (the W3C ``RTCIceTransportPolicy``): "relay"
    for the client of a booking whose client hides their IP, else "all".

    Said even when no TURN server is configured: the page and the peer then refuse to
    connect rather than fall back to a direct path. The professional keeps "all": a
    client that gathers relay candidates only offers the professional nothing else.
    """
    if role is Role.CLIENT and booking.client_relay_only:
        return "relay"
    return "all"


async def ws_handler(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    # aiohttp refuses a frame of max_msg_size bytes or more: + 1 allows exactly 64 KiB.
    ws = SignallingSocket(heartbeat=config.heartbeat, compress=False,
                          max_msg_size=messages.MAX_MESSAGE_BYTES + 1)
    await ws.prepare(request)
    try:
        await _session(request, ws)
    except Exception as error:
        # One line, without the exception's text (it could quote what a client sent), and
        # never aiohttp's own "Error handling request from <address>".
        logger.error("unexpected error on /ws: %s at %s", type(error).__name__, _where(error))
        await _refuse(ws, request, CloseCode.INTERNAL_ERROR, "internal_error",
                      "something went wrong on the server; try again")
    return ws


async def _session(request: web.Request, ws: SignallingSocket) -> None:
    """One signalling connection, from the Origin check to its close."""
    metrics, clock = request.app[METRICS], request.app[CLOCK]
    config = request.app[CONFIG]
    if not origin_allowed(request):
        await _refuse(ws, request, CloseCode.POLICY_VIOLATION, "origin_not_allowed",
                      "this origin may not open the signalling socket")
        return
    admission = request.app[ADMISSION]
    try:
        hello = await _read_hello(request, ws, config.hello_timeout)
        if hello is None:
            return  # the client closed first: nothing was attempted
        claims = await admission.verify(hello.token)
    except _Displaced as error:
        # Said and closed at once: the socket's descriptor is wanted now, and its client
        # (if it is one) has shown no sign of life to wait for.
        logger.info("join refused: %s (too many waiting)", error.code)
        await _refuse(ws, request, error.close_code, error.code, error.message,
                      wait_for_reply=False)
        return
    except GateUnavailable as error:
        # Our failure, not the client's: it retries, and spends no budget doing so.
        logger.warning("join refused: the gate is unreachable")
        await _refuse(ws, request, error.close_code, error.code, error.message)
        return
    except SignallingError as error:
        await _refuse_unproven(ws, request, client_address(request), error)
        return
    try:
        # From here the token is the gate's: refusals name their reason, never 4429.
        admitted = await admission.admit(claims, request.query.get("room"), clock())
    except SignallingError as error:
        logger.info("join refused: %s", error.code)
        await _refuse(ws, request, error.close_code, error.code, error.message)
        return
    claims, booking = admitted.claims, admitted.booking
    secret = request.app[RESUME_SECRET]
    expiry = int(booking.closes_at.timestamp())
    continued = None
    if hello.resume:
        continued = resume.check(secret, hello.resume, claims.room, claims.role.value,
                                 int(clock().timestamp()))
    session_id = continued or secrets.token_urlsafe(12)
    hub = request.app[HUB]
    conn = Connection(hub.new_connection_id(), ws, claims.room, claims.role, booking,
                      session_id)
    welcome = {
        "type": "welcome", "role": claims.role.value, "session_id": session_id,
        "resume": resume.issue(secret, claims.room, claims.role.value, session_id, expiry),
        "ice_servers": ice_servers(config.ice, claims.room, claims.role.value, expiry),
        "ice_transport_policy": transport_policy(claims.role, booking),
        "booking": {"starts_at": messages.rfc3339(booking.starts_at),
                    "ends_at": messages.rfc3339(booking.ends_at)},
    }
    metrics.admissions.inc()
    logger.info("joined room %s as %s (session %s%s)", claims.room, claims.role.value,
                session_id, ", resumed" if continued else "")
    try:
        await hub.join(conn, hello.can_rollback, continued is not None, welcome)
    except RoomsUnavailable as error:
        logger.warning("join refused: the room store is unreachable")
        await _refuse(ws, request, error.close_code, error.code, error.message)
        return
    metrics.connections.inc()
    try:
        await _serve(conn, request)
    finally:
        metrics.connections.dec()
        if not conn.closed_by_server:
            try:
                await hub.drop(conn)
            except RoomsUnavailable:
                # The room store is away: it learns again when the node's sockets are
                # closed with 1001 once it is back (RoomHub.sweep).
                logger.warning("a drop in room %s could not be recorded", conn.room_id)
        await conn.closed(CLOSE_HANDSHAKE_SECONDS)
        logger.info("connection closed in room %s (session %s)", claims.room, session_id)


async def _serve(conn: Connection, request: web.Request) -> None:
    config, ws = request.app[CONFIG], conn.ws
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
        if not await _dispatch(conn, request, parsed):
            break
    if isinstance(ws, SignallingSocket) and ws.too_big:
        request.app[METRICS].refusals.labels(str(int(CloseCode.MESSAGE_TOO_BIG))).inc()


async def _dispatch(conn: Connection, request: web.Request,
                    parsed: messages.ClientMessage) -> bool:
    """Carry out one message of an admitted connection; False when the connection ends."""
    hub, ws = request.app[HUB], conn.ws
    try:
        match parsed:
            case messages.Signal() | messages.Extension():
                if not await hub.relay(conn, parsed.raw):
                    await conn.send(messages.error("peer_absent",
                                                   "the other party is not here"))
            case messages.Media():
                await hub.media(conn, parsed)
            case messages.Bye():
                conn.closed_by_server = True
                try:
                    await hub.bye(conn)
                finally:
                    await ws.close(code=1000, message=b"bye")
                return False
            case _:
                await _refuse(ws, request, CloseCode.MALFORMED, "malformed_message",
                              "'hello' may only be sent once")
                return False
    except RoomsUnavailable as error:
        # The connection stays open: media flows peer to peer, and the store comes back.
        await conn.send(messages.error(error.code, error.message))
    return True
