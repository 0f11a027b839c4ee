"""Scale-out: relay round trip and joins per second, one signalling node vs two.

    python -m bench.nodes [--rooms 50] [--joins 600] [--json PATH]

Starts the scale-out topology as processes: `carecall gate` on a fresh PostgreSQL
database and two `carecall signalling` nodes on Redis (a key prefix of this run's own).
The load generators run in separate processes, so the figures are about the servers;
their CPU time is reported beside the servers'.

1. Relay round trip: ``--rooms`` rooms, both parties connected; in each room the
   professional sends ``x-ping`` ten times a second and the client answers ``x-pong``.
   Baseline: both parties on node A (a relay stays in one process). Then: the
   professional on node A and the client on node B (every relay crosses Redis pub/sub).
2. Joins per second: ``--joins`` fresh join tokens, each used once (connect, hello,
   welcome, close), 64 in flight from each of two load processes. Baseline: every join
   on node A. Then: joins spread over nodes A and B.

Prints a table and, with ``--json``, writes the figures. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import (
    API_KEY,
    Process,
    cpu_seconds,
    postgres_database,
    redis_prefix_cleared,
    request,
)

PING_RATE = 10.0
RELAY_SECONDS = 10.0
JOIN_CONCURRENCY = 64
LOAD_PROCESSES = 2


@contextmanager
def topology(tmp: Path) -> Iterator[dict[str, Any]]:
    """A gate on PostgreSQL and two signalling nodes on Redis, as processes."""
    with postgres_database() as db_url, redis_prefix_cleared() as prefix:
        env = {"CARECALL_RESUME_SECRET": secrets.token_hex(32), "CARECALL_REDIS_PREFIX": prefix,
               "CARECALL_LOG_LEVEL": "WARNING", "CARECALL_JOIN_EARLY_SECONDS": "3600"}
        gate = Process(["gate", "--port", "0", "--db", db_url, "--api-key", API_KEY,
                        "--var-dir", str(tmp / "gate")], tmp, env)
        nodes: list[Process] = []
        try:
            gate_url = gate.ready()
            for index in range(2):
                nodes.append(Process(["signalling", "--port", "0", "--gate-url", gate_url,
                                      "--redis", "redis://127.0.0.1:6379/0", "--api-key",
                                      API_KEY, "--var-dir", str(tmp / f"node{index}")],
                                     tmp, env))
            node_urls = [node.ready() for node in nodes]
            yield {"gate": gate, "gate_url": gate_url, "nodes": nodes, "node_urls": node_urls}
        finally:
            for proc in (*nodes, gate):
                proc.stop()


def book_rooms(gate_url: str, count: int) -> list[dict[str, str]]:
    """``count`` bookings (one professional each, so none overlaps) and their tokens."""
    start = datetime.now(UTC) + timedelta(minutes=10)
    rooms = []
    for number in range(count):
        request("PUT", f"{gate_url}/api/v1/professionals/p{number}", {
            "name": "Pro", "email": "pro@example.org", "timezone": "UTC"})
        request("PUT", f"{gate_url}/api/v1/clients/c{number}", {
            "name": "Client", "email": "client@example.org", "timezone": "UTC", "hub_id": None})
        request("PUT", f"{gate_url}/api/v1/bookings/b{number}", {
            "professional_id": f"p{number}", "client_id": f"c{number}",
            "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=50)).isoformat(),
            "funding": "private", "source": "direct"})
        links = request("POST", f"{gate_url}/api/v1/bookings/b{number}/links")
        rooms.append({role: links[role]["url"].split("#t=")[1]
                      for role in ("professional", "client")})
    return rooms


# -- load generators (separate processes) -------------------------------------------------


async def _hello(session: aiohttp.ClientSession, url: str, token: str
                 ) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"{url}/ws", max_msg_size=0)
    await ws.send_str(json.dumps({"type": "hello", "token": token, "agent": "browser",
                                  "can_rollback": True}))
    while True:
        message = json.loads((await ws.receive(timeout=30)).data)
        if message["type"] == "welcome":
            return ws


async def _relay_room(session: aiohttp.ClientSession, urls: tuple[str, str],
                      tokens: dict[str, str], until: float, rtts: list[float]) -> None:
    pro = await _hello(session, urls[0], tokens["professional"])
    client = await _hello(session, urls[1], tokens["client"])

    async def answer() -> None:
        async for msg in client:
            data = json.loads(msg.data)
            if data.get("type") == "x-ping":
                await client.send_str(json.dumps({"type": "x-pong", "t": data["t"]}))

    answering = asyncio.create_task(answer())
    await asyncio.sleep(1.0)  # both present, peer-joined delivered
    sent: dict[int, float] = {}
    number = 0

    async def listen() -> None:
        async for msg in pro:
            data = json.loads(msg.data)
            if data.get("type") == "x-pong" and data["t"] in sent:
                rtts.append(time.perf_counter() - sent.pop(data["t"]))

    listening = asyncio.create_task(listen())
    while time.monotonic() < until:
        number += 1
        sent[number] = time.perf_counter()
        await pro.send_str(json.dumps({"type": "x-ping", "t": number}))
        await asyncio.sleep(1 / PING_RATE)
    await asyncio.sleep(0.5)
    for ws in (pro, client):
        await ws.send_str(json.dumps({"type": "bye"}))
        await ws.close()
    for task in (answering, listening):
        task.cancel()


def relay_worker(urls: tuple[str, str], rooms: list[dict[str, str]], seconds: float,
                 out: Any) -> None:
    async def main() -> list[float]:
        rtts: list[float] = []
        async with aiohttp.ClientSession() as session:
            until = time.monotonic() + seconds + 1.0
            await asyncio.gather(*(_relay_room(session, urls, room, until, rtts)
                                   for room in rooms))
        return rtts

    rtts = asyncio.run(main())
    usage = os.times()
    out.put({"rtts": rtts, "cpu": usage.user + usage.system})


def join_worker(urls: Sequence[str], tokens: list[str], out: Any) -> None:
    async def main() -> tuple[list[float], float]:
        latencies: list[float] = []
        semaphore = asyncio.Semaphore(JOIN_CONCURRENCY)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def one(index: int, token: str) -> None:
                async with semaphore:
                    started = time.perf_counter()
                    ws = await _hello(session, urls[index % len(urls)], token)
                    latencies.append(time.perf_counter() - started)
                    await ws.close()

            started = time.perf_counter()
            await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens)))
            return latencies, time.perf_counter() - started

    latencies, elapsed = asyncio.run(main())
    usage = os.times()
    out.put({"latencies": latencies, "elapsed": elapsed, "cpu": usage.user + usage.system})


def _spawn(target: Any, jobs: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=target, args=(*job, out)) for job in jobs]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    return results


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure_relay(top: dict[str, Any], rooms: list[dict[str, str]], across: bool
                  ) -> dict[str, Any]:
    a, b = top["node_urls"]
    urls = (a, b if across else a)
    before = [cpu_seconds(proc.pid) for proc in top["nodes"]]
    half = len(rooms) // 2
    results = _spawn(relay_worker, [(urls, rooms[:half], RELAY_SECONDS),
                                    (urls, rooms[half:], RELAY_SECONDS)])
    after = [cpu_seconds(proc.pid) for proc in top["nodes"]]
    rtts = [rtt for result in results for rtt in result["rtts"]]
    return {"pings": len(rtts), "p50_ms": statistics.median(rtts) * 1000,
            "p99_ms": _quantile(rtts, 0.99) * 1000,
            "node_cpu_s": [round(y - x, 2) for x, y in zip(before, after, strict=True)],
            "load_cpu_s": round(sum(r["cpu"] for r in results), 2)}


def measure_joins(top: dict[str, Any], tokens: list[str], spread: bool) -> dict[str, Any]:
    urls = top["node_urls"] if spread else top["node_urls"][:1]
    before = [cpu_seconds(proc.pid) for proc in (*top["nodes"], top["gate"])]
    shares = [tokens[i::LOAD_PROCESSES] for i in range(LOAD_PROCESSES)]
    results = _spawn(join_worker, [(urls, share) for share in shares])
    after = [cpu_seconds(proc.pid) for proc in (*top["nodes"], top["gate"])]
    latencies = [value for result in results for value in result["latencies"]]
    elapsed = max(result["elapsed"] for result in results)
    return {"joins": len(latencies), "joins_per_s": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": _quantile(latencies, 0.99) * 1000,
            "server_cpu_s": [round(y - x, 2) for x, y in zip(before, after, strict=True)],
            "load_cpu_s": round(sum(r["cpu"] for r in results), 2)}


def run(rooms: int, joins: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="carecall-bench-") as tmp, topology(Path(tmp)) as top:
        booked = book_rooms(top["gate_url"], rooms + joins // 2)
        relay_rooms, join_rooms = booked[:rooms], booked[rooms:]
        tokens = [room[role] for room in join_rooms for role in ("professional", "client")]
        half = len(tokens) // 2
        return {
            "relay_one_node": measure_relay(top, relay_rooms, across=False),
            "relay_two_nodes": measure_relay(top, relay_rooms, across=True),
            "joins_one_node": measure_joins(top, tokens[:half], spread=False),
            "joins_two_nodes": measure_joins(top, tokens[half:], spread=True),
        }


def table(figures: dict[str, Any]) -> str:
    one, two = figures["relay_one_node"], figures["relay_two_nodes"]
    j1, j2 = figures["joins_one_node"], figures["joins_two_nodes"]
    return "\n".join([
        "| figure | one node (baseline) | two nodes | ratio |",
        "|---|---|---|---|",
        f"| relay round trip p50 | {one['p50_ms']:.2f} ms | {two['p50_ms']:.2f} ms | "
        f"{two['p50_ms'] / one['p50_ms']:.2f}x |",
        f"| relay round trip p99 | {one['p99_ms']:.2f} ms | {two['p99_ms']:.2f} ms | "
        f"{two['p99_ms'] / one['p99_ms']:.2f}x |",
        f"| joins per second | {j1['joins_per_s']:.0f} | {j2['joins_per_s']:.0f} | "
        f"{j2['joins_per_s'] / j1['joins_per_s']:.2f}x |",
        f"| join p50 / p99 | {j1['p50_ms']:.1f} / {j1['p99_ms']:.1f} ms | "
        f"{j2['p50_ms']:.1f} / {j2['p99_ms']:.1f} ms | |",
        f"| server CPU during joins (nodes A, B, gate) | {j1['server_cpu_s']} s | "
        f"{j2['server_cpu_s']} s | |",
        f"| load generators' CPU during joins | {j1['load_cpu_s']} s | {j2['load_cpu_s']} s | |",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nodes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--joins", type=int, default=600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    figures = run(args.rooms, args.joins)
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

