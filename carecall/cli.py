"""``carecall``: one command, one subcommand per process kind (see ``--help``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from booking_gate.config import (
    DEFAULT_VAR_DIR,
    GateConfig,
    retired_keys_from_env,
    windows_from_env,
)
from booking_gate.db.engine import async_url
from carecall.serve import run
from peer import cli as peer_cli
from signalling.config import SignallingConfig
from signalling.ice import IceConfig, split_urls

logger = logging.getLogger("carecall")

DESCRIPTION = """\
carecall: confidential peer-to-peer video sessions between a professional and a client.

Media flows directly between the two browsers (or headless peers) over DTLS-SRTP; the
server only relays signalling and keeps bookings, join tokens and attendance.
"""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _add_common(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    parser.add_argument("--host", default=_env("CARECALL_HOST", "127.0.0.1"),
                        help="address to listen on (env CARECALL_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(_env("CARECALL_PORT",
                                                             str(default_port)) or default_port),
                        help=f"port to listen on; 0 picks a free one (env CARECALL_PORT; "
                             f"default {default_port})")
    parser.add_argument("--public-url", default=_env("CARECALL_PUBLIC_URL"),
                        help="the URL people reach this service at, used in join links "
                             "(env CARECALL_PUBLIC_URL; default http://HOST:PORT)")
    parser.add_argument("--log-level", default=_env("CARECALL_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log verbosity on stderr (default INFO)")


def _add_gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=_env("CARECALL_DB_URL"),
                        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
                             "(env CARECALL_DB_URL; default sqlite:///var/carecall.db)")
    parser.add_argument("--api-key", default=_env("CARECALL_API_KEY"),
                        help="bearer key the booking system uses (env CARECALL_API_KEY; "
                             "default: generated once and kept in var/api_key)")
    parser.add_argument("--var-dir", type=Path,
                        default=Path(_env("CARECALL_VAR_DIR", str(DEFAULT_VAR_DIR)) or "var"),
                        help="where the SQLite file, signing key and API key live "
                             "(env CARECALL_VAR_DIR; default ./var)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carecall", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run everything on one port (gate API, signalling, web client)",
        description="Run the booking gate API, the signalling WebSocket and the web client "
                    "in one process on one port, storing in SQLite by default. Prints "
                    "'carecall listening on http://HOST:PORT' when ready.")
    _add_common(serve, default_port=8080)
    _add_gate_options(serve)
    serve.add_argument("--redis", default=_env("CARECALL_REDIS_URL"),
                       help="redis://HOST:PORT to share rooms between nodes "
                            "(env CARECALL_REDIS_URL; default: rooms in this process)")
    serve.add_argument("--demo", action="store_true",
                       help="create a demo professional, client and a booking starting now, "
                            "and print their two join links")

    gate = sub.add_parser(
        "gate", help="run the booking gate alone (scale-out)",
        description="Run only the booking gate API (bookings, tokens, attendance), for a "
                    "scale-out deployment with separate signalling nodes.")
    _add_common(gate, default_port=8081)
    _add_gate_options(gate)

    peer = sub.add_parser(
        "peer", help="join a session headless with a link (QA and CI)",
        description=peer_cli.__doc__, epilog=peer_cli.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    peer_cli.add_arguments(peer)
    peer.add_argument("--log-level", default=_env("CARECALL_LOG_LEVEL", "WARNING"),
                      choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                      help="log verbosity on stderr (default WARNING)")
    return parser


def _api_key(given: str | None, var_dir: Path) -> str:
    if given:
        return given
    path = var_dir / "api_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    print(f"generated an API key for the booking system in {path}", file=sys.stderr)
    return key


def gate_config(args: argparse.Namespace) -> GateConfig:
    join_early, overrun = windows_from_env()
    smtp = _smtp_from_env()  # refused, like the windows, before anything is written
    var_dir: Path = args.var_dir
    db_url = args.db or f"sqlite:///{var_dir / 'carecall.db'}"
    async_url(db_url)  # a bad --db is refused before anything is written to var/
    signing = _env("CARECALL_SIGNING_KEY")
    return GateConfig(
        db_url=db_url,
        public_url=(args.public_url or "").rstrip("/"),
        api_key=_api_key(args.api_key, var_dir),
        var_dir=var_dir,
        signing_key_path=Path(signing) if signing else None,
        retired_key_paths=retired_keys_from_env(),
        join_early=join_early,
        overrun=overrun,
        **smtp,
    )


def _smtp_from_env() -> dict[str, Any]:
    """The notification email settings, from CARECALL_SMTP_* and CARECALL_MAIL_FROM."""
    port = _env("CARECALL_SMTP_PORT", "25") or "25"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"CARECALL_SMTP_PORT must be a port number (got {port!r})")
    starttls = (_env("CARECALL_SMTP_STARTTLS", "false") or "false").lower()
    if starttls not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"CARECALL_SMTP_STARTTLS must be true or false (got {starttls!r})")
    return {
        "smtp_host": _env("CARECALL_SMTP_HOST"), "smtp_port": int(port),
        "smtp_username": _env("CARECALL_SMTP_USERNAME"),
        "smtp_password": _env("CARECALL_SMTP_PASSWORD"),
        "smtp_starttls": starttls in ("1", "true", "yes", "on"),
        "mail_from": _env("CARECALL_MAIL_FROM", "carecall@localhost") or "carecall@localhost",
    }


def signalling_config(args: argparse.Namespace) -> SignallingConfig:
    return SignallingConfig(
        public_url=(args.public_url or "").rstrip("/"),
        extra_origins=split_urls(_env("CARECALL_ALLOWED_ORIGINS")),
        trusted_proxies=split_urls(_env("CARECALL_TRUSTED_PROXIES")),
        ice=IceConfig(stun_urls=split_urls(_env("CARECALL_STUN_URLS")),
                      turn_urls=split_urls(_env("CARECALL_TURN_URLS")),
                      turn_secret=_env("CARECALL_TURN_SECRET")),
        var_dir=args.var_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "peer":
        return peer_cli.main(args)
    try:
        config = gate_config(args)
    except ValueError as error:
        print(f"carecall: {error}", file=sys.stderr)
        return 2
    try:
        signalling = signalling_config(args) if args.command == "serve" else None
        return asyncio.run(run(config, args.host, args.port, signalling=signalling,
                               demo=getattr(args, "demo", False)))
    except KeyboardInterrupt:
        return 130
