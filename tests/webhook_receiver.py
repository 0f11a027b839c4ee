"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1 that verifies every
delivery with the ``standardwebhooks`` library, as the booking system would."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import unused_port
from standardwebhooks import Webhook, WebhookVerificationError

from booking_gate.webhooks import new_secret

SECRET = new_secret()


@dataclass
class Received:
    webhook_id: str
    timestamp: int
    signatures: list[str]
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.body["data"]
        return data


@dataclass
class Receiver:
    """Answers ``status`` to every POST; keeps the verified deliveries it accepted.

    ``fresh``: check the timestamp against the real clock too (the library's 5-minute
    tolerance); off for a gate on a fake clock far from now, where only the signature is
    checked (with the library's own signing).
    """

    secrets: tuple[str, ...] = (SECRET,)
    status: int = 200
    fresh: bool = True
    port: int = field(default_factory=unused_port)
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    refused: list[str] = field(default_factory=list)  # webhook ids answered non-2xx
    invalid: list[str] = field(default_factory=list)  # webhook ids that did not verify
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def verify(self, secret: str, body: bytes, headers: dict[str, str]) -> Any:
        hook = Webhook(secret)
        if self.fresh:
            return hook.verify(body, headers)
        timestamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
        expected = hook.sign(headers["webhook-id"], timestamp, body.decode())
        if expected not in headers["webhook-signature"].split(" "):
            raise WebhookVerificationError("No matching signature found")
        return json.loads(body)

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            for secret in self.secrets:  # every configured secret must verify it
                self.verify(secret, body, headers)
        except (WebhookVerificationError, KeyError, ValueError):
            self.invalid.append(headers.get("webhook-id", "?"))
            return web.Response(status=400, text="bad signature")
        if not 200 <= self.status < 300:
            self.refused.append(headers["webhook-id"])
            return web.Response(status=self.status, text="not now")
        self.received.append(Received(headers["webhook-id"], int(headers["webhook-timestamp"]),
                                      headers["webhook-signature"].split(" "), json.loads(body)))
        self.arrived.set()
        return web.Response(status=204)

    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.received]

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.type == event_type]

    async def wait_for(self, count: int, timeout: float) -> None:
        """Until ``count`` deliveries were accepted, at most ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
