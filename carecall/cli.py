"""``carecall``: one command, one subcommand per process kind (see ``--help``)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from booking_gate.config import (
    DEFAULT_VAR_DIR,
    GateConfig,
    load_or_create_secret,
    retention_from_env,
    retired_keys_from_env,
    webhooks_from_env,
    windows_from_env,
)
from booking_gate.db.engine import async_url, check_sqlite_folder, sqlite_path
from booking_gate.tokens import load_or_create_key
from booking_gate.validation import is_control
from carecall import logs, vardir
from carecall.connections import DEFAULT_PER_ADDRESS, Limits
from peer import cli as peer_cli
from signalling.app import load_resume_secret
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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser: an unknown option gets this subcommand's usage, not the
    top level's (argparse would hand the leftovers up to ``carecall`` itself)."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed, extra


def _port(text: str) -> int:
    """A TCP port, 0-65535 (argparse applies this to the CARECALL_PORT default too)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(
            f"a port is a whole number from 0 to 65535 (got {text!r}; --port or CARECALL_PORT)")
    return int(text)


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(LOG_LEVELS)} (got {text!r}; --log-level or "
            f"CARECALL_LOG_LEVEL)")
    return text.upper()


def _add_common(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    parser.add_argument("--host", default=_env("CARECALL_HOST", "127.0.0.1"),
                        help="address to listen on (env CARECALL_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=_port,
                        default=_env("CARECALL_PORT", str(default_port)),
                        help=f"port to listen on, 0-65535; 0 picks a free one "
                             f"(env CARECALL_PORT; default {default_port})")
    parser.add_argument("--public-url", default=_env("CARECALL_PUBLIC_URL"),
                        help="the URL people reach this service at, used in join links "
                             "(env CARECALL_PUBLIC_URL; default http://HOST:PORT)")
    parser.add_argument("--log-level", type=_log_level,
                        default=_env("CARECALL_LOG_LEVEL", "INFO"), choices=LOG_LEVELS,
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
                        help="where the SQLite file, signing key and API key live; one "
                             "process at a time, created mode 0700 "
                             "(env CARECALL_VAR_DIR; default ./var)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carecall", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_SubcommandParser)

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
                       help="create a demo professional, client and a booking starting now "
                            "(or reuse the demo booking still running from an earlier start), "
                            "and print its two join links and its booking id")

    gate = sub.add_parser(
        "gate", help="run the booking gate alone (scale-out)",
        description="Run only the booking gate API (bookings, tokens, attendance), for a "
                    "scale-out deployment with separate signalling nodes.")
    _add_common(gate, default_port=8081)
    _add_gate_options(gate)

    node = sub.add_parser(
        "signalling", help="run a signalling node (scale-out): rooms in Redis, gate over HTTP",
        description="Run one signalling node: the /ws WebSocket and the call page at /s/. "
                    "Any number of nodes share rooms through Redis, so the two parties of "
                    "a room may be on different nodes; each reaches the gate over HTTP "
                    "with the API key (its JWKS for token keys). Nodes must share "
                    "CARECALL_RESUME_SECRET (and the TURN secret). Prints 'carecall "
                    "listening on http://HOST:PORT' when ready; SIGTERM drains it "
                    "(sockets get 1001 and resume on another node).")
    _add_common(node, default_port=8082)
    node.add_argument("--gate-url", default=_env("CARECALL_GATE_URL"),
                      help="the gate's base URL, e.g. http://gate:8081 "
                           "(env CARECALL_GATE_URL; required)")
    node.add_argument("--redis", default=_env("CARECALL_REDIS_URL"),
                      help="redis://HOST:PORT[/DB] shared by all nodes "
                           "(env CARECALL_REDIS_URL; required)")
    node.add_argument("--api-key", default=_env("CARECALL_API_KEY"),
                      help="the gate's API key, to ask about rooms and report attendance "
                           "(env CARECALL_API_KEY; required)")
    node.add_argument("--var-dir", type=Path,
                      default=Path(_env("CARECALL_VAR_DIR", str(DEFAULT_VAR_DIR)) or "var"),
                      help="where this node keeps attendance events the gate has not taken "
                           "yet; one process at a time (env CARECALL_VAR_DIR; default ./var)")

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
    """The given key, or the one kept in ``var_dir/api_key`` (generated on first start)."""
    if given:
        return given
    path = var_dir / "api_key"
    if path.exists():
        try:
            key = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise vardir.StateError(f"cannot read the API key {path}: "
                                    f"{getattr(error, 'strerror', None) or error}") from None
        if not key:
            raise vardir.StateError(f"{path} is empty: delete it to have a new API key "
                                    f"generated, or give one with --api-key")
        return key
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    print(f"generated an API key for the booking system in {path}", file=sys.stderr)
    return key


def _load_keys(config: GateConfig, *, serve: bool) -> None:
    """Read (or create) the var dir's keys now: a bad file is one line, not a traceback."""
    path = config.key_path
    try:
        load_or_create_key(path)
    except OSError as error:
        raise vardir.StateError(f"cannot read the signing key {path}: {error.strerror}"
                                ) from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise vardir.StateError(f"{path} does not hold an unencrypted Ed25519 private key "
                                f"in PEM form (see CARECALL_SIGNING_KEY)") from None
    try:
        load_or_create_secret(config.calendar_secret_path)
    except OSError as error:
        raise vardir.StateError(f"cannot read {config.calendar_secret_path}: "
                                f"{error.strerror}") from None
    except ValueError as error:
        raise vardir.StateError(str(error)) from None
    if serve:
        try:
            load_resume_secret(config.var_dir)
        except OSError as error:
            raise vardir.StateError(f"cannot read {config.var_dir / 'resume_secret'}: "
                                    f"{error.strerror}") from None


def gate_config(args: argparse.Namespace) -> GateConfig:
    """The gate's configuration from flags and environment; writes nothing.

    Raises ValueError (``DatabaseUrlError`` among them) for a setting that cannot work.
    """
    join_early, overrun = windows_from_env()
    smtp = _smtp_from_env()
    var_dir: Path = args.var_dir
    db_url = args.db or f"sqlite:///{var_dir / 'carecall.db'}"
    async_url(db_url)
    database = sqlite_path(db_url)
    # The var dir itself is created at start; any other folder must already exist.
    if database is not None and database.parent.resolve() != var_dir.resolve():
        check_sqlite_folder(db_url)
    signing = _env("CARECALL_SIGNING_KEY")
    return GateConfig(
        db_url=db_url,
        public_url=(args.public_url or "").rstrip("/"),
        api_key=args.api_key or None,
        var_dir=var_dir,
        signing_key_path=Path(signing) if signing else None,
        retired_key_paths=retired_keys_from_env(),
        retention=retention_from_env(),
        join_early=join_early,
        overrun=overrun,
        support_text=support_text_from_env(),
        **smtp,
        **webhooks_from_env(),
    )


MAX_SUPPORT_TEXT = 500


def support_text_from_env() -> str | None:
    """``CARECALL_SUPPORT_TEXT``: one line for the lobby (stripped, at most 500
    characters, no control characters), or None when unset or blank."""
    value = (os.environ.get("CARECALL_SUPPORT_TEXT") or "").strip()
    if not value:
        return None
    if len(value) > MAX_SUPPORT_TEXT:
        raise ValueError(f"CARECALL_SUPPORT_TEXT must be at most {MAX_SUPPORT_TEXT} "
                         f"characters (got {len(value)})")
    if any(is_control(char) for char in value):
        raise ValueError("CARECALL_SUPPORT_TEXT must be one line without control characters")
    return value


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


MIN_RESUME_SECRET = 32


def _positive_env(name: str) -> int | None:
    """A whole number of at least 1 from ``name``, or None when unset."""
    value = _env(name)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1 (got {value!r:.40})")
    return int(value)


def connection_limits() -> Limits:
    """``CARECALL_MAX_CONNECTIONS`` and ``CARECALL_MAX_CONNECTIONS_PER_ADDRESS``."""
    per_address = _positive_env("CARECALL_MAX_CONNECTIONS_PER_ADDRESS")
    return Limits(max_connections=_positive_env("CARECALL_MAX_CONNECTIONS"),
                  max_per_address=per_address or DEFAULT_PER_ADDRESS)


def _trusted_proxies() -> tuple[str, ...]:
    """``CARECALL_TRUSTED_PROXIES``, each entry checked now (ValueError names a bad one)."""
    from signalling.handler import proxy_networks

    entries = split_urls(_env("CARECALL_TRUSTED_PROXIES"))
    proxy_networks(entries)
    return entries


def _resume_secret(*, required: bool) -> bytes | None:
    """``CARECALL_RESUME_SECRET``, shared by every signalling node."""
    value = _env("CARECALL_RESUME_SECRET")
    if value is None:
        if required:
            raise ValueError("CARECALL_RESUME_SECRET must be set for a signalling node: a "
                             "random string of at least 32 characters shared by all nodes "
                             "(for example: openssl rand -hex 32)")
        return None
    if len(value) < MIN_RESUME_SECRET:
        raise ValueError(f"CARECALL_RESUME_SECRET must be at least {MIN_RESUME_SECRET} "
                         f"characters long (got {len(value)})")
    return value.encode()


def signalling_config(args: argparse.Namespace, *, node: bool = False) -> SignallingConfig:
    redis_url = args.redis or None
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://",
                                                           "unix://")):
        raise ValueError("--redis must look like redis://HOST:PORT[/DB] (or CARECALL_REDIS_URL)")
    return SignallingConfig(
        public_url=(args.public_url or "").rstrip("/"),
        redis_url=redis_url,
        redis_prefix=_env("CARECALL_REDIS_PREFIX", "carecall:") or "carecall:",
        resume_secret=_resume_secret(required=node),
        spool_attendance=node,
        extra_origins=split_urls(_env("CARECALL_ALLOWED_ORIGINS")),
        trusted_proxies=_trusted_proxies(),
        ice=ice_config(),
        var_dir=args.var_dir,
    )


def ice_config() -> IceConfig:
    """``CARECALL_STUN_URLS``, ``CARECALL_TURN_URLS`` and ``CARECALL_TURN_SECRET``: for
    signalling's welcome, and for the lobby's network check on the gate."""
    return IceConfig(stun_urls=split_urls(_env("CARECALL_STUN_URLS")),
                     turn_urls=split_urls(_env("CARECALL_TURN_URLS")),
                     turn_secret=_env("CARECALL_TURN_SECRET"))


def _fail(message: str, status: int) -> int:
    print(f"carecall: {message}", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    if args.command == "peer":
        return peer_cli.main(args)
    if args.command == "signalling":
        return _node(args)
    try:
        config = gate_config(args)
        signalling = signalling_config(args) if args.command == "serve" else None
        limits, trusted = connection_limits(), _trusted_proxies()
    except ValueError as error:  # refused before anything is written
        return _fail(str(error), 2)
    try:
        with vardir.claim(config.var_dir, sqlite_path(config.db_url)):
            config = dataclasses.replace(config, api_key=_api_key(args.api_key, config.var_dir))
            _load_keys(config, serve=signalling is not None)
            from carecall.serve import run  # not imported for `peer`: it starts faster

            return asyncio.run(run(config, args.host, args.port, signalling=signalling,
                                   demo=getattr(args, "demo", False), limits=limits,
                                   trusted_proxies=trusted, lobby_ice=ice_config()))
    except vardir.StateError as error:
        return _fail(str(error), 1)
    except KeyboardInterrupt:
        return 130


def _node(args: argparse.Namespace) -> int:
    """``carecall signalling``: check the settings, claim the var dir, serve."""
    from carecall.node import run_node

    missing = [flag for flag, value in (("--gate-url", args.gate_url), ("--redis", args.redis),
                                        ("--api-key", args.api_key)) if not value]
    if missing:
        return _fail(f"a signalling node needs {', '.join(missing)} (or their environment "
                     f"variables; see carecall signalling --help)", 2)
    if not args.gate_url.startswith(("http://", "https://")):
        return _fail("--gate-url must be an http:// or https:// URL", 2)
    try:
        config = signalling_config(args, node=True)
        limits = connection_limits()
    except ValueError as error:
        return _fail(str(error), 2)
    try:
        with vardir.claim(config.var_dir, None):
            return asyncio.run(run_node(config, args.gate_url.rstrip("/"), args.api_key,
                                        args.host, args.port, limits=limits))
    except vardir.StateError as error:
        return _fail(str(error), 1)
    except KeyboardInterrupt:
        return 130
