"""What still works while the signalling nodes' Redis is down, and after it comes back.

    python bench/redis_outage.py [DOWN_SECONDS]   (default 20)

Starts `carecall gate` on a fresh PostgreSQL database of the machine's server and two
`carecall signalling` nodes on a Redis server of this run's own (`redis-server --port`
on a free port: the machine's Redis is shared and must not be stopped). Sets up
- a room with both parties on node 0 and one with a party on each node, as raw
  WebSocket clients, and
- a call between two headless peers (aiortc, real media), one on each node,
then stops Redis for DOWN_SECONDS and starts it again, empty (as docker-compose.yml's
Redis is: no persistence). Before, during and after it prints what happens: each node's
/healthz, whether a message is relayed within a room, on one node and across, whether a
new party can join, whether the peers' media keeps flowing, what close codes the
clients see, how long the nodes take to be healthy again. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaleout_sizing import (
    API_KEY,
    AUTH,
    Party,
    Proc,
    Session,
    book,
    database,
    free_port,
    join,
)

from peer import Peer
from tests.processes import Served, clean_env

RELAY_WAIT = 3.0
JOIN_WAIT = 60.0
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {text}", flush=True)


class RedisProcess:
    """A redis-server on a fixed port that can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                  capture_output=True, text=True, check=False)
            if done.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def health(http: aiohttp.ClientSession, nodes: list[Proc]) -> list[int | str]:
    found: list[int | str] = []
    for node in nodes:
        try:
            async with http.get(node.url + "/healthz",
                                timeout=aiohttp.ClientTimeout(total=10)) as response:
                found.append(response.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            found.append(type(error).__name__)
    return found


async def relayed(sender: Party, receiver: Party) -> str:
    """Whether an x- message from ``sender`` reaches ``receiver`` within RELAY_WAIT."""
    if sender.ws.closed:
        return f"sender's socket closed ({sender.ws.close_code})"
    nonce = secrets.token_hex(4)
    started = time.monotonic()
    try:
        await sender.send({"type": "x-probe", "nonce": nonce})
    except (ConnectionError, RuntimeError) as error:
        return f"cannot send ({type(error).__name__})"
    try:
        async with asyncio.timeout(RELAY_WAIT + 6):
            while True:
                message = await receiver.inbox.get()
                if message.get("type") == "x-probe" and message.get("nonce") == nonce:
                    return f"relayed in {(time.monotonic() - started) * 1000:.0f} ms"
                if message.get("type") == "error":
                    return f"error {message.get('code')}"
    except TimeoutError:
        notes = [f"{name} closed {party.ws.close_code}" for name, party in
                 (("sender", sender), ("receiver", receiver)) if party.ws.closed]
        while not sender.inbox.empty():
            message = sender.inbox.get_nowait()
            if message.get("type") == "error":
                notes.append(f"the sender got error {message.get('code')}")
        return f"not relayed within {RELAY_WAIT + 6:g} s" + (
            f" ({', '.join(notes)})" if notes else "")


async def try_join(http: aiohttp.ClientSession, node: str, session: Session, role: str
                   ) -> tuple[str, Party | None]:
    started = time.monotonic()
    ws = None
    try:
        async with asyncio.timeout(JOIN_WAIT):
            ws = await http.ws_connect(f"{node.replace('http', 'ws', 1)}/ws?room={session.room}")
            party = Party(ws)
            await party.send({"type": "hello", "token": session.tokens[role], "agent": "aiortc",
                              "can_rollback": False})
            await party.expect("welcome")
        return f"welcome after {time.monotonic() - started:.1f} s", party
    except RuntimeError as error:
        await asyncio.sleep(0.5)
        code = ws.close_code if ws is not None else None
        return f"{error}, close code {code}, after {time.monotonic() - started:.1f} s", None
    except TimeoutError:
        code = ws.close_code if ws is not None else None
        return f"no welcome within {JOIN_WAIT:g} s (close code {code})", None
    except (aiohttp.ClientError, AssertionError) as error:
        return f"{type(error).__name__} after {time.monotonic() - started:.1f} s", None


def via(link: str, base: str) -> str:
    parts, node = urlsplit(link), urlsplit(base)
    return urlunsplit(parts._replace(netloc=node.netloc))


async def observe(r: RedisProcess, gate: Proc, nodes: list[Proc], down: float) -> None:
    async with aiohttp.ClientSession() as http:
        sessions = [await book(http, gate.url, i) for i in range(4)]
        # The peers' links: book() gave tokens; rebuild links on each node.
        async with http.post(f"{gate.url}/api/v1/bookings/b-3/links", headers=AUTH) as answer:
            links = await answer.json()
        same, cross, late = sessions[0], sessions[1], sessions[2]
        parties: dict[str, Party] = {}
        for label, session, pro_node, client_node in (("same", same, 0, 0),
                                                      ("cross", cross, 0, 1)):
            parties[f"{label}-pro"], _ = await join(http, nodes[pro_node].url, session.room,
                                                    session.tokens["professional"])
            parties[f"{label}-client"], _ = await join(http, nodes[client_node].url,
                                                       session.room, session.tokens["client"])
            await parties[f"{label}-pro"].expect("peer-joined")
        pro = Peer(via(links["professional"]["url"], nodes[0].url))
        client = Peer(via(links["client"]["url"], nodes[1].url))
        async with pro, client:
            await pro.wait_connected(60)
            await client.wait_connected(60)
            await asyncio.sleep(2)

            async def report(moment: str) -> None:
                say(f"{moment}: nodes' /healthz {await health(http, nodes)}")
                for label in ("same", "cross"):
                    say(f"{moment}: relay in the {label}-node room, professional -> client: "
                        f"{await relayed(parties[f'{label}-pro'], parties[f'{label}-client'])}")
                frames = (pro.stats.frames_received, client.stats.frames_received)
                await asyncio.sleep(5)
                say(f"{moment}: peers' video frames received in 5 s: "
                    f"{pro.stats.frames_received - frames[0]} (professional), "
                    f"{client.stats.frames_received - frames[1]} (client); signalling "
                    f"reconnects so far {pro.stats.reconnects}, {client.stats.reconnects}; "
                    f"failure {pro.failure or client.failure}")

            await report("before")
            r.stop()
            stopped = time.monotonic()
            say("Redis stopped")
            await asyncio.sleep(1)
            await report("Redis down")
            outcome, joined = await try_join(http, nodes[0].url, late, "professional")
            say(f"Redis down: a new party joining on node 0: {outcome}")
            if joined is not None:
                await joined.close()
            async with http.get(gate.url + "/healthz") as answer:
                say(f"Redis down: the gate's /healthz {answer.status}")
            await asyncio.sleep(max(0.0, down - (time.monotonic() - stopped)))
            r.start()
            say(f"Redis started again (empty) after {time.monotonic() - stopped:.0f} s down")
            restarted = time.monotonic()
            while await health(http, nodes) != [200, 200] and \
                    time.monotonic() - restarted < 60:
                await asyncio.sleep(0.2)
            say(f"nodes healthy again {time.monotonic() - restarted:.1f} s after the restart")
            await report("Redis back")
            for name, party in parties.items():
                state = f"closed {party.ws.close_code}" if party.ws.closed else "open"
                say(f"Redis back: {name} socket {state}")
            outcome, joined = await try_join(http, nodes[0].url, late, "professional")
            say(f"Redis back: a new party joining on node 0: {outcome}")
            if joined is not None:
                await joined.close()
            # Parties that lost their socket join again (a browser does so by itself).
            for label, session, pro_node, client_node in (("same", same, 0, 0),
                                                          ("cross", cross, 0, 1)):
                for role, node in (("professional", pro_node), ("client", client_node)):
                    key = f"{label}-{'pro' if role == 'professional' else 'client'}"
                    if parties[key].ws.closed:
                        outcome, again = await try_join(http, nodes[node].url, session, role)
                        say(f"Redis back: {key} joins again: {outcome}")
                        if again is not None:
                            parties[key] = again
                say(f"Redis back: relay in the {label}-node room after rejoining: "
                    f"{await relayed(parties[f'{label}-pro'], parties[f'{label}-client'])}")
            await pro.leave()
            await client.leave()
        for party in parties.values():
            with contextlib.suppress(Exception):
                await party.close()
        await asyncio.sleep(3)
        async with http.get(f"{gate.url}/api/v1/bookings/b-3/attendance",
                            headers=AUTH) as answer:
            record: dict[str, Any] = await answer.json()
        say(f"the peers' attendance so far: status {record.get('status')}, intervals "
            f"{ {role: record['parties'][role]['intervals'] for role in record['parties']} }")


async def run(down: float) -> None:
    with tempfile.TemporaryDirectory(prefix="carecall-redis-outage-") as tmp_name:
        root = Path(tmp_name)
        r = RedisProcess(root)
        r.start()
        procs: list[Proc] = []
        try:
            async with database() as dbname:
                env = clean_env(CARECALL_RESUME_SECRET=secrets.token_hex(32),
                                CARECALL_PUBLIC_URL="http://127.0.0.1:9",
                                CARECALL_LOG_LEVEL="WARNING")
                db_url = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
                gate = Proc("gate", Served(["gate", "--port", "0", "--db", db_url, "--api-key",
                                            API_KEY, "--var-dir", str(root / "gate")],
                                           root, env))
                procs.append(gate)
                gate.url = await asyncio.to_thread(gate.served.ready)
                nodes = [Proc(f"node{i}", Served([
                    "signalling", "--port", "0", "--gate-url", gate.url, "--redis",
                    f"redis://127.0.0.1:{r.port}", "--api-key", API_KEY, "--var-dir",
                    str(root / f"node{i}")], root, env)) for i in (0, 1)]
                procs += nodes
                for node in nodes:
                    node.url = await asyncio.to_thread(node.served.ready)
                try:
                    await observe(r, gate, nodes, down)
                finally:
                    for proc in procs:
                        if proc.served.proc.poll() is None:
                            with contextlib.suppress(AssertionError):
                                proc.served.terminate(60)
                    for node in nodes:
                        lines = [line for line in node.served.stderr().splitlines()
                                 if "WARNING" in line or "ERROR" in line]
                        say(f"{node.name} logged {len(lines)} warnings/errors; first: "
                            f"{[line.split(' ', 3)[-1][:120] for line in lines[:3]]}")
                    for proc in procs:
                        proc.served.close()
        finally:
            r.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("down", type=float, nargs="?", default=20.0,
                        help="seconds Redis stays stopped at least (default 20)")
    args = parser.parse_args()
    asyncio.run(run(args.down))


if __name__ == "__main__":
    main()
