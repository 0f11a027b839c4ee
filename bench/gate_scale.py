"""Suite 6, the gate at scale: request latency with 1,000,000 bookings in PostgreSQL.

    python -m bench.gate_scale [--quick] [--bookings N]

For each of two databases, a small one (1,000 bookings: the baseline) and a large one
(1,000,000; 20,000 with ``--quick``), it starts one ``carecall gate`` on a fresh
PostgreSQL database, loads it with ``bench.seed`` and then measures from a separate
load-generator process, over HTTP, one request at a time:

- the attendance export, a page of 100: the first page of a past month, and a page
  from the middle of it (through a cursor);
- ``next-slots`` (14 days) and ``next-booking`` in a call, with the professional's
  join token of a booking starting now;
- booking PUT, new bookings (201) and the same PUT repeated (200), and GET of a
  booking as a reference;

and, in this process, the finaliser's ``Store.due_for_finalization`` query. Figures
are p50 and p99 of the large database beside the small one's. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import seed
from bench.procs import API_KEY, REPO, Process, cpu_seconds, postgres_database
from bench.report import Figure, Suite, at_most, summary_ms, table

SMALL = 1_000
TARGETS_MS = {"export first page": 20.0, "export mid-month page": 20.0, "next-slots": 20.0,
              "next-booking": 30.0, "booking PUT (new)": 20.0, "booking PUT (repeat)": 20.0}
REFERENCE = ("booking GET",)
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cursor(starts_at: datetime, booking_id: str) -> str:
    """The export's cursor (``service._encode_cursor``): a position to resume after."""
    raw = json.dumps([_time(starts_at), booking_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- the load generator (a process of its own) ---------------------------------------------


async def _load(url: str, bookings: int, professionals: int, samples: int
                ) -> dict[str, list[float]]:
    import aiohttp

    found: dict[str, list[float]] = {}
    rng = random.Random(6)
    now = datetime.now(UTC)
    async with aiohttp.ClientSession(url) as http:

        async def call(name: str | None, method: str, path: str, body: Any = None,
                       headers: dict[str, str] | None = None, expect: tuple[int, ...] = (200,)
                       ) -> Any:
            began = time.perf_counter()
            async with http.request(method, path, json=body,
                                    headers=headers or AUTH) as response:
                data = await response.json()
                if response.status not in expect:
                    raise RuntimeError(f"{method} {path.split('?')[0]}: {response.status} "
                                       f"{data.get('error', {}).get('code')}")
            if name is not None:
                found.setdefault(name, []).append(time.perf_counter() - began)
            return data

        # Rooms of bookings starting now (the seed keeps three hours around now free),
        # each with its professional's join token.
        rooms = []
        for k in range(min(20, professionals)):
            pid = seed.professional_id(k * professionals // min(20, professionals))
            bid = f"call-{k}"
            await call(None, "PUT", f"/api/v1/bookings/{bid}", {
                "professional_id": pid, "client_id": seed.client_id(2 * k + 1),
                "starts_at": _time(now + timedelta(minutes=5)),
                "ends_at": _time(now + timedelta(minutes=55)), "funding": "private",
                "source": "direct"}, expect=(200, 201))
            links = await call(None, "POST", f"/api/v1/bookings/{bid}/links")
            link = links["professional"]["url"]
            room = link.split("/s/", 1)[1].split("#", 1)[0]
            rooms.append((room, {"Authorization": f"Bearer {link.split('#t=', 1)[1]}"}))

        month = (now - timedelta(days=120)).replace(day=1, hour=0, minute=0, second=0,
                                                    microsecond=0)
        month_end = (month + timedelta(days=32)).replace(day=1)
        export = f"/api/v1/attendance?from={_time(month)}&to={_time(month_end)}&limit=100"
        middle = f"{export}&cursor={_cursor(month + timedelta(days=15), '0')}"
        warm = max(5, samples // 20)
        for n in range(warm + samples):
            name = None if n < warm else "export first page"
            page = await call(name, "GET", export)
            assert len(page["items"]) == 100 or bookings < 50_000
            await call(None if n < warm else "export mid-month page", "GET", middle)
            room, token = rooms[n % len(rooms)]
            await call(None if n < warm else "next-slots", "GET",
                       f"/api/v1/rooms/{room}/next-slots?days=14", headers=token)
            await call(None if n < warm else "booking GET", "GET",
                       f"/api/v1/bookings/bkg-{rng.randrange(1, bookings + 1):07d}")

        # next-booking: each room books its free slots in turn.
        free = {}
        for room, token in rooms:
            slots = (await call(None, "GET", f"/api/v1/rooms/{room}/next-slots?days=60",
                                headers=token))["slots"]
            free[room] = [s["starts_at"] for s in slots]
        for n in range(samples):
            room, token = rooms[n % len(rooms)]
            await call("next-booking", "POST", f"/api/v1/rooms/{room}/next-booking",
                       {"starts_at": free[room].pop(0), "idempotency_key": f"nb-{n}"},
                       headers=token, expect=(201,))

        # New bookings, 100 days out at distinct hours (no overlap whatever the seed drew),
        # then each PUT again unchanged.
        far = (now + timedelta(days=100)).replace(minute=0, second=0, microsecond=0)
        bodies = []
        for n in range(samples):
            starts = far + timedelta(hours=n)
            bodies.append((f"put-{n}", {
                "professional_id": seed.professional_id(rng.randrange(professionals)),
                "client_id": seed.client_id(2 * rng.randrange(professionals) + 1),
                "starts_at": _time(starts), "ends_at": _time(starts + seed.SESSION),
                "funding": "private", "source": "direct"}))
        for bid, body in bodies:
            await call("booking PUT (new)", "PUT", f"/api/v1/bookings/{bid}", body,
                       expect=(201,))
        for bid, body in bodies:
            await call("booking PUT (repeat)", "PUT", f"/api/v1/bookings/{bid}", body)
    return found


def _load_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("bookings", type=int)
    parser.add_argument("professionals", type=int)
    parser.add_argument("samples", type=int)
    args = parser.parse_args(argv)
    found = asyncio.run(_load(args.url, args.bookings, args.professionals, args.samples))
    used = os.times()
    print(json.dumps({"seconds": found, "cpu": used.user + used.system}))


# -- the run ---------------------------------------------------------------------------------


async def _due_query_ms(url: str, repeat: int) -> list[float]:
    """How long the finaliser's query takes (``Store.due_for_finalization``)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from booking_gate.db.engine import async_url
    from booking_gate.store import Store

    engine = create_async_engine(async_url(url))
    try:
        store = Store(engine)
        took = []
        for _ in range(repeat + 1):
            began = time.perf_counter()
            await store.due_for_finalization(datetime.now(UTC), limit=500)
            took.append(time.perf_counter() - began)
        return took[1:]  # the first one opens the connection
    finally:
        await engine.dispose()


def measure(bookings: int, samples: int) -> dict[str, Any]:
    """Seed a fresh database with ``bookings`` and measure it, with one gate running."""
    professionals = max(10, bookings // 100)
    with postgres_database() as url, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gate = Process(["gate", "--port", "0", "--db", url, "--api-key", API_KEY,
                        "--var-dir", str(root / "var"), "--log-level", "WARNING"], root,
                       {"CARECALL_PUBLIC_URL": "http://127.0.0.1:9"})
        try:
            gate_url = gate.ready()
            began = time.monotonic()
            counts = asyncio.run(seed.seed(url, bookings, professionals))
            seeded = time.monotonic() - began
            due = asyncio.run(_due_query_ms(url, 5))
            gate_cpu = cpu_seconds(gate.pid)
            load = subprocess.run(
                [sys.executable, "-m", "bench.gate_scale", "--load", gate_url, str(bookings),
                 str(professionals), str(samples)],
                env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                timeout=600, check=False)
            if load.returncode != 0:
                raise RuntimeError(f"the load generator failed: {load.stderr[-2000:]}")
            result = json.loads(load.stdout)
            gate_cpu = cpu_seconds(gate.pid) - gate_cpu
        finally:
            gate.stop()
    return {"bookings": bookings, "counts": counts, "seed_seconds": seeded,
            "latency": {name: summary_ms(values) for name, values in result["seconds"].items()},
            "due_for_finalization": summary_ms(due), "gate_cpu": gate_cpu,
            "load_cpu": result["cpu"]}


def run(quick: bool, bookings: int | None = None) -> Suite:
    big_n = bookings or (20_000 if quick else 1_000_000)
    samples = 40 if quick else 200
    small = measure(SMALL, samples)
    big = measure(big_n, samples)
    label = f"{SMALL:,} bookings"
    size = f"{big_n:,}"
    figures: list[Figure] = []
    for name, stats in big["latency"].items():
        base = small["latency"][name]
        figures.append(Figure(f"{name} p50 ({size})", stats["p50_ms"], "ms",
                              base["p50_ms"], label))
        if name in TARGETS_MS:
            figures.append(at_most(f"{name} p99 ({size})", stats["p99_ms"], "ms",
                                   TARGETS_MS[name], baseline=base["p99_ms"],
                                   baseline_name=label))
        else:
            figures.append(Figure(f"{name} p99 ({size})", stats["p99_ms"], "ms",
                                  base["p99_ms"], label, note="reference"))
    figures.append(Figure(f"due_for_finalization query p50 ({size})",
                          big["due_for_finalization"]["p50_ms"], "ms",
                          small["due_for_finalization"]["p50_ms"], label))
    return Suite("gate-at-scale", figures, cpu_seconds={
        f"gate ({label})": small["gate_cpu"], f"gate ({size} bookings)": big["gate_cpu"],
        "load generators": small["load_cpu"] + big["load_cpu"]},
        details={"small": small, "large": big})


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--load"]:
        _load_main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.gate_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bookings", type=int, default=None,
                        help="size of the large database (default 1,000,000; quick 20,000)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    suite = run(args.quick, args.bookings)
    suite.seconds = time.monotonic() - began
    print(table([suite]))
    print(f"seed: {suite.details['large']['seed_seconds']:.0f} s for "
          f"{suite.details['large']['counts']}", file=sys.stderr)


if __name__ == "__main__":
    main()
