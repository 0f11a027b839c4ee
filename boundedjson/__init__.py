"""JSON from strangers, refused before it can cost much: a size and a depth limit.

Python's ``json`` parses nested arrays and objects recursively, so ``[`` x 60,000 costs
a deep recursion and ends in ``RecursionError`` (not ``ValueError``): unchecked, that is
a 500 on REST and a dropped socket on ``/ws``. :func:`loads` checks the size, then
the nesting depth with one linear scan over the brackets outside strings (regular
expressions, so the scan runs in C), and parses only what passed.

A leaf module with no imports of the project: both ``booking_gate`` (REST bodies) and
``signalling`` (WebSocket messages) use it without knowing of each other.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32

# A JSON string (with its escapes), or one bracket outside any string.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class JSONLimitError(ValueError):
    """The text is too large or nested too deeply; the message says which."""


def depth(text: str | bytes, limit: int = MAX_DEPTH) -> int:
    """The deepest nesting of arrays and objects in ``text``; stops once past ``limit``."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8", errors="replace")
    level = deepest = 0
    for match in _TOKENS.finditer(text):
        piece = match.group()
        if piece in ("[", "{"):
            level += 1
            if level > deepest:
                deepest = level
                if deepest > limit:
                    break
        elif piece in ("]", "}"):
            level -= 1
    return deepest


def loads(text: str | bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` after the limits; raises :class:`JSONLimitError` (a ValueError)
    past a limit and ``ValueError`` for text that is not JSON."""
    if len(text) > max_bytes:
        raise JSONLimitError(f"larger than {max_bytes} bytes")
    opening = text.count("[") + text.count("{") if isinstance(text, str) else \
        text.count(b"[") + text.count(b"{")
    # Fewer brackets than the limit cannot nest past it (an SDP offer has none).
    if opening > max_depth and depth(text, max_depth) > max_depth:
        raise JSONLimitError(f"nested more than {max_depth} levels deep")
    try:
        return json.loads(text)
    except RecursionError:  # unreachable past the depth check; kept as a last guard
        raise JSONLimitError(f"nested more than {max_depth} levels deep") from None
