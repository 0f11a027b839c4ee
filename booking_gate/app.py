"""The gate's aiohttp application: ``make_app(config)`` for the CLI and the tests.

``setup_gate`` mounts the gate on an existing application (``carecall serve`` puts the
gate and signalling on one app). Resources live in ``cleanup_ctx`` generators: the
database engine (migrated on start), the background finaliser, the mailer, when a
receiver is configured the webhook sender, and the retention purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from booking_gate.api import routes
from booking_gate.api_scheduling import routes as scheduling_routes
from booking_gate.api_signalling import routes as signalling_routes
from booking_gate.appkeys import (
    CALENDAR_SECRET,
    CONFIG,
    CREDIT_REQUESTS,
    INCALL,
    LOBBY,
    MAILER,
    METRICS,
    RETENTION,
    SERVICE,
    WEBHOOKS,
)
from booking_gate.config import GateConfig, load_or_create_secret
from booking_gate.credit_requests import CreditRequests
from booking_gate.db.engine import create_engine, migrate
from booking_gate.incall import InCall
from booking_gate.lobby import IceServers, Lobby, no_ice_servers
from booking_gate.mailer import Mailer
from booking_gate.metrics import GateMetrics
from booking_gate.retention import RetentionPurge
from booking_gate.rules import Windows
from booking_gate.service import Clock, GateService, utc_now
from booking_gate.store import Store
from booking_gate.tokens import TokenIssuer, load_or_create_key, load_public_keys
from booking_gate.webhook_sender import WebhookSender

logger = logging.getLogger(__name__)


def setup_gate(app: web.Application, config: GateConfig, *, clock: Clock = utc_now,
               registry: CollectorRegistry | None = None,
               ice_servers: IceServers = no_ice_servers) -> None:
    """Mount the gate on ``app``. ``ice_servers`` gives the lobby's network check the
    STUN/TURN list of signalling's ``welcome`` (``carecall serve`` injects signalling's;
    the gate alone has none to give)."""
    app[CONFIG] = config
    app[METRICS] = GateMetrics(registry or CollectorRegistry())
    # Before ``routes``: its last route catches every other /api/ path.
    app.add_routes(scheduling_routes)
    app.add_routes(signalling_routes)
    app.add_routes(routes)

    async def database(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(config.db_url)
        try:
            await migrate(engine)
            tokens = TokenIssuer(load_or_create_key(config.key_path), config.join_early,
                                 config.overrun, load_public_keys(config.retired_key_paths))
            store = Store(engine, webhooks=bool(config.webhook_url))
            app[SERVICE] = GateService(store, tokens, config.public_url,
                                       Windows(config.join_early, config.overrun), clock)
            app[SERVICE].webhook_url = config.webhook_url
            app[INCALL] = InCall(app[SERVICE])
            app[LOBBY] = Lobby(app[SERVICE], config.support_text, ice_servers)
            app[CALENDAR_SECRET] = load_or_create_secret(config.calendar_secret_path)
            app[CREDIT_REQUESTS] = CreditRequests(app[SERVICE])
            yield
        finally:
            if SERVICE in app:
                app[SERVICE].store.reader.close()
            await engine.dispose()

    async def finaliser(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_finalise_forever(app, config.finalize_interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Flush: settle whatever became due while we were running.
        await app[SERVICE].finalize_due()

    async def mailer(app: web.Application) -> AsyncIterator[None]:
        service = app[SERVICE]
        app[MAILER] = sender = Mailer(service.store, config, clock)
        service.mail_from = config.mail_from
        service.outbox_listeners.append(sender.wake)
        sender.start()
        yield
        await sender.close()  # bounded flush: what is left stays in the outbox

    async def webhook_sender(app: web.Application) -> AsyncIterator[None]:
        if not config.webhook_url:
            yield  # no receiver: no events are written, nothing to send
            return
        service = app[SERVICE]
        app[WEBHOOKS] = sender = WebhookSender(service.store, config, clock)
        service.outbox_listeners.append(sender.wake)
        sender.start()
        yield
        await sender.close()  # what is left stays in the outbox, for the next start

    async def retention(app: web.Application) -> AsyncIterator[None]:
        app[RETENTION] = purge = RetentionPurge(app[SERVICE].erasures, config.retention,
                                                clock, interval=config.retention_interval)
        purge.start()
        yield
        await purge.close()

    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(finaliser)
    app.cleanup_ctx.append(mailer)
    app.cleanup_ctx.append(webhook_sender)
    app.cleanup_ctx.append(retention)


async def _finalise_forever(app: web.Application, interval: float) -> None:
    while True:
        try:
            done = await app[SERVICE].finalize_due()
            if done:
                app[METRICS].finalized.inc(done)
                logger.info("finalised %d attendance records", done)
        except Exception:
            logger.exception("finalising attendance records failed; retrying")
        await asyncio.sleep(interval)


def make_app(config: GateConfig, *, clock: Clock = utc_now,
             ice_servers: IceServers = no_ice_servers) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    setup_gate(app, config, clock=clock, ice_servers=ice_servers)
    return app
