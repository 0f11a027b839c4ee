"""Running the service: bind, start, print the ready line, and stop cleanly on SIGTERM.

Every start-up failure (port taken, database unreachable, demo impossible) is one line
on stderr, ``carecall: ...``, and a non-zero exit status, before the ready line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import signal
import socket
import sys

from aiohttp import web
from prometheus_client import CollectorRegistry

from booking_gate.app import setup_gate
from booking_gate.appkeys import SERVICE
from booking_gate.config import GateConfig
from booking_gate.db.engine import DatabaseError
from booking_gate.demo import DemoBooking, create_demo_booking
from booking_gate.errors import GateError
from booking_gate.lobby import no_ice_servers
from booking_gate.service import Clock, utc_now
from carecall.connections import DEFAULT_LIMITS, Limits
from carecall.listener import GuardedListener
from carecall.logs import loop_exception_handler
from carecall.wiring import InProcessGate
from signalling.app import setup_signalling
from signalling.config import SignallingConfig
from signalling.handler import is_trusted_proxy
from signalling.ice import IceConfig, ice_servers

logger = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket early, so port 0 resolves before the app is built."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def build_app(config: GateConfig, signalling: SignallingConfig | None = None, *,
              clock: Clock = utc_now, registry: CollectorRegistry | None = None,
              lobby_ice: IceConfig | None = None) -> web.Application:
    """One app with the gate, and signalling wired to it in-process when given.

    ``lobby_ice``: the STUN/TURN settings for the lobby's network check when the gate
    runs without signalling (``carecall gate``); with signalling, its own are used.
    """
    app = web.Application(client_max_size=256 * 1024)
    # One registry, so /metrics shows the gate's and signalling's metrics together.
    registry = registry or CollectorRegistry()
    # The lobby's network check gets the same STUN/TURN list as signalling's welcome.
    ice_config = signalling.ice if signalling is not None else lobby_ice
    ice = (functools.partial(ice_servers, ice_config) if ice_config is not None
           else no_ice_servers)
    setup_gate(app, config, clock=clock, registry=registry, ice_servers=ice)
    if signalling is not None:
        if not signalling.public_url:
            signalling = dataclasses.replace(signalling, public_url=config.public_url)
        setup_signalling(app, signalling, InProcessGate(app), clock=clock, registry=registry)
    return app


def _fail(message: str) -> int:
    print(f"carecall: {message}", file=sys.stderr, flush=True)
    return 1


def guarded(limits: Limits, registry: CollectorRegistry,
            trusted_proxies: tuple[str, ...]) -> GuardedListener:
    """The node's listener; asyncio's own errors logged privately from now on."""
    asyncio.get_running_loop().set_exception_handler(loop_exception_handler)
    return GuardedListener(limits, registry,
                           lambda address: is_trusted_proxy(address, trusted_proxies))


async def run(config: GateConfig, host: str, port: int, *,
              signalling: SignallingConfig | None = None, demo: bool = False,
              limits: Limits = DEFAULT_LIMITS, trusted_proxies: tuple[str, ...] = (),
              lobby_ice: IceConfig | None = None) -> int:
    """Serve the gate, and signalling beside it when ``signalling`` is given."""
    try:
        sock = bind(host, port)
    except OSError as error:
        return _fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
    bound = sock.getsockname()[1]
    origin = f"http://{host}:{bound}"
    if not config.public_url:
        config = dataclasses.replace(config, public_url=origin)
    registry = CollectorRegistry()
    app = build_app(config, signalling, registry=registry, lobby_ice=lobby_ice)
    listener = guarded(limits, registry, trusted_proxies)
    listener.install(app)
    runner = web.AppRunner(app, handle_signals=False, **listener.runner_options())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await runner.setup()
        except DatabaseError as error:
            return _fail(str(error))
        except OSError as error:  # a file the gate or signalling needs, unreadable
            logger.debug("start-up failed", exc_info=True)
            return _fail(f"cannot start: {error}")
        booking: DemoBooking | None = None
        if demo:
            try:
                booking = await create_demo_booking(app[SERVICE])
            except GateError as error:
                return _fail(f"--demo: {error.message}")
        await listener.start(runner, sock)
        print(f"carecall listening on {origin}", flush=True)
        if booking is not None:
            print(f"professional: {booking.professional}", flush=True)
            print(f"client: {booking.client}", flush=True)
            print(f"booking: {booking.booking_id}", flush=True)
        await stop.wait()
        logger.info("shutting down")
        return 0
    finally:
        await listener.stop()
        await runner.cleanup()
        sock.close()
