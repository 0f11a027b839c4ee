"""The listening socket of a node, guarded: connection caps, timeouts, capacity, metrics.

aiohttp's own server has no cap on connections, so a client that opens sockets and
never speaks holds file descriptors until the process runs out of them. Here every
accepted socket passes :class:`carecall.connections.ConnectionTable` first: over its
address's cap it evicts that address's oldest idle socket, or is refused; over the
node's cap it is refused. A refused socket is closed at once, before aiohttp builds
anything for it, so refusing costs an ``accept`` and a ``close``.

The node's cap is the file descriptor limit less a reserve for the database, Redis,
logs and outgoing HTTP: at start the soft ``RLIMIT_NOFILE`` is raised to the hard limit
and the resulting capacity is logged. aiohttp's keep-alive timer, which starts when a
socket is accepted and again after each response, is the header-read and idle timeout.

Metrics: ``carecall_http_connections_open``, ``carecall_http_connection_capacity``,
``carecall_http_connections_refused_total{reason}`` and
``carecall_event_loop_lag_seconds``. Logs name reasons and counts, never an address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from carecall.connections import ConnectionTable, Limits, Verdict

logger = logging.getLogger(__name__)

# File descriptors kept back from the connection cap: the database (a pool), Redis, the
# log and var files, outgoing webhook and SMTP connections, and asyncio's own.
MIN_RESERVE = 64
LAG_INTERVAL = 0.25


def raise_descriptor_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def capacity(descriptors: int, wanted: int | None) -> int:
    """How many connections a node with ``descriptors`` file descriptors may hold."""
    reserve = max(MIN_RESERVE, descriptors // 8)
    room = max(1, descriptors - reserve)
    return room if wanted is None else max(1, min(wanted, room))


class ConnectionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge("carecall_http_connections_open",
                          "TCP connections open on this node", registry=registry)
        self.capacity = Gauge("carecall_http_connection_capacity",
                              "Connections this node holds before refusing new ones",
                              registry=registry)
        self.refused = Counter(
            "carecall_http_connections_refused",
            "Connections closed on arrival (address_full, node_full) or to make room "
            "for a newer one from the same address (evicted_idle)",
            ["reason"], registry=registry)
        self.loop_lag = Histogram(
            "carecall_event_loop_lag_seconds",
            "How late the event loop ran a timer: time it could not serve anyone",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


def _peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return "local"  # a Unix socket: no address of its own


class _Guarded(asyncio.Protocol):
    """Sits between the event loop and aiohttp's protocol for one socket: asks the table
    first and builds aiohttp's handler only for an admitted connection."""

    __slots__ = ("_inner", "_listener", "transport")

    def __init__(self, listener: GuardedListener) -> None:
        self._listener = listener
        self._inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._listener.admit(self, _peer_address(transport)):
            self._inner = self._listener.protocol()
            self._inner.connection_made(transport)
        else:
            transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.closed(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)


class GuardedListener:
    """Serves an aiohttp app's runner on a bound socket through the connection table."""

    def __init__(self, limits: Limits, registry: CollectorRegistry,
                 is_proxy: Callable[[str], bool]) -> None:
        self.descriptors = raise_descriptor_limit()
        self.capacity = capacity(self.descriptors, limits.max_connections)
        self.limits = limits
        self.table = ConnectionTable(self.capacity, limits.max_per_address, is_proxy)
        self.metrics = ConnectionMetrics(registry)
        self.metrics.capacity.set(self.capacity)
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._lag_task: asyncio.Task[None] | None = None

    def runner_options(self) -> dict[str, Any]:
        """Keyword arguments for ``web.AppRunner``: the timeouts, and no logging of its own
        that could name a client (aiohttp's access log and its error lines)."""
        return {"access_log": None, "keepalive_timeout": self.limits.idle_timeout}

    def install(self, app: web.Application) -> None:
        """Mark each request's connection busy while the app handles it (before setup)."""
        app.middlewares.append(self._track)

    @web.middleware
    async def _track(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        transport = request.transport
        key = transport.get_protocol() if transport is not None else None
        if key is not None:
            self.table.request_started(key)
        started, status = time.perf_counter(), 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            if key is not None:
                self.table.request_ended(key)
            # The access log: method, route template (never the path's ids, the query or
            # the client), status and time; at DEBUG, as a socket's life can be long.
            logger.debug("%s %s %d %.1f ms", request.method, _route(request), status,
                         (time.perf_counter() - started) * 1000)

    def protocol(self) -> asyncio.Protocol:
        assert self._factory is not None
        return self._factory()

    def admit(self, conn: _Guarded, address: str) -> bool:
        decision = self.table.open(conn, address)
        match decision.verdict:
            case Verdict.REFUSE_ADDRESS | Verdict.REFUSE_NODE:
                self.metrics.refused.labels(decision.verdict.value).inc()
                logger.warning("connection refused: %s", decision.verdict.value)
                return False
            case Verdict.ADMIT_EVICTING:
                assert isinstance(decision.victim, _Guarded)
                self.metrics.refused.labels("evicted_idle").inc()
                logger.warning("idle connection closed: its address is at its cap")
                if decision.victim.transport is not None:
                    decision.victim.transport.abort()
        self.metrics.open.set(len(self.table))
        return True

    def closed(self, conn: _Guarded) -> None:
        self.table.close(conn)
        self.metrics.open.set(len(self.table))

    async def start(self, runner: web.AppRunner, sock: socket.socket) -> None:
        """Accept on ``sock`` for ``runner`` (already set up)."""
        server = runner.server
        assert server is not None, "runner.setup() first"
        self._factory = server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Guarded(self), sock=sock)
        self._lag_task = asyncio.create_task(watch_loop_lag(self.metrics.loop_lag))
        logger.info("this node holds up to %d connections, %d per address (file descriptor "
                    "limit %d)", self.capacity, self.limits.max_per_address,
                    self.descriptors)

    async def stop(self) -> None:
        """Stop accepting; the runner's cleanup then closes the open connections."""
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        if self._server is not None:
            self._server.close()


async def watch_loop_lag(histogram: Histogram, interval: float = LAG_INTERVAL) -> None:
    """Observe how late a timer fires: the time the loop was busy with something else."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(interval)
        lag = time.monotonic() - started - interval
        histogram.observe(max(0.0, lag))
        if lag > 0.5:
            logger.warning("the event loop stalled for %.1f s", lag)
