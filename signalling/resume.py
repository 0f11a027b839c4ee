"""Resume tokens: a party's proof that it continues an earlier signalling session. Pure.

``<session_id>.<expiry>.<mac>`` with an HMAC-SHA256 over room, role, session and expiry
under a server secret, so a node that restarted (or another node) can still honour it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(secret: bytes, room: str, role: str, session_id: str, expiry: int) -> str:
    digest = hmac.new(secret, f"{room}|{role}|{session_id}|{expiry}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def issue(secret: bytes, room: str, role: str, session_id: str, expiry: int) -> str:
    return f"{session_id}.{expiry}.{_mac(secret, room, role, session_id, expiry)}"


def check(secret: bytes, token: str, room: str, role: str, now: int) -> str | None:
    """The session id the token continues, or None if it is not valid here and now."""
    parts = token.split(".")
    # ASCII only: str.isdigit() admits digits int() rejects ("²"), and compare_digest
    # raises on non-ASCII strings; a client sends this value, so refuse, never raise.
    if not token.isascii() or len(parts) != 3 or not parts[1].isdigit():
        return None
    session_id, expiry, mac = parts[0], int(parts[1]), parts[2]
    if now >= expiry:
        return None
    if not hmac.compare_digest(mac, _mac(secret, room, role, session_id, expiry)):
        return None
    return session_id
