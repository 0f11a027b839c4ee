"""Joins per second: connect, hello, welcome, close, with many clients at once.

    python -m bench.joins [--quick]

Every join uses a fresh token of a seeded booking (both parties of each booking join,
one after the other), from a source address of its own per 50 clients. Two load
processes keep ``CONCURRENCY`` joins in flight each. Baseline: the same handshake
against the bare aiohttp WebSocket server (``bench.embedded.bare``: hello in, welcome
out, no token check, no room, no database), the ceiling of this stack.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import embedded
from bench.procs import cpu_seconds
from bench.report import Figure, Suite, at_least, summary_ms, table
from bench.wsload import RawSocket, connect, hello, spawn

CONCURRENCY = 64
LOAD_PROCESSES = 2
TARGET_PER_S = 3000


def join_load(ws_url: str, tokens: list[str], first_index: int) -> dict[str, Any]:
    """Join once with each token, ``CONCURRENCY`` at a time; latencies and elapsed time."""
    async def main() -> dict[str, Any]:
        latencies: list[float] = []
        refused = 0
        sample = ""
        queue = iter(enumerate(tokens))

        async def one(index: int, token: str) -> None:
            nonlocal refused, sample
            answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            def on_text(_: RawSocket, payload: bytes) -> None:
                if not answer.done():
                    answer.set_result(payload)

            started = time.perf_counter()
            sock = await connect(ws_url, first_index + index, on_text)
            sock.send(hello(token))
            reply = await asyncio.wait_for(answer, 30)
            if reply.startswith(b'{"type":"welcome"') or b'"welcome"' in reply[:40]:
                latencies.append(time.perf_counter() - started)
            else:
                refused += 1
                sample = reply[:120].decode(errors="replace")
            sock.close()

        async def lane() -> None:
            for index, token in queue:
                await one(index, token)

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
        return {"latencies": latencies, "refused": refused, "sample": sample,
                "elapsed": time.perf_counter() - started}

    return asyncio.run(main())


def measure(server_pid: int, ws_url: str, tokens: list[str]) -> dict[str, Any]:
    shares = [tokens[i::LOAD_PROCESSES] for i in range(LOAD_PROCESSES)]
    before = cpu_seconds(server_pid)
    results = spawn(join_load, [(ws_url, share, i * len(share))
                                for i, share in enumerate(shares)])
    server_cpu = cpu_seconds(server_pid) - before
    latencies = [value for r in results for value in r["latencies"]]
    elapsed = max(r["elapsed"] for r in results)
    return {"joins": len(latencies), "refused": sum(r["refused"] for r in results),
            "refusal": next((r["sample"] for r in results if r["sample"]), ""),
            "per_s": len(latencies) / elapsed, "elapsed_s": elapsed,
            **summary_ms(latencies), "server_cpu_s": server_cpu,
            "load_cpu_s": sum(r["cpu"] for r in results)}


def run(quick: bool) -> Suite:
    count = 2000 if quick else 12000
    suite = Suite("joins")
    with tempfile.TemporaryDirectory(prefix="carecall-bench-") as tmp:
        with embedded.bare(Path(tmp)) as server:
            fake = [f"token-{n}" for n in range(count)]
            bare = measure(server.pid, server.ws_url, fake)
        with embedded.serve(Path(tmp)) as service:
            rooms = embedded.seed(service.db_url, service.var_dir, count // 2,
                                  embedded.top_of_hour())
            tokens = [room[role] for role in ("professional", "client") for room in rooms]
            ours = measure(service.pid, service.ws_url, tokens)
    if ours["refused"]:
        raise RuntimeError(f"{ours['refused']} joins were refused: {ours['refusal']}")
    suite.figures = [
        at_least("joins per second", ours["per_s"], "/s", TARGET_PER_S),
        Figure("joins per second vs bare", ours["per_s"], "/s", bare["per_s"],
               "bare aiohttp handshake"),
        Figure("join p50", ours["p50_ms"], "ms", bare["p50_ms"], "bare aiohttp handshake"),
        Figure("join p99", ours["p99_ms"], "ms", bare["p99_ms"], "bare aiohttp handshake"),
    ]
    suite.cpu_seconds = {"server": ours["server_cpu_s"], "load generators": ours["load_cpu_s"],
                         "bare server": bare["server_cpu_s"],
                         "load generators (bare)": bare["load_cpu_s"]}
    suite.details = {"carecall": ours, "bare": bare, "concurrency":
                     CONCURRENCY * LOAD_PROCESSES}
    return suite


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.joins", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(table([run(args.quick)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
