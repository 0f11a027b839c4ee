"""Sockets that opened ``/ws`` and have not yet sent their ``hello``, by address.

Invariant: at most ``per_address`` such sockets per client address. A new one over that
displaces the address's oldest, which is closed with 4429 at once: a silent socket
holds a file descriptor until its hello timeout, and a client that opens hundreds of
them must not keep its own neighbours (one office, one NAT) out. A real client sends
``hello`` the moment its socket opens, so it is never the oldest for long.

Pure bookkeeping: the handler owns the sockets and closes the one named here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class WaitingJoins:
    def __init__(self, per_address: int) -> None:
        if per_address < 1:
            raise ValueError("per_address must be at least 1")
        self.per_address = per_address
        self._by_address: dict[str, OrderedDict[Hashable, None]] = {}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_address.values())

    def add(self, address: str, key: Hashable) -> Hashable | None:
        """Count ``key`` as waiting; return the key it displaces, if any."""
        keys = self._by_address.setdefault(address, OrderedDict())
        keys[key] = None
        if len(keys) <= self.per_address:
            return None
        victim, _ = keys.popitem(last=False)
        return victim

    def remove(self, address: str, key: Hashable) -> None:
        """``key`` sent its hello, left, or was displaced; idempotent."""
        keys = self._by_address.get(address)
        if keys is None:
            return
        keys.pop(key, None)
        if not keys:
            del self._by_address[address]
