"""Processes and services for the benchmarks: carecall commands, a throwaway PostgreSQL
database, a Redis key prefix of the run's own, CPU time read from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-api-key-0123456789"
READY = re.compile(r"^carecall listening on (http://\S+)$")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"


class Process:
    """A `carecall ...` process (or ``argv``); ``ready()`` waits for its ready line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str],
                 argv: list[str] | None = None) -> None:
        full = {k: v for k, v in os.environ.items() if not k.startswith("CARECALL_")}
        full["PYTHONPATH"] = str(REPO)
        full.update(env)
        self._stderr = (cwd / f"stderr-{secrets.token_hex(4)}.log").open("w")
        command = argv or [sys.executable, "-m", "carecall", *args]
        self.proc = subprocess.Popen(command, cwd=cwd,
                                     env=full, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def ready(self, timeout: float = 60.0) -> str:
        while True:
            line = self._lines.get(timeout=timeout)
            if line is None:
                raise RuntimeError(f"carecall exited ({self.proc.poll()}); see {self._stderr.name}")
            match = READY.match(line)
            if match:
                return match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._stderr.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def request(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read() or b"null")


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"carecall_bench_{secrets.token_hex(4)}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def redis_prefix_cleared() -> Iterator[str]:
    import redis

    prefix = f"carecall-bench-{secrets.token_hex(4)}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
