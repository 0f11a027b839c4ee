"""Call setup: the second party admitted → both parties decoding the other's video.

    python -m bench.call_setup [--quick]

Two ``carecall peer`` processes through a ``carecall serve`` process (SQLite in a
temporary directory), against the floor: two aiortc peer connections in this process
exchanging offer and answer directly, with the peer's own synthetic video and tone.

Per repetition a fresh booking; the professional's peer joins first and waits in the
room (its stderr says "admitted"), then the client's peer starts. The figure is from the
client's ``admitted_at`` (its welcome, which tells it the professional is present) to the
later of the two ``first_frame_at``s (both peers write them with ``--stats-json``): the
same interval as the baseline's, from the offer being created to the later of the two
sides' first decoded frame. Peer start-up (imports, the socket's connect, hello) lies
before the welcome, so it is not counted; the server's relay of the offer, the answer
and the ``media`` messages is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.procs import API_KEY, REPO, Process, cpu_seconds, request
from bench.report import Figure, Suite, quantile, ratio_at_most, table

TARGET_RATIO = 1.15
PEER_TIMEOUT = 30.0


def _parse(value: str | None) -> datetime | None:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) \
        if value else None


def book(base: str, name: str) -> dict[str, str]:
    """A booking that runs now; its join links by role."""
    request("PUT", f"{base}/api/v1/professionals/pro-{name}", {
        "name": "Pro", "email": "pro@example.org", "timezone": "UTC",
        "availability": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]})
    request("PUT", f"{base}/api/v1/clients/cli-{name}", {
        "name": "Client", "email": "cli@example.org", "timezone": "UTC", "hub_id": None})
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    request("PUT", f"{base}/api/v1/bookings/b-{name}", {
        "professional_id": f"pro-{name}", "client_id": f"cli-{name}",
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=50)).isoformat(),
        "funding": "private", "source": "direct"})
    links = request("POST", f"{base}/api/v1/bookings/b-{name}/links")
    return {role: links[role]["url"] for role in ("professional", "client")}


class PeerProcess:
    """``python -m carecall peer -`` with the link on standard input (never in ps)."""

    def __init__(self, link: str, stats: Path, duration: float, repo: Path = REPO) -> None:
        env = {"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}
        self.stats = stats
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "carecall", "peer", "-", "--duration", f"{duration:g}",
             "--stats-json", str(stats), "--connect-timeout", f"{PEER_TIMEOUT:g}"],
            cwd=repo, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(link + "\n")
        self.proc.stdin.close()

    def wait_line(self, text: str, timeout: float = PEER_TIMEOUT) -> None:
        """Block until the peer's stderr has a line containing ``text``."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"peer exited ({self.proc.poll()}) before {text!r}")
            if text in line:
                return
        raise RuntimeError(f"peer: no {text!r} within {timeout:g} s")

    def result(self, timeout: float = PEER_TIMEOUT) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        if self.proc.returncode != 0:
            raise RuntimeError(f"peer exited {self.proc.returncode}")
        data: dict[str, Any] = json.loads(self.stats.read_text())
        return data

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def one_served(base: str, tmp: Path, n: int, repo: Path = REPO) -> float:
    """Seconds from the client's welcome to both peers' first decoded remote frame."""
    links = book(base, f"{n}-{secrets.token_hex(3)}")
    pro = PeerProcess(links["professional"], tmp / f"pro-{n}.json", 1.0, repo)
    client: PeerProcess | None = None
    try:
        pro.wait_line("admitted")
        client = PeerProcess(links["client"], tmp / f"cli-{n}.json", 0.5, repo)
        second = client.result()
        first = pro.result()
    finally:
        pro.stop()
        if client is not None:
            client.stop()
    admitted = _parse(second["admitted_at"])
    frames = [_parse(first["first_frame_at"]), _parse(second["first_frame_at"])]
    if admitted is None or None in frames:
        raise RuntimeError("a peer never admitted or never decoded a frame")
    return (max(f for f in frames if f is not None) - admitted).total_seconds()


async def one_direct() -> float:
    """Two aiortc peer connections, offer/answer handed over directly, no server."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    from peer.media import SyntheticVideoTrack, ToneAudioTrack

    loop = asyncio.get_running_loop()
    first: dict[str, asyncio.Future[float]] = {"a": loop.create_future(),
                                               "b": loop.create_future()}
    pcs = {side: RTCPeerConnection(RTCConfiguration(iceServers=[])) for side in first}
    tasks: list[asyncio.Task[None]] = []

    def consume(side: str, track: Any) -> None:
        async def run() -> None:
            while True:
                frame = await track.recv()
                if not first[side].done() and frame is not None:
                    first[side].set_result(time.monotonic())
        tasks.append(asyncio.create_task(run()))

    try:
        for side, pc in pcs.items():
            pc.createDataChannel("carecall", negotiated=True, id=0)
            pc.addTrack(SyntheticVideoTrack())
            pc.addTrack(ToneAudioTrack())
            pc.on("track", lambda track, side=side: consume(side, track)
                  if track.kind == "video" else None)
        start = time.monotonic()
        await pcs["a"].setLocalDescription(await pcs["a"].createOffer())
        await pcs["b"].setRemoteDescription(pcs["a"].localDescription)
        await pcs["b"].setLocalDescription(await pcs["b"].createAnswer())
        await pcs["a"].setRemoteDescription(pcs["b"].localDescription)
        async with asyncio.timeout(PEER_TIMEOUT):
            done = await asyncio.gather(*first.values())
        return max(done) - start
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pc in pcs.values():
            await pc.close()


def figure_ms(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": statistics.median(values) * 1000,
            "p90_ms": quantile(values, 0.9) * 1000, "min_ms": min(values) * 1000}


def run(quick: bool) -> Suite:
    began = time.monotonic()
    reps = 3 if quick else 10
    suite = Suite("call-setup")
    asyncio.run(one_direct())  # warms this process up, as a peer's start does its own
    direct: list[float] = []
    served: list[float] = []
    with tempfile.TemporaryDirectory(prefix="carecall-bench-") as name:
        tmp = Path(name)
        server = Process(["serve", "--port", "0", "--api-key", API_KEY,
                          "--var-dir", str(tmp / "var")], tmp, {})
        try:
            base = server.ready()
            # Alternately, so both see the same load on a shared machine.
            for n in range(reps):
                direct.append(asyncio.run(one_direct()))
                served.append(one_served(base, tmp, n))
            suite.cpu_seconds["server"] = cpu_seconds(server.pid)
        finally:
            server.stop()
    s, d = figure_ms(served), figure_ms(direct)
    suite.figures.append(ratio_at_most(
        "second party admitted → first remote frame (median)", s["p50_ms"], "ms",
        d["p50_ms"], "aiortc ↔ aiortc in-process, no server", TARGET_RATIO,
        note=f"p90 {s['p90_ms']:.0f} ms vs {d['p90_ms']:.0f} ms; n={reps}"))
    suite.figures.append(Figure("second party admitted → first remote frame (p90)",
                                s["p90_ms"], "ms", d["p90_ms"], "in-process p90"))
    suite.details = {"served": s, "direct": d,
                     "served_ms": [round(v * 1000, 1) for v in served],
                     "direct_ms": [round(v * 1000, 1) for v in direct]}
    suite.seconds = time.monotonic() - began
    return suite


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.call_setup")
    parser.add_argument("--quick", action="store_true")
    suite = run(parser.parse_args().quick)
    print(table([suite]))
    print(json.dumps(suite.details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
