"""Signalling's aiohttp application: ``/ws``, the web client at ``/s/{room_id}``.

``setup_signalling`` mounts it on an app: ``carecall serve`` shares one app with the
gate, ``carecall signalling`` (a scale-out node) has one of its own. Background work
lives in ``cleanup_ctx``: the room registry (in this process, or Redis when
``redis_url`` is set), the attendance reporter, the upkeep sweep (grace periods, dead
nodes) and the revalidator that closes rooms whose booking was cancelled or moved, whose
party was erased (the booking names a pseudonym now), or whose window is over (within
``revalidate_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from signalling.admission import Admission
from signalling.appkeys import (
    ADMISSION,
    CLOCK,
    CONFIG,
    FAILED_JOINS,
    HUB,
    METRICS,
    REPORTER,
    RESUME_SECRET,
    WAITING,
)
from signalling.config import SignallingConfig
from signalling.errors import CloseCode, GateUnavailable
from signalling.gate import GateLink
from signalling.handler import ws_handler
from signalling.hub import RoomHub
from signalling.metrics import SignallingMetrics
from signalling.ratelimit import KeyedLimiter
from signalling.registry import MemoryRegistry, RoomRegistry
from signalling.reporter import AttendanceReporter
from signalling.spool import Spool
from signalling.waiting import WaitingJoins

logger = logging.getLogger(__name__)

LOCK_REASONS = {
    "booking_cancelled": "this booking was cancelled",
    "booking_rescheduled": "this booking was rescheduled; ask for a new link",
    # A party was erased at the gate: the booking names a pseudonym now.
    "not_a_party": "the join token is not for a party of this booking",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def default_web_client_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "web_client"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "carecall" / "web_client"


def load_resume_secret(var_dir: Path) -> bytes:
    path = var_dir / "resume_secret"
    if path.exists():
        return path.read_bytes()
    var_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


async def _every(interval: float, work: Callable[[], Awaitable[None]], what: str,
                 stop: asyncio.Event) -> None:
    """Run ``work`` every ``interval`` seconds until ``stop`` is set.

    Stopped by the event, not by cancelling: a client library that swallows a
    cancellation (redis-py's can, inside a command) would leave a cancelled loop running.
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
        if stop.is_set():
            return
        try:
            await work()
        except Exception:
            logger.exception("%s failed; continuing", what)


async def _finish(tasks: list[asyncio.Task[None]], timeout: float = 10.0) -> None:
    """Wait for stopping tasks; cancel (again, if need be) what has not ended in time."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(3):
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()
    if pending:
        logger.error("%d background tasks did not stop", len(pending))


def setup_signalling(app: web.Application, config: SignallingConfig, gate: GateLink, *,
                     clock: Callable[[], datetime] = _utc_now,
                     registry: CollectorRegistry | None = None) -> None:
    app[CONFIG] = config
    app[CLOCK] = clock
    app[METRICS] = SignallingMetrics(registry or CollectorRegistry())
    app[ADMISSION] = Admission(gate)
    app[FAILED_JOINS] = KeyedLimiter(config.failed_admissions_per_minute / 60.0,
                                     config.failed_admissions_burst)
    app[WAITING] = WaitingJoins(config.waiting_per_address)
    web_dir = config.web_client_dir or default_web_client_dir()

    async def page(request: web.Request) -> web.StreamResponse:
        # The token stays in the URL fragment: the server never sees it.
        return web.FileResponse(web_dir / "index.html", headers={
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; "
                                       "img-src 'self' data:; media-src 'self' blob:",
        })

    async def revalidate_assets(request: web.Request, response: web.StreamResponse) -> None:
        # The page's modules change with each release: browsers must check before reuse.
        if request.path.startswith("/s/assets/"):
            response.headers["Cache-Control"] = "no-cache"

    app.on_response_prepare.append(revalidate_assets)
    app.router.add_get("/ws", ws_handler)
    app.router.add_static("/s/assets/", web_dir, show_index=False)
    app.router.add_get("/s/{room_id}", page)

    async def lock_room(room_id: str, reason: str) -> None:
        await app[HUB].kick(room_id, CloseCode.FORBIDDEN, reason,
                            LOCK_REASONS.get(reason, "this room is locked"))

    async def revalidate() -> None:
        now = clock()
        opened = app[HUB].rooms()
        if not opened:
            return
        try:
            current = await gate.rooms([room_id for room_id, _ in opened])
        except GateUnavailable:
            logger.warning("the gate is unreachable: open rooms not revalidated this time")
            return
        for room_id, booking in opened:
            fresh = current.get(room_id)
            if fresh is None or fresh.cancelled:
                await lock_room(room_id, "booking_cancelled")
            elif fresh.changed_at != booking.changed_at:
                await lock_room(room_id, "booking_rescheduled")
            elif (fresh.professional_id, fresh.client_id) != (booking.professional_id,
                                                              booking.client_id):
                await lock_room(room_id, "not_a_party")
            elif now >= fresh.closes_at:
                await app[HUB].kick(room_id, CloseCode.OUTSIDE_WINDOW, "session_over",
                                    "this session is over")

    async def resources(app: web.Application) -> AsyncIterator[None]:
        app[RESUME_SECRET] = config.resume_secret or load_resume_secret(config.var_dir)
        rooms = await _registry(config)
        spool = Spool.in_var_dir(config.var_dir) if config.spool_attendance else None
        reporter = AttendanceReporter(gate, spool=spool)
        reporter.start()
        app[REPORTER] = reporter
        app[HUB] = hub = RoomHub(rooms, reporter, app[METRICS], clock)
        await rooms.start(hub.sockets.deliver)
        gate.on_room_locked(lock_room)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_every(config.sweep_interval, hub.sweep, "upkeep sweep", stop)),
            asyncio.create_task(_every(config.revalidate_interval, revalidate, "revalidation",
                                       stop)),
        ]
        yield
        stop.set()
        await _finish(tasks)
        await rooms.close()
        await reporter.close()
        await gate.close()

    async def going_away(app: web.Application) -> None:
        await app[HUB].shutdown()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(going_away)


async def _registry(config: SignallingConfig) -> RoomRegistry:
    if config.redis_url is None:
        return MemoryRegistry(config.grace)
    from signalling.registry_redis import RedisRegistry

    return await RedisRegistry.connect(config.redis_url, grace=config.grace,
                                       prefix=config.redis_prefix, node_ttl=config.node_ttl)


def make_app(config: SignallingConfig, gate: GateLink, *,
             clock: Callable[[], datetime] = _utc_now) -> web.Application:
    app = web.Application()
    setup_signalling(app, config, gate, clock=clock)
    return app
