"""Relay saturation: relayed messages per second on one node, against a bare echo.

    python -m bench.saturation [--quick]

``ROOMS`` rooms with both parties present; each party keeps ``IN_FLIGHT`` ``x-load``
messages on their way to the other and sends a new one for each it receives (a closed
loop: the rate rises until the server is the limit, and no connection comes near its
50 messages a second). Two load processes hold half the rooms each. Counted: messages
received in ``SECONDS`` after a warm-up. Baseline: the same connections against the
bare aiohttp server, each echoing to itself (one message in, one out, as a relay).
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
from bench.report import Suite, at_least, ratio_at_least, table
from bench.wsload import RawSocket, connect, frame, hello, spawn

LOAD_PROCESSES = 2
IN_FLIGHT = 1
WARM_UP = 2.0
TARGET_PER_S = 20_000
MESSAGE = frame(b'{"type":"x-load","n":1}')


def saturate(ws_url: str, pairs: list[tuple[str, str]], first_index: int, seconds: float,
             echo: bool) -> dict[str, Any]:
    """Join every pair (or, with ``echo``, open one socket per token), then run the loop
    for ``WARM_UP + seconds``; how many messages arrived in the counted ``seconds``."""
    async def main() -> dict[str, Any]:
        counting = False
        received = 0

        def on_text(sock: RawSocket, payload: bytes) -> None:
            nonlocal received
            if sock.state is None:  # the welcome (or a peer-joined before the loop)
                return
            if counting:
                received += 1
            sock.state.send(MESSAGE)

        async def open_one(index: int, token: str) -> RawSocket:
            welcomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def first(sock: RawSocket, payload: bytes) -> None:
                if not welcomed.done():
                    welcomed.set_result(None) if b'"welcome"' in payload[:40] else \
                        welcomed.set_exception(RuntimeError(payload[:120].decode()))
                    sock.on_text = on_text

            sock = await connect(ws_url, first_index + index, first)
            sock.send(hello(token))
            await asyncio.wait_for(welcomed, 60)
            return sock

        sockets = []
        lanes = asyncio.Semaphore(64)

        async def open_pair(index: int, pair: tuple[str, str]) -> None:
            async with lanes:
                a = await open_one(2 * index, pair[0])
                b = await open_one(2 * index + 1, pair[1])
            a.state, b.state = (a, b) if echo else (b, a)  # whom to send to
            sockets.extend((a, b))

        await asyncio.gather(*(open_pair(i, p) for i, p in enumerate(pairs)))
        await asyncio.sleep(0.5)  # peer-joined delivered before the loop starts
        for sock in sockets:
            for _ in range(IN_FLIGHT):
                sock.state.send(MESSAGE)
        await asyncio.sleep(WARM_UP)
        counting = True
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        counting = False
        elapsed = time.perf_counter() - started
        closed = sum(1 for sock in sockets if sock.closed.done())
        for sock in sockets:
            sock.close()
        return {"received": received, "elapsed": elapsed, "closed": closed}

    return asyncio.run(main())


def measure(server_pid: int, ws_url: str, pairs: list[tuple[str, str]], seconds: float,
            echo: bool) -> dict[str, Any]:
    shares = [pairs[i::LOAD_PROCESSES] for i in range(LOAD_PROCESSES)]
    before = cpu_seconds(server_pid)
    results = spawn(saturate, [(ws_url, share, 2 * i * len(share), seconds, echo)
                               for i, share in enumerate(shares)])
    closed = sum(r["closed"] for r in results)
    if closed:
        raise RuntimeError(f"{closed} sockets were closed during the run")
    return {"per_s": sum(r["received"] / r["elapsed"] for r in results),
            "server_cpu_s": cpu_seconds(server_pid) - before,
            "load_cpu_s": sum(r["cpu"] for r in results)}


def run(quick: bool) -> Suite:
    rooms, seconds = (200, 4.0) if quick else (1000, 10.0)
    suite = Suite("relay saturation")
    with tempfile.TemporaryDirectory(prefix="carecall-bench-") as tmp:
        with embedded.bare(Path(tmp)) as server:
            fake = [(f"a{n}", f"b{n}") for n in range(rooms)]
            bare = measure(server.pid, server.ws_url, fake, seconds, echo=True)
        with embedded.serve(Path(tmp), name="saturation") as service:
            booked = embedded.seed(service.db_url, service.var_dir, rooms,
                                   embedded.top_of_hour())
            pairs = [(room["professional"], room["client"]) for room in booked]
            ours = measure(service.pid, service.ws_url, pairs, seconds, echo=False)
    suite.figures = [
        at_least("relayed messages per second", ours["per_s"], "msg/s", TARGET_PER_S),
        ratio_at_least("relayed messages per second vs bare echo", ours["per_s"], "msg/s",
                       bare["per_s"], "bare aiohttp echo", 0.7),
    ]
    suite.cpu_seconds = {"server": ours["server_cpu_s"], "load generators": ours["load_cpu_s"],
                         "bare server": bare["server_cpu_s"],
                         "load generators (bare)": bare["load_cpu_s"]}
    suite.details = {"rooms": rooms, "seconds": seconds, "in_flight_per_socket": IN_FLIGHT,
                     "carecall": ours, "bare": bare}
    return suite


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.saturation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(table([run(args.quick)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
