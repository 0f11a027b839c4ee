"""ICE servers for ``welcome``: STUN/TURN from configuration, TURN-REST credentials. Pure.

TURN credentials follow the TURN REST convention (draft-uberti-behave-turn-rest):
username ``<expiry>:<room>:<role>``, credential base64(HMAC-SHA1(secret, username)),
expiring with the booking's window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class IceConfig:
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None


def turn_credential(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def ice_servers(config: IceConfig, room: str, role: str, expiry: int) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = []
    if config.stun_urls:
        servers.append({"urls": list(config.stun_urls)})
    if config.turn_urls and config.turn_secret:
        username = f"{expiry}:{room}:{role}"
        servers.append({"urls": list(config.turn_urls), "username": username,
                        "credential": turn_credential(config.turn_secret, username)})
    return servers


def split_urls(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(url.strip() for url in value.split(",") if url.strip())
