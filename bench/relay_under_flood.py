"""Relay latency of one room while another room's connection floods the server.

    python bench/relay_under_flood.py [--pings 200] [--flood-rate 1000]

Starts ``carecall serve``'s app in this process on 127.0.0.1 (SQLite in a temporary
directory), books two rooms through the gate API and connects both parties of each.
Room B's professional sends ``x-ping``, room B's client answers ``x-pong``; the round
trip is timed for ``--pings`` pings with no other load (the baseline), then again while
room A's professional floods at ``--flood-rate`` messages per second. The flooder runs
in a separate process, so the server's event loop carries only server work; it is
closed with 4429 once its burst is spent, and reconnects at once with a fresh connection
of the same role (which replaces the old one, 4409, if that one is still open) to keep
the load up for the whole measurement.

Prints median, p95, p99 and max round trip for both runs, their ratio, and how many
flood messages each flooding connection got relayed before 4429. Loopback only; the
whole run is bounded (well under a minute). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

API_KEY = "bench-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PING_RATE = 40.0  # per second: under the per-connection limit (50/s), so pings are never limited
PING_TIMEOUT = 2.0
WARM_UP = 20
TIME_LIMIT = 55.0


# -- the service, in this process ------------------------------------------------------


async def start_service(tmp: Path) -> tuple[Any, str]:
    from aiohttp import web

    from booking_gate.config import GateConfig
    from carecall.serve import build_app
    from signalling.config import SignallingConfig

    gate = GateConfig(db_url=f"sqlite:///{tmp / 'gate.db'}", public_url="", api_key=API_KEY,
                      var_dir=tmp / "var")
    app = build_app(gate, SignallingConfig(public_url="", var_dir=tmp / "var"))
    runner = web.AppRunner(app, access_log=None)  # as carecall serve runs it
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def api(session: aiohttp.ClientSession, method: str, path: str,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with session.request(method, path, headers=AUTH, json=body) as response:
        data: dict[str, Any] = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data}")
        return data


async def book_room(session: aiohttp.ClientSession, name: str) -> dict[str, str]:
    """A professional, a client with hub credit, a booking in progress; the join tokens."""
    await api(session, "PUT", f"/api/v1/professionals/pro-{name}", {
        "name": f"Pro {name}", "email": f"pro-{name}@example.org", "timezone": "UTC",
        "availability": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]})
    await api(session, "PUT", f"/api/v1/clients/cli-{name}", {
        "name": f"Client {name}", "email": f"cli-{name}@example.org", "timezone": "UTC",
        "hub_id": "bench"})
    await api(session, "POST", "/api/v1/hubs/bench/credits",
              {"client_id": f"cli-{name}", "credits": 1})
    start = datetime.now(UTC) - timedelta(minutes=1)
    await api(session, "PUT", f"/api/v1/bookings/b-{name}", {
        "professional_id": f"pro-{name}", "client_id": f"cli-{name}",
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=50)).isoformat(),
        "funding": "sponsored", "source": "hub"})
    links = await api(session, "POST", f"/api/v1/bookings/b-{name}/links")
    return {role: links[role]["url"].split("#t=")[1] for role in ("professional", "client")}


async def join(session: aiohttp.ClientSession, ws_url: str, token: str
               ) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(ws_url)
    await ws.send_json({"type": "hello", "token": token, "agent": "aiortc",
                        "can_rollback": False})
    msg = await ws.receive(timeout=5)
    welcome = json.loads(msg.data) if msg.type is aiohttp.WSMsgType.TEXT else {}
    if welcome.get("type") != "welcome":
        raise RuntimeError(f"join refused: {msg.data!r} (close {ws.close_code})")
    return ws


# -- the flooder, in another process ---------------------------------------------------


async def flood(ws_url: str, tokens: dict[str, str], rate: float, stop: Any,
                ready: Any) -> dict[str, Any]:
    """Flood room A as its professional, reconnecting after every close, until ``stop``."""
    relayed: Counter[int] = Counter()
    closes: list[tuple[int | None, float]] = []  # per connection: close code, seconds open
    sent = 0
    async with aiohttp.ClientSession() as session:
        receiver = await join(session, ws_url, tokens["client"])

        async def count() -> None:
            async for msg in receiver:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("type") == "x-flood":
                        relayed[data["conn"]] += 1

        counting = asyncio.create_task(count())
        started = time.perf_counter()
        connection = 0
        while not stop.is_set():
            connection += 1
            ws = await join(session, ws_url, tokens["professional"])
            ready.set()
            reading = asyncio.create_task(_read_until_closed(ws))
            opened = time.perf_counter()
            batch, n = max(1, round(rate / 100)), 0  # batches every 10 ms
            while not ws.closed and not stop.is_set():
                for _ in range(batch):
                    try:
                        await ws.send_str(f'{{"type":"x-flood","conn":{connection},"seq":{n}}}')
                    except (ConnectionError, RuntimeError):
                        break
                    n += 1
                due = opened + n / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if stop.is_set() and not ws.closed:
                await ws.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reading, 2)
            closes.append((ws.close_code, time.perf_counter() - opened))
            sent += n
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.2)  # let the last relayed messages arrive
        await receiver.close()
        await counting
    return {"sent": sent, "elapsed": elapsed,
            "connections": [{"code": code, "seconds": seconds, "relayed": relayed[i + 1]}
                            for i, (code, seconds) in enumerate(closes)]}


async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


def flood_process(ws_url: str, tokens: dict[str, str], rate: float, stop: Any, ready: Any,
                  results: Any) -> None:
    results.put(asyncio.run(flood(ws_url, tokens, rate, stop, ready)))


# -- the measurement -------------------------------------------------------------------


class Pinger:
    """Room B: the professional pings, the client pongs; round trips in seconds."""

    def __init__(self, pinger: aiohttp.ClientWebSocketResponse,
                 ponger: aiohttp.ClientWebSocketResponse) -> None:
        self.pinger, self.ponger = pinger, ponger
        self.waiting: dict[int, asyncio.Future[float]] = {}
        self.tasks = [asyncio.create_task(self._pong()), asyncio.create_task(self._collect())]

    async def _pong(self) -> None:
        async for msg in self.ponger:
            data = json.loads(msg.data)
            if data.get("type") == "x-ping":
                await self.ponger.send_json({"type": "x-pong", "seq": data["seq"]})

    async def _collect(self) -> None:
        async for msg in self.pinger:
            data = json.loads(msg.data)
            future = self.waiting.get(data.get("seq", -1))
            if data.get("type") == "x-pong" and future is not None and not future.done():
                future.set_result(time.perf_counter())

    async def run(self, count: int, first_seq: int) -> tuple[list[float], int]:
        rtts, lost = [], 0
        loop = asyncio.get_running_loop()
        begin = time.perf_counter()
        for i in range(count):
            seq = first_seq + i
            self.waiting[seq] = loop.create_future()
            sent = time.perf_counter()
            await self.pinger.send_json({"type": "x-ping", "seq": seq})
            try:
                rtts.append(await asyncio.wait_for(self.waiting[seq], PING_TIMEOUT) - sent)
            except TimeoutError:
                lost += 1
            del self.waiting[seq]
            await asyncio.sleep(max(0.0, begin + (i + 1) / PING_RATE - time.perf_counter()))
        return rtts, lost

    async def close(self) -> None:
        await self.pinger.close()
        await self.ponger.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(rtts: list[float]) -> dict[str, float]:
    return {"median": statistics.median(rtts) * 1000, "p95": percentile(rtts, 95) * 1000,
            "p99": percentile(rtts, 99) * 1000, "max": max(rtts) * 1000}


async def bench(pings: int, flood_rate: float) -> None:
    with tempfile.TemporaryDirectory(prefix="carecall-bench-") as tmp:
        runner, base = await start_service(Path(tmp))
        ws_url = base.replace("http://", "ws://") + "/ws"
        try:
            async with aiohttp.ClientSession(base_url=base) as session:
                room_a = await book_room(session, "a")
                room_b = await book_room(session, "b")
            async with aiohttp.ClientSession() as session:
                pinger = Pinger(await join(session, ws_url, room_b["professional"]),
                                await join(session, ws_url, room_b["client"]))
                await pinger.run(WARM_UP, 10 * pings)  # not counted: first-use costs
                baseline, baseline_lost = await pinger.run(pings, 0)

                context = multiprocessing.get_context("spawn")
                stop, ready, results = context.Event(), context.Event(), context.Queue()
                process = context.Process(target=flood_process, daemon=True, args=(
                    ws_url, room_a, flood_rate, stop, ready, results))
                process.start()
                try:
                    loop = asyncio.get_running_loop()
                    if not await loop.run_in_executor(None, ready.wait, 15):
                        raise RuntimeError("the flooder did not connect")
                    await asyncio.sleep(0.3)  # let the flood reach its pace
                    flooded, flooded_lost = await pinger.run(pings, pings)
                finally:
                    stop.set()
                report = await loop.run_in_executor(None, results.get, True, 10)
                await loop.run_in_executor(None, process.join, 5)
                await pinger.close()
        finally:
            await runner.cleanup()
    print_report(pings, flood_rate, baseline, baseline_lost, flooded, flooded_lost, report)


def print_report(pings: int, flood_rate: float, baseline: list[float], baseline_lost: int,
                 flooded: list[float], flooded_lost: int, report: dict[str, Any]) -> None:
    base, under = summary(baseline), summary(flooded)
    print(f"relay round trip in room B (x-ping -> x-pong), {pings} pings at "
          f"{PING_RATE:g}/s, loopback, service in-process")
    print(f"{'':14}{'median':>9}{'p95':>9}{'p99':>9}{'max':>9}   ms   lost")
    for name, row, lost in (("baseline", base, baseline_lost),
                            ("under flood", under, flooded_lost)):
        print(f"{name:14}" + "".join(f"{row[k]:9.2f}" for k in ("median", "p95", "p99", "max"))
              + f"   {'':4}{lost}")
    ratios = "".join(f"{under[k] / base[k]:9.2f}" for k in ("median", "p95", "p99", "max"))
    print(f"{'ratio':14}{ratios}   (flood/baseline)")
    connections = report["connections"]
    closed = Counter(str(c["code"]) for c in connections)
    print(f"flood from room A: {report['sent']} messages in {report['elapsed']:.1f} s "
          f"(~{report['sent'] / report['elapsed']:.0f}/s, target {flood_rate:g}/s) over "
          f"{len(connections)} connections; closes {dict(sorted(closed.items()))} "
          "(the last one closed by the bench)")
    limited = [c for c in connections if c["code"] == 4429]
    if not limited:
        print("no flooding connection was closed with 4429")
        return
    relayed = [c["relayed"] for c in limited]
    print(f"accepted (relayed) before 4429: first connection {relayed[0]}, per connection "
          f"median {statistics.median(relayed):.0f} (min {min(relayed)}, max {max(relayed)}); "
          f"time from welcome to 4429: median "
          f"{statistics.median(c['seconds'] for c in limited) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--flood-rate", type=float, default=1000.0)
    args = parser.parse_args()
    asyncio.run(asyncio.wait_for(bench(args.pings, args.flood_rate), TIME_LIMIT))


if __name__ == "__main__":
    main()
