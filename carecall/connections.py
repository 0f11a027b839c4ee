"""Which TCP connections a node keeps: a per-address cap and a node-wide cap.

Invariants:

- At most ``max_total`` connections are open; a connection over that is refused.
- At most ``max_per_address`` connections are open from one peer address, unless the
  address is a trusted proxy (its clients are many people; only ``max_total`` applies).
- When an address is at its cap, a new connection from it evicts that address's oldest
  *idle* connection (one with no request in flight: it never sent a request, or it sits
  between keep-alive requests), so a client that sends its request at once still gets
  in beside a thousand silent sockets from its own address. Only when every connection
  of the address is busy is the new one refused.
- A connection is ``busy`` from the moment a request reaches the app until its response
  ends; a WebSocket is busy for its whole life, so an admitted call is never evicted.

Pure bookkeeping: no sockets, no clock, no asyncio. ``carecall.listener`` applies the
decisions to real transports.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# How long a socket may sit without a complete request (after it is accepted, and
# between keep-alive requests) before it is closed.
IDLE_TIMEOUT = 10.0
DEFAULT_PER_ADDRESS = 100


@dataclass(frozen=True, slots=True)
class Limits:
    """``CARECALL_MAX_CONNECTIONS`` (None: what the descriptor limit allows) and
    ``CARECALL_MAX_CONNECTIONS_PER_ADDRESS``."""

    max_connections: int | None = None
    max_per_address: int = DEFAULT_PER_ADDRESS
    idle_timeout: float = IDLE_TIMEOUT


DEFAULT_LIMITS = Limits()

class Verdict(enum.Enum):
    ADMIT = "admit"
    ADMIT_EVICTING = "admit_evicting"  # admitted; ``victim`` is to be closed now
    REFUSE_ADDRESS = "address_full"  # the address is at its cap and nothing is idle
    REFUSE_NODE = "node_full"  # the node is at its cap


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    victim: Hashable | None = None


class _Entry:
    __slots__ = ("address", "busy")

    def __init__(self, address: str) -> None:
        self.address = address
        self.busy = 0  # requests in flight


class ConnectionTable:
    """Open connections by key (any hashable the adapter picks) and peer address."""

    def __init__(self, max_total: int, max_per_address: int,
                 is_proxy: Callable[[str], bool] = lambda address: False) -> None:
        if max_total < 1 or max_per_address < 1:
            raise ValueError("connection caps must be at least 1")
        self.max_total = max_total
        self.max_per_address = max_per_address
        self._is_proxy = is_proxy
        self._entries: dict[Hashable, _Entry] = {}
        # Per address, its connections oldest first.
        self._by_address: dict[str, OrderedDict[Hashable, None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def from_address(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    def open(self, key: Hashable, address: str) -> Decision:
        """A new connection: admit it (evicting an idle one of its address) or refuse."""
        if key in self._entries:
            raise ValueError("this connection is already open")
        if len(self._entries) >= self.max_total:
            return Decision(Verdict.REFUSE_NODE)
        victim: Hashable | None = None
        same = self._by_address.get(address)
        if same is not None and len(same) >= self.max_per_address \
                and not self._is_proxy(address):
            victim = next((k for k in same if self._entries[k].busy == 0), None)
            if victim is None:
                return Decision(Verdict.REFUSE_ADDRESS)
            self.close(victim)
        self._entries[key] = _Entry(address)
        self._by_address.setdefault(address, OrderedDict())[key] = None
        if victim is None:
            return Decision(Verdict.ADMIT)
        return Decision(Verdict.ADMIT_EVICTING, victim)

    def request_started(self, key: Hashable) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.busy += 1

    def request_ended(self, key: Hashable) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.busy > 0:
            entry.busy -= 1

    def close(self, key: Hashable) -> None:
        """Forget a connection (closed by either side, or evicted); idempotent."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        same = self._by_address[entry.address]
        del same[key]
        if not same:
            del self._by_address[entry.address]
