"""Configuration of the booking gate, read once at start from flags and environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

DEFAULT_VAR_DIR = Path("var")


@dataclass(frozen=True, slots=True)
class GateConfig:
    db_url: str = f"sqlite:///{DEFAULT_VAR_DIR / 'carecall.db'}"
    public_url: str = "http://127.0.0.1:8080"
    api_key: str | None = None
    var_dir: Path = DEFAULT_VAR_DIR
    signing_key_path: Path | None = None
    join_early: timedelta = timedelta(seconds=900)
    overrun: timedelta = timedelta(seconds=900)
    # How often the background task finalises attendance records that are due.
    finalize_interval: float = 30.0
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def key_path(self) -> Path:
        return self.signing_key_path or self.var_dir / "signing_key.pem"


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


def windows_from_env(env: Mapping[str, str] | None = None) -> tuple[timedelta, timedelta]:
    env = os.environ if env is None else env
    return (
        seconds_from_env(env, "CARECALL_JOIN_EARLY_SECONDS", 900),
        seconds_from_env(env, "CARECALL_OVERRUN_SECONDS", 900),
    )
