"""What N concurrent sessions cost the scale-out processes: Redis commands, PostgreSQL
transactions, gate requests, and each signalling node's connections, memory and CPU.

    python bench/scaleout_sizing.py [SESSIONS [IDLE_SECONDS [REPORT.json]]]   (200, 60)

Starts the real processes on 127.0.0.1, as docker-compose.yml does: `carecall gate` on
a fresh PostgreSQL database of the machine's server (dropped at the end) and two
`carecall signalling` nodes on a Redis server of this run's own (`redis-server --port`
on a free port, so that INFO commandstats counts carecall's commands and nobody else's).
Then, with raw aiohttp WebSocket clients (no media stack), for each session: both
parties join (the professional on node i % 2, the client on node (i // 2) % 2, so half
the rooms span the two nodes, as a load balancer spreading connections would make
them), the professional offers, the client answers, each sends 12 candidates, both
do the verification exchange (x-verify-commit, x-verify-reveal) and report media
connected; the sessions then stay idle for IDLE_SECONDS, and both parties say bye.

Phases, each measured as counter deltas (Redis INFO commandstats, pg_stat_database of
the run's database, the gate's carecall_gate_requests_total, /proc of each process):

- baseline: no session, for BASELINE seconds (the processes' own upkeep);
- setup: the booking system's calls (people, booking, links), not a session's cost;
- lifecycle: join, negotiation, media, bye of all N sessions, with the idle time's
  share (idle rate x its duration) and the baseline's taken out;
- idle: N sessions connected, per second.

PostgreSQL publishes a backend's counts up to 10 s late (its idle flush interval), so
every PostgreSQL reading is taken after SETTLE seconds without session activity, and
the idle rate's window starts SETTLE seconds into the idle period. Prints a JSON report
and a Markdown summary scaled to 1,000 sessions. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import Served, clean_env

API_KEY = "sizing-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BASELINE = float(os.environ.get("SIZING_BASELINE", "30"))
SETTLE = 12.0  # > PostgreSQL's 10 s idle stats flush
CANDIDATES = 12
# Sessions joining (and leaving) at the same time. Each holds a node's Redis connection
# for its room transactions: redis-py's pool refuses past 100 connections at once
# (MaxConnectionsError), which fully concurrent byes of 200 sessions reach.
JOIN_CONCURRENCY = int(os.environ.get("SIZING_CONCURRENCY", "50"))
READ_TIMEOUT = float(os.environ.get("SIZING_READ_TIMEOUT", "60"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Stand-ins of realistic size: a browser's audio+video offer is 4-6 KB.
SDP = "v=0\r\n" + "a=x-filler:" + "0" * 4000 + "\r\n"
CANDIDATE = ("candidate:842163049 1 udp 1677729535 198.51.100.7 61234 typ srflx raddr "
             "10.0.0.5 rport 61234 generation 0 ufrag sGq3 network-cost 999")


# -- the processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(root), "--logfile", str(root / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    name = f"carecall_sizing_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class Proc:
    name: str
    served: Served
    url: str = ""

    @property
    def pid(self) -> int:
        return self.served.proc.pid

    def sample(self) -> dict[str, float]:
        """RSS (MiB), CPU seconds and open sockets of the process, from /proc."""
        with open(f"/proc/{self.pid}/statm") as statm:
            rss_pages = int(statm.read().split()[1])
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        sockets = 0
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{self.pid}/fd/{fd}").startswith("socket:"):
                    sockets += 1
        return {"rss_mib": rss_pages * PAGE / 2**20, "cpu_s": cpu, "sockets": sockets}


# -- readings ----------------------------------------------------------------------------


@dataclass
class Reading:
    at: float
    redis_calls: dict[str, int]
    redis_memory: int
    pg: dict[str, int]
    gate_requests: dict[str, float]
    node_connections: list[float]
    procs: dict[str, dict[str, float]]


PG_COLUMNS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched",
              "tup_inserted", "tup_updated", "tup_deleted", "blks_hit", "blks_read")


async def metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def read(r: redis.Redis, pg: asyncpg.Connection, dbname: str,
               http: aiohttp.ClientSession, gate: Proc, nodes: list[Proc]) -> Reading:
    stats = await r.info("commandstats")
    # INFO is this script's own reading, not carecall's.
    calls = {name.removeprefix("cmdstat_"): int(value["calls"])
             for name, value in stats.items() if name != "cmdstat_info"}
    memory = int((await r.info("memory"))["used_memory"])
    row = await pg.fetchrow(f"SELECT {', '.join(PG_COLUMNS)} FROM pg_stat_database "
                            f"WHERE datname = $1", dbname)
    gate_metrics = await metrics(http, gate.url)
    # /metrics is this script's own reading.
    requests = {key.split("{", 1)[1].rstrip("}"): value for key, value in gate_metrics.items()
                if key.startswith("carecall_gate_requests_total{") and "route=metrics" not in key}
    connections = [(await metrics(http, node.url)).get("carecall_connections", 0.0)
                   for node in nodes]
    procs = {proc.name: proc.sample() for proc in (gate, *nodes)}
    return Reading(time.monotonic(), calls, memory, dict(row) if row else {}, requests,
                   connections, procs)


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float]:
    keys = set(after) | set(before)
    found = {key: float(after.get(key, 0)) - float(before.get(key, 0)) for key in keys}
    return {key: value for key, value in sorted(found.items()) if value}


@dataclass
class Window:
    """Counter deltas between two readings (PostgreSQL's between its own two)."""
    seconds: float
    redis: dict[str, float]
    pg: dict[str, float]
    gate: dict[str, float]
    cpu: dict[str, float]
    pg_seconds: float = 0.0

    @classmethod
    def between(cls, start: Reading, end: Reading, pg_start: Reading | None = None,
                pg_end: Reading | None = None) -> Window:
        pg_a, pg_b = pg_start or start, pg_end or end
        return cls(end.at - start.at, delta(end.redis_calls, start.redis_calls),
                   delta(pg_b.pg, pg_a.pg), delta(end.gate_requests, start.gate_requests),
                   {name: end.procs[name]["cpu_s"] - start.procs[name]["cpu_s"]
                    for name in end.procs}, pg_b.at - pg_a.at)

    def rate(self) -> dict[str, dict[str, float]]:
        """Per second."""
        pg_seconds = self.pg_seconds or self.seconds
        return {"redis": {k: v / self.seconds for k, v in self.redis.items()},
                "pg": {k: v / pg_seconds for k, v in self.pg.items()},
                "gate": {k: v / self.seconds for k, v in self.gate.items()},
                "cpu": {k: v / self.seconds for k, v in self.cpu.items()}}


def minus(total: dict[str, float], *parts: tuple[dict[str, float], float]) -> dict[str, float]:
    """``total`` less each (rate, seconds) part."""
    found = dict(total)
    for rates, seconds in parts:
        for key, value in rates.items():
            found[key] = found.get(key, 0.0) - value * seconds
    return found


# -- the sessions -----------------------------------------------------------------------


class Party:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                await self.inbox.put(json.loads(message.data))

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message, separators=(",", ":")))

    async def expect(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        got = []
        async with asyncio.timeout(READ_TIMEOUT):
            while len(got) < count:
                message = await self.inbox.get()
                if message.get("type") == "error":
                    raise RuntimeError(f"server error: {message.get('code')}")
                if message.get("type") == kind:
                    got.append(message)
        return got

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.reader, 10)


@dataclass
class Session:
    index: int
    room: str
    tokens: dict[str, str]
    parties: dict[str, Party] = field(default_factory=dict)
    join_seconds: float = 0.0


async def join(http: aiohttp.ClientSession, node: str, room: str, token: str
               ) -> tuple[Party, dict[str, Any]]:
    ws = await http.ws_connect(f"{node.replace('http', 'ws', 1)}/ws?room={room}",
                               autoping=True, max_msg_size=0)
    party = Party(ws)
    await party.send({"type": "hello", "token": token, "agent": "aiortc",
                      "can_rollback": False})
    welcome = (await party.expect("welcome"))[0]
    return party, welcome


async def start_session(http: aiohttp.ClientSession, nodes: list[str], session: Session,
                        limit: asyncio.Semaphore) -> None:
    async with limit:
        started = time.monotonic()
        i = session.index
        pro, _ = await join(http, nodes[i % 2], session.room, session.tokens["professional"])
        client, welcome = await join(http, nodes[(i // 2) % 2], session.room,
                                     session.tokens["client"])
        assert welcome["peer_present"] is True
        await pro.expect("peer-joined")
        session.parties = {"professional": pro, "client": client}
        # The impolite professional offers (aiortc to aiortc: the client never does).
        await pro.send({"type": "signal", "description": {"type": "offer", "sdp": SDP}})
        await client.expect("signal")
        await client.send({"type": "signal", "description": {"type": "answer", "sdp": SDP}})
        await pro.expect("signal")
        for party in (pro, client):
            for k in range(CANDIDATES):
                await party.send({"type": "signal", "candidate": {
                    "candidate": CANDIDATE.replace("61234", str(50000 + k)),
                    "sdpMid": "0", "sdpMLineIndex": 0}})
        await pro.expect("signal", CANDIDATES)
        await client.expect("signal", CANDIDATES)
        for step, field_name in (("x-verify-commit", "commit"), ("x-verify-reveal", "nonce")):
            for party in (pro, client):
                await party.send({"type": step, field_name: secrets.token_hex(32)})
            await pro.expect(step)
            await client.expect(step)
        for party in (pro, client):
            await party.send({"type": "media", "state": "connected", "video": True})
        session.join_seconds = time.monotonic() - started


async def end_session(session: Session) -> str | None:
    """Both say bye; what went wrong, if anything (the run goes on and reports it)."""
    pro, client = session.parties["professional"], session.parties["client"]
    problem = None
    await pro.send({"type": "bye"})
    try:
        await client.expect("peer-left")
    except (TimeoutError, RuntimeError) as error:
        same = "same node" if session.index % 2 == (session.index // 2) % 2 else "two nodes"
        problem = (f"session {session.index} ({same}): no peer-left after bye "
                   f"({type(error).__name__} {error}); client socket closed="
                   f"{client.ws.closed} {client.ws.close_code}")
    if not client.ws.closed:
        await client.send({"type": "bye"})
    for party in (pro, client):
        await party.close()
    return problem


# -- the booking system's calls ----------------------------------------------------------


async def book(http: aiohttp.ClientSession, gate: str, index: int) -> Session:
    async def call(method: str, path: str, body: Any = None) -> Any:
        async with http.request(method, gate + path, json=body, headers=AUTH) as response:
            data = await response.json()
            if response.status not in (200, 201):
                raise RuntimeError(f"{method} {path}: {response.status} {data}")
            return data

    start = datetime.now(UTC) - timedelta(minutes=1)
    await call("PUT", f"/api/v1/professionals/p-{index}", {
        "name": "Pro", "email": "pro@example.org", "timezone": "UTC"})
    await call("PUT", f"/api/v1/clients/c-{index}", {
        "name": "Client", "email": "client@example.org", "timezone": "UTC", "hub_id": None})
    await call("PUT", f"/api/v1/bookings/b-{index}", {
        "professional_id": f"p-{index}", "client_id": f"c-{index}",
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat(),
        "funding": "private", "source": "direct"})
    links = await call("POST", f"/api/v1/bookings/b-{index}/links")
    tokens = {role: links[role]["url"].split("#t=", 1)[1] for role in ("professional", "client")}
    room = links["professional"]["url"].split("/s/", 1)[1].split("#", 1)[0]
    return Session(index, room, tokens)


# -- the run -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(memory / 2**20, 1),
            "load_before": os.getloadavg(), "python": platform.python_version()}


async def run(sessions: int, idle: float) -> dict[str, Any]:
    report: dict[str, Any] = {"sessions": sessions, "idle_seconds": idle,
                              "machine": machine(), "candidates_per_party": CANDIDATES}
    with tempfile.TemporaryDirectory(prefix="carecall-sizing-") as tmp_name:
        root = Path(tmp_name)
        async with database() as dbname:
            with redis_server(root) as (redis_port, _):
                r = redis.Redis(port=redis_port)
                for _ in range(100):
                    with contextlib.suppress(RedisConnectionError):
                        if await r.ping():
                            break
                    await asyncio.sleep(0.1)
                env = clean_env(CARECALL_RESUME_SECRET=secrets.token_hex(32),
                                CARECALL_PUBLIC_URL="http://127.0.0.1:9",
                                CARECALL_LOG_LEVEL="WARNING")
                db_url = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
                gate = Proc("gate", Served(["gate", "--port", "0", "--db", db_url,
                                            "--api-key", API_KEY, "--var-dir",
                                            str(root / "gate")], root, env))
                procs = [gate]
                try:
                    gate.url = await asyncio.to_thread(gate.served.ready)
                    nodes = []
                    for index in (0, 1):
                        node = Proc(f"node{index}", Served([
                            "signalling", "--port", "0", "--gate-url", gate.url, "--redis",
                            f"redis://127.0.0.1:{redis_port}", "--api-key", API_KEY,
                            "--var-dir", str(root / f"node{index}")], root, env))
                        procs.append(node)
                        nodes.append(node)
                    for node in nodes:
                        node.url = await asyncio.to_thread(node.served.ready)
                    report.update(await measure(r, dbname, gate, nodes, sessions, idle))
                finally:
                    for proc in procs:
                        if proc.served.proc.poll() is None:
                            with contextlib.suppress(AssertionError):
                                proc.served.terminate(60)
                        proc.served.close()
                    await r.aclose()
    return report


async def measure(r: redis.Redis, dbname: str, gate: Proc, nodes: list[Proc],
                  sessions: int, idle: float) -> dict[str, Any]:
    pg = await asyncpg.connect(PG_ADMIN)
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        async def snap() -> Reading:
            return await read(r, pg, dbname, http, gate, nodes)

        try:
            await asyncio.sleep(SETTLE)
            base_start = await snap()
            await asyncio.sleep(BASELINE)
            base_end = await snap()

            limit = asyncio.Semaphore(20)

            async def booked(index: int) -> Session:
                async with limit:
                    return await book(http, gate.url, index)

            setup_started = time.monotonic()
            all_sessions = await asyncio.gather(*(booked(i) for i in range(sessions)))
            setup_seconds = time.monotonic() - setup_started
            await asyncio.sleep(SETTLE)
            before_joins = await snap()

            joins_started = time.monotonic()
            concurrency = asyncio.Semaphore(JOIN_CONCURRENCY)
            await asyncio.gather(*(start_session(http, [n.url for n in nodes], s,
                                                 concurrency) for s in all_sessions))
            joined = await snap()
            joins_seconds = joined.at - joins_started
            await asyncio.sleep(SETTLE)
            idle_pg_start = await snap()
            await asyncio.sleep(max(0.0, idle - SETTLE))
            idle_end = await snap()

            bye_started = time.monotonic()
            async def ended(session: Session) -> str | None:
                async with concurrency:
                    return await end_session(session)

            problems = [p for p in await asyncio.gather(*(ended(s) for s in all_sessions))
                        if p is not None]
            bye_seconds = time.monotonic() - bye_started
            await asyncio.sleep(SETTLE)
            after = await snap()
        finally:
            await pg.close()

    baseline = Window.between(base_start, base_end)
    # The idle rate from SETTLE seconds after the last join on, when the joins' own
    # trailing work (attendance reports, PostgreSQL's late counts) is over.
    idle_window = Window.between(idle_pg_start, idle_end)
    whole = Window.between(before_joins, after)
    base_rate, idle_rate = baseline.rate(), idle_window.rate()
    idle_seconds = idle_end.at - joined.at
    # The lifecycle: everything from before the joins to after the byes, less the idle
    # period's own traffic and the baseline's upkeep over the rest of the time.
    rest = whole.seconds - idle_seconds
    lifecycle = {
        "redis": minus(whole.redis, (idle_rate["redis"], idle_seconds),
                       (base_rate["redis"], rest)),
        "pg": minus(whole.pg, (idle_rate["pg"], idle_seconds), (base_rate["pg"], rest)),
        "gate": minus(whole.gate, (idle_rate["gate"], idle_seconds),
                      (base_rate["gate"], rest)),
    }
    join_times = sorted(s.join_seconds for s in all_sessions)
    return {
        "problems": problems,
        "seconds": {"setup": setup_seconds, "joins": joins_seconds, "idle": idle_seconds,
                    "bye": bye_seconds, "baseline": baseline.seconds},
        "join_negotiation_seconds": {
            "median": statistics.median(join_times),
            "p95": join_times[int(len(join_times) * 0.95) - 1], "max": join_times[-1]},
        "baseline_per_second": base_rate,
        "idle_per_second": idle_rate,
        "idle_over_baseline_per_second": {
            kind: minus(idle_rate[kind], (base_rate[kind], 1.0)) for kind in idle_rate},
        "setup": {"gate": delta(before_joins.gate_requests, base_end.gate_requests)},
        "lifecycle": lifecycle,
        "lifecycle_cpu_seconds": minus(
            whole.cpu, (idle_rate["cpu"], idle_seconds), (base_rate["cpu"], rest)),
        "processes": {"baseline": base_end.procs, "peak": idle_end.procs,
                      "after": after.procs},
        "node_connections": {"peak": idle_end.node_connections,
                             "after": after.node_connections},
        "redis_used_memory": {"baseline": base_end.redis_memory,
                              "peak": idle_end.redis_memory, "after": after.redis_memory},
    }


# -- the summary --------------------------------------------------------------------------


def scaled(values: dict[str, float], factor: float, *, digits: int = 0) -> str:
    items = [(k, v * factor) for k, v in values.items()
             if abs(v * factor) >= 0.5 * 10 ** -digits]
    items.sort(key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v:,.{digits}f}" for k, v in items) or "none"


def summary(report: dict[str, Any]) -> str:
    n = report["sessions"]
    per_1000 = 1000.0 / n
    life, idle = report["lifecycle"], report["idle_over_baseline_per_second"]
    base = report["baseline_per_second"]
    peak, base_p = report["processes"]["peak"], report["processes"]["baseline"]
    lines = [f"## {n} sessions, figures scaled to 1,000 sessions",
             "",
             f"machine: {report['machine']}",
             "",
             "Per 1,000 sessions, once each (join, offer/answer, 2x12 candidates, "
             "verification, media, bye):",
             f"- Redis commands: total {sum(life['redis'].values()) * per_1000:,.0f}: "
             f"{scaled(life['redis'], per_1000)}",
             f"- PostgreSQL: {scaled(life['pg'], per_1000)}",
             f"- gate requests: {scaled(life['gate'], per_1000)}",
             f"- CPU seconds: {scaled(report['lifecycle_cpu_seconds'], per_1000, digits=1)}",
             "",
             "Per second while 1,000 sessions are connected and idle (above the baseline):",
             f"- Redis commands: total {sum(idle['redis'].values()) * per_1000:,.1f}/s: "
             f"{scaled(idle['redis'], per_1000, digits=1)}",
             f"- PostgreSQL: {scaled(idle['pg'], per_1000, digits=1)}",
             f"- gate requests: {scaled(idle['gate'], per_1000, digits=2)}",
             f"- CPU (share of one core): {scaled(idle['cpu'], per_1000, digits=3)}",
             "",
             "Baseline, no session, per second:",
             f"- Redis: total {sum(base['redis'].values()):.1f}/s: "
             f"{scaled(base['redis'], 1.0, digits=1)}",
             f"- PostgreSQL: {scaled(base['pg'], 1.0, digits=1)}",
             f"- gate requests: {scaled(base['gate'], 1.0, digits=2)}",
             "",
             "Memory and sockets:"]
    for name in peak:
        grown = (peak[name]["rss_mib"] - base_p[name]["rss_mib"]) * per_1000
        lines.append(f"- {name}: RSS {base_p[name]['rss_mib']:.0f} MiB idle, "
                     f"{peak[name]['rss_mib']:.0f} MiB with {n} sessions "
                     f"(+{grown:.0f} MiB per 1,000 sessions spread over the nodes); "
                     f"sockets {base_p[name]['sockets']:.0f} -> {peak[name]['sockets']:.0f}")
    memory = report["redis_used_memory"]
    lines += [f"- node connections at peak: {report['node_connections']['peak']}",
              f"- Redis used_memory: {memory['baseline'] / 2**20:.1f} MiB -> "
              f"{memory['peak'] / 2**20:.1f} MiB "
              f"(+{(memory['peak'] - memory['baseline']) * per_1000 / 2**20:.1f} MiB "
              f"per 1,000 sessions)",
              f"- join to media connected: {report['join_negotiation_seconds']}",
              f"- phase seconds: {report['seconds']}",
              f"- problems: {len(report['problems'])} {report['problems'][:5]}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Positional, so that the docs can quote the command (they may name carecall's
    # flags only).
    parser.add_argument("sessions", type=int, nargs="?", default=200)
    parser.add_argument("idle", type=float, nargs="?", default=60.0,
                        help="seconds the sessions stay connected and idle (> 12)")
    parser.add_argument("json", type=Path, nargs="?", help="also write the full report here")
    args = parser.parse_args()
    if args.sessions < 1 or args.idle <= SETTLE:
        parser.error(f"SESSIONS must be at least 1 and IDLE_SECONDS more than {SETTLE:g}")
    if shutil.which("redis-server") is None:
        parser.error("needs redis-server on PATH")
    report = asyncio.run(run(args.sessions, args.idle))
    report["machine"]["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True))
    print(summary(report))


if __name__ == "__main__":
    main()
