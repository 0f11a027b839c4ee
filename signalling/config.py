"""Configuration of the signalling server."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from signalling.ice import IceConfig


@dataclass(frozen=True, slots=True)
class SignallingConfig:
    public_url: str = "http://127.0.0.1:8080"
    # Origins allowed to open /ws besides the public URL's; "*" allows any.
    extra_origins: tuple[str, ...] = ()
    ice: IceConfig = field(default_factory=IceConfig)
    var_dir: Path = Path("var")
    web_client_dir: Path | None = None
    hello_timeout: float = 5.0
    # Sockets of one address that may wait for their hello at once (signalling/waiting.py).
    waiting_per_address: int = 16
    grace: timedelta = timedelta(seconds=30)
    heartbeat: float = 10.0
    # Per connection: sustained messages per second and burst.
    message_rate: float = 50.0
    message_burst: float = 200.0
    # Per client address: joins refused before their token proved genuine (malformed
    # hello, missing or forged token, no hello in time) allowed per minute (and burst).
    # Past the budget such joins wait this long, then get 4429; genuine tokens never do.
    failed_admissions_per_minute: float = 10.0
    failed_admissions_burst: float = 20.0
    rate_limited_delay: float = 1.0
    # Addresses of reverse proxies whose X-Forwarded-For names the real client.
    trusted_proxies: tuple[str, ...] = ()
    revalidate_interval: float = 2.0
    sweep_interval: float = 1.0
    # Rooms shared by signalling nodes in Redis (None: in this process only), and the
    # key prefix this deployment's keys and channels carry there.
    redis_url: str | None = None
    redis_prefix: str = "carecall:"
    # A node silent in Redis for this long is dead: another cleans up after it.
    node_ttl: timedelta = timedelta(seconds=10)
    # Shared by every node (CARECALL_RESUME_SECRET), so a party resumes on any of them;
    # None: a secret kept in var/resume_secret (one node).
    resume_secret: bytes | None = None
    # Keep attendance events in var/ until the gate has them (a node apart from the gate).
    spool_attendance: bool = False
