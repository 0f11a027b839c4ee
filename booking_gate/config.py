"""Configuration of the booking gate, read once at start from flags and environment."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from booking_gate.tokens import load_public_keys
from booking_gate.webhooks import parse_secret

DEFAULT_VAR_DIR = Path("var")


@dataclass(frozen=True, slots=True)
class GateConfig:
    db_url: str = f"sqlite:///{DEFAULT_VAR_DIR / 'carecall.db'}"
    public_url: str = "http://127.0.0.1:8080"
    api_key: str | None = None
    var_dir: Path = DEFAULT_VAR_DIR
    signing_key_path: Path | None = None
    # Earlier signing keys (PEM) whose tokens are still accepted and published (rotation).
    retired_key_paths: tuple[Path, ...] = ()
    join_early: timedelta = timedelta(seconds=900)
    overrun: timedelta = timedelta(seconds=900)
    # How often the background task finalises attendance records that are due.
    finalize_interval: float = 30.0
    extra: Mapping[str, str] = field(default_factory=dict)
    # Notification emails (booking_gate/mailer.py); no host: they wait in the outbox.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "carecall@localhost"
    # How often the mailer looks for due emails when nothing wakes it.
    mail_interval: float = 30.0
    # Webhooks (booking_gate/webhook_sender.py): the receiver, and the whsec_ secrets that
    # sign each delivery (the previous one too during a rotation). No URL: no webhooks.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_previous_secret: str | None = None
    # Retries: exponential backoff with jitter from the first delay up to the cap, for
    # at least the horizon, then the event is failed (dead letter).
    webhook_first_retry: timedelta = timedelta(seconds=5)
    webhook_max_retry: timedelta = timedelta(hours=1)
    webhook_horizon: timedelta = timedelta(hours=24)
    # One attempt's timeout; a claimed batch's lease (longer than a batch can take).
    webhook_timeout: float = 10.0
    webhook_lease: timedelta = timedelta(seconds=60)
    # Deliveries at once (each of another booking), and the poll interval.
    webhook_concurrency: int = 8
    webhook_interval: float = 5.0
    # Retention (booking_gate/retention.py): delivered outbox messages older than this
    # are deleted, checked every ``retention_interval`` seconds.
    retention: timedelta = timedelta(days=90)
    retention_interval: float = 3600.0
    # CARECALL_SUPPORT_TEXT: one line the lobby shows (who to call when stuck), or None.
    support_text: str | None = None

    @property
    def key_path(self) -> Path:
        return self.signing_key_path or self.var_dir / "signing_key.pem"

    @property
    def calendar_secret_path(self) -> Path:
        """The secret behind the calendar feed keys (``ics.feed_key``)."""
        return self.var_dir / "calendar_secret"


def load_or_create_secret(path: Path) -> bytes:
    """The 32-byte secret at ``path``, created (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: a reader never sees a half-written file,
        # and of two processes starting at once only one secret wins.
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_bytes(32).hex() + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            temp.unlink()
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except ValueError:  # not hex, or not even text
        secret = b""
    if len(secret) < 32:
        raise ValueError(f"{path} must hold at least 32 bytes, hex-encoded")
    return secret


def seconds_from_env(env: Mapping[str, str], name: str, default: int) -> timedelta:
    raw = env.get(name)
    if raw is None or raw == "":
        return timedelta(seconds=default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of seconds (got {raw!r})") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative (got {value})")
    return timedelta(seconds=value)


def retention_from_env(env: Mapping[str, str] | None = None) -> timedelta:
    """``CARECALL_RETENTION_DAYS``: a whole number of days, at least 1 (default 90)."""
    env = os.environ if env is None else env
    raw = (env.get("CARECALL_RETENTION_DAYS") or "").strip()
    if not raw:
        return timedelta(days=90)
    if not raw.isdecimal() or int(raw) < 1 or int(raw) > 36500:
        raise ValueError(f"CARECALL_RETENTION_DAYS must be a whole number of days from 1 "
                         f"to 36500 (got {raw[:20]!r})")
    return timedelta(days=int(raw))


def windows_from_env(env: Mapping[str, str] | None = None) -> tuple[timedelta, timedelta]:
    env = os.environ if env is None else env
    return (
        seconds_from_env(env, "CARECALL_JOIN_EARLY_SECONDS", 900),
        seconds_from_env(env, "CARECALL_OVERRUN_SECONDS", 900),
    )


def webhooks_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The webhook settings, as ``GateConfig`` fields: ``CARECALL_WEBHOOK_URL``,
    ``CARECALL_WEBHOOK_SECRET`` (``whsec_<base64>``, required with a URL),
    ``CARECALL_WEBHOOK_SECRET_PREVIOUS`` (during a rotation),
    ``CARECALL_WEBHOOK_MAX_RETRY_SECONDS`` (the backoff's cap, default 3600) and
    ``CARECALL_WEBHOOK_TIMEOUT_SECONDS`` (one attempt, default 10; the lease of a claimed
    batch is six of them). Errors never quote a secret."""
    env = os.environ if env is None else env
    url = env.get("CARECALL_WEBHOOK_URL") or None
    secret = env.get("CARECALL_WEBHOOK_SECRET") or None
    previous = env.get("CARECALL_WEBHOOK_SECRET_PREVIOUS") or None
    if url is None:
        return {}
    if not url.startswith(("http://", "https://")):
        raise ValueError("CARECALL_WEBHOOK_URL must be an http:// or https:// URL")
    if secret is None:
        raise ValueError("CARECALL_WEBHOOK_SECRET must be set with CARECALL_WEBHOOK_URL "
                         "(whsec_ and base64 of 24 to 64 random bytes)")
    parse_secret(secret, "CARECALL_WEBHOOK_SECRET")
    if previous is not None:
        parse_secret(previous, "CARECALL_WEBHOOK_SECRET_PREVIOUS")
    cap = seconds_from_env(env, "CARECALL_WEBHOOK_MAX_RETRY_SECONDS", 3600)
    timeout = seconds_from_env(env, "CARECALL_WEBHOOK_TIMEOUT_SECONDS", 10)
    if cap <= timedelta() or timeout <= timedelta():
        raise ValueError("CARECALL_WEBHOOK_MAX_RETRY_SECONDS and "
                         "CARECALL_WEBHOOK_TIMEOUT_SECONDS must be at least 1")
    return {"webhook_url": url, "webhook_secret": secret, "webhook_previous_secret": previous,
            "webhook_max_retry": cap,
            "webhook_first_retry": min(timedelta(seconds=5), cap),
            "webhook_timeout": timeout.total_seconds(), "webhook_lease": timeout * 6}


def retired_keys_from_env(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """``CARECALL_RETIRED_SIGNING_KEYS``: comma-separated PEM files of retired signing
    keys, each checked to hold an Ed25519 key (refused at start, not at first use)."""
    env = os.environ if env is None else env
    paths = tuple(Path(part.strip()) for part in (env.get("CARECALL_RETIRED_SIGNING_KEYS")
                                                  or "").split(",") if part.strip())
    try:
        load_public_keys(paths)
    except ValueError as error:
        raise ValueError(f"CARECALL_RETIRED_SIGNING_KEYS: {error}") from None
    return paths
