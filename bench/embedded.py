"""``carecall serve`` with many bookings, their join tokens, and the bare baselines.

Booking thousands of rooms through the REST API would take longer than the benchmarks
themselves (four requests a room), so ``seed`` writes professionals, clients and
bookings straight into the gate's database with the gate's own schema, in one
transaction, after ``carecall serve`` has created it; the join tokens are signed with
the signing key the service made in its var dir, exactly as the gate signs them
(``booking_gate.tokens.TokenIssuer``). Nothing the service caches is bypassed: it
reads a room's booking from the database at every join.

The bare servers are the ceilings for this stack: an aiohttp WebSocket server with
nothing of carecall in it, run as a process of its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.procs import API_KEY, Process

JOIN_EARLY = timedelta(hours=1)
OVERRUN = timedelta(minutes=15)
SERVICE_ENV = {
    "CARECALL_LOG_LEVEL": "WARNING",
    "CARECALL_JOIN_EARLY_SECONDS": str(int(JOIN_EARLY.total_seconds())),
    "CARECALL_OVERRUN_SECONDS": str(int(OVERRUN.total_seconds())),
}


@dataclass(frozen=True, slots=True)
class Service:
    url: str
    ws_url: str
    pid: int
    db_url: str
    var_dir: Path


@contextmanager
def profiled(pid: int, name: str) -> Iterator[None]:
    """With BENCH_PROFILE=DIR set, py-spy samples ``pid`` while the block runs and
    writes DIR/<name>-<pid>.txt (collapsed stacks: one line per stack and its count)."""
    folder = os.environ.get("BENCH_PROFILE")
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(folder) / f"{name}-{pid}.txt"
    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                            str(pid), "--format", "raw", "--output", str(out), "--threads",
                            "--nonblocking", "--rate", "200"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=5)
        print(f"profile of {name} written to {out}", file=sys.stderr)


@contextmanager
def serve(tmp: Path, env: dict[str, str] | None = None, name: str = "serve"
          ) -> Iterator[Service]:
    """``carecall serve`` on SQLite in ``tmp``, as a process."""
    var_dir = tmp / "var"
    db_url = f"sqlite:///{tmp / 'gate.db'}"
    proc = Process(["serve", "--port", "0", "--db", db_url, "--api-key", API_KEY,
                    "--var-dir", str(var_dir), "--log-level", "WARNING"],
                   tmp, {**SERVICE_ENV, **(env or {})})
    try:
        url = proc.ready()
        with profiled(proc.pid, name):
            yield Service(url, url.replace("http://", "ws://") + "/ws", proc.pid, db_url,
                          var_dir)
    finally:
        proc.stop()


Tokens = dict[str, str]  # role -> join token


async def _insert(db_url: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from booking_gate.db import schema as t

    url = db_url.replace("sqlite:///", "sqlite+aiosqlite:///").replace(
        "postgresql://", "postgresql+asyncpg://")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in ("professionals", "clients", "bookings"):
                for start in range(0, len(rows[table]), 5000):
                    await conn.execute(getattr(t, table).insert(),
                                       rows[table][start:start + 5000])
    finally:
        await engine.dispose()


def seed(db_url: str, var_dir: Path, count: int, starts_at: datetime,
         minutes: int = 50, prefix: str | None = None) -> list[Tokens]:
    """``count`` confirmed bookings starting at ``starts_at``, each with a professional and
    a client of its own; the two join tokens of each."""
    from booking_gate.model import (
        Booking,
        BookingId,
        BookingStatus,
        ClientId,
        Funding,
        ProfessionalId,
        Role,
        RoomId,
        Source,
    )
    from booking_gate.tokens import TokenIssuer, load_or_create_key

    prefix = prefix or secrets.token_hex(3)
    now = datetime.now(UTC).replace(microsecond=0)
    ends_at = starts_at + timedelta(minutes=minutes)
    rows: dict[str, list[dict[str, Any]]] = {"professionals": [], "clients": [], "bookings": []}
    bookings = []
    for number in range(count):
        pro, client = f"{prefix}-p{number}", f"{prefix}-c{number}"
        rows["professionals"].append({
            "professional_id": pro, "name": "Pro", "email": "pro@example.org",
            "timezone": "UTC", "session_minutes": minutes, "buffer_minutes": 10,
            "availability": "[]", "updated_at": now})
        rows["clients"].append({"client_id": client, "name": "Client",
                                "email": "client@example.org", "timezone": "UTC",
                                "hub_id": None, "updated_at": now})
        booking = Booking(BookingId(f"{prefix}-b{number}"), ProfessionalId(pro),
                          ClientId(client), None, starts_at, ends_at, Funding.PRIVATE,
                          Source.DIRECT, BookingStatus.CONFIRMED,
                          RoomId(secrets.token_urlsafe(16)), now, now)
        bookings.append(booking)
        rows["bookings"].append({
            "booking_id": booking.booking_id, "professional_id": pro, "client_id": client,
            "hub_id": None, "starts_at": starts_at, "ends_at": ends_at,
            "funding": "private", "source": "direct", "status": "confirmed",
            "room_id": booking.room_id, "created_at": now, "changed_at": now,
            "credit_state": "none"})
    asyncio.run(_insert(db_url, rows))
    issuer = TokenIssuer(load_or_create_key(var_dir / "signing_key.pem"), JOIN_EARLY, OVERRUN)
    return [{role.value: issuer.issue(booking, role, now).token
             for role in (Role.PROFESSIONAL, Role.CLIENT)} for booking in bookings]


def top_of_hour() -> datetime:
    """A start time whose join window is open now: a few minutes ahead, on the minute."""
    return (datetime.now(UTC) + timedelta(minutes=5)).replace(second=0, microsecond=0)


# -- the bare baseline: an aiohttp WebSocket server with nothing of carecall -------------

BARE = """
import asyncio, json, resource, sys
from aiohttp import web, WSMsgType

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
WELCOME = json.dumps({"type": "welcome", "role": "client", "session_id": "x" * 16})

async def ws(request):
    sock = web.WebSocketResponse(heartbeat=10.0, compress=False, max_msg_size=65537)
    await sock.prepare(request)
    first = True
    async for msg in sock:
        if msg.type is not WSMsgType.TEXT:
            break
        if first:  # the handshake: hello in, welcome out (the token is not checked)
            json.loads(msg.data)
            await sock.send_str(WELCOME)
            first = False
        else:  # echo: one message in, one out, as a relay does
            await sock.send_str(msg.data)
    return sock

async def main():
    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"carecall listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextmanager
def bare(tmp: Path) -> Iterator[Service]:
    """The bare aiohttp WebSocket server (hello → welcome, then echo), as a process."""
    script = tmp / "bare_server.py"
    script.write_text(BARE)
    proc = Process([], tmp, {}, argv=[sys.executable, str(script)])
    try:
        url = proc.ready()
        yield Service(url, url.replace("http://", "ws://") + "/ws", proc.pid, "", tmp)
    finally:
        proc.stop()
