"""``carecall signalling``: a scale-out signalling node.

It serves ``/ws`` and the call page (``/s/``), shares rooms with the other nodes through
Redis, and reaches the gate over HTTP (``--gate-url``, the API key, the gate's JWKS).
Its own ``/healthz`` says whether Redis answers; ``/metrics`` shows its metrics.
SIGTERM drains it: every socket gets 1001 (the clients resume on another node), the
attendance events it holds are flushed to the gate or kept in its spool.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import RedisError

from carecall.connections import DEFAULT_LIMITS, Limits
from carecall.serve import bind, guarded
from signalling.app import setup_signalling
from signalling.appkeys import HUB, METRICS
from signalling.config import SignallingConfig
from signalling.errors import RoomsUnavailable
from signalling.gate_http import HttpGate

logger = logging.getLogger(__name__)


def build_node(config: SignallingConfig, gate_url: str, api_key: str, *,
               registry: CollectorRegistry | None = None) -> web.Application:
    """A signalling node's app: signalling over an HTTP gate link, health and metrics."""
    app = web.Application()
    registry = registry or CollectorRegistry()
    setup_signalling(app, config, HttpGate(gate_url, api_key), registry=registry)

    async def healthz(request: web.Request) -> web.Response:
        try:
            await request.app[HUB].registry.heartbeat()
        except RoomsUnavailable:
            return web.json_response({"status": "unavailable", "redis": "down"}, status=503)
        return web.json_response({"status": "ok"})

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(request.app[METRICS].registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def redacted(url: str) -> str:
    """``url`` without a password, for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _fail(message: str) -> int:
    print(f"carecall: {message}", file=sys.stderr, flush=True)
    return 1


async def run_node(config: SignallingConfig, gate_url: str, api_key: str, host: str,
                   port: int, *, limits: Limits = DEFAULT_LIMITS) -> int:
    """Serve a signalling node until SIGTERM or SIGINT."""
    try:
        sock = bind(host, port)
    except OSError as error:
        return _fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
    origin = f"http://{host}:{sock.getsockname()[1]}"
    registry = CollectorRegistry()
    app = build_node(config, gate_url, api_key, registry=registry)
    listener = guarded(limits, registry, config.trusted_proxies)
    listener.install(app)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10,
                           **listener.runner_options())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await runner.setup()
        except (RedisError, OSError) as error:
            return _fail(f"cannot use Redis at {redacted(config.redis_url or '')}: "
                         f"{error.__class__.__name__}")
        await listener.start(runner, sock)
        print(f"carecall listening on {origin}", flush=True)
        await stop.wait()
        logger.info("draining: closing every socket with 1001")
        return 0
    finally:
        await listener.stop()
        await runner.cleanup()
        sock.close()
