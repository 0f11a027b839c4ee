"""Token buckets for message rates and failed admissions. Pure: time is passed in."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def peek(self, now: float) -> float:
        if self.tokens < 0:
            return self.burst
        return min(self.burst, self.tokens + (now - self.updated) * self.rate)


class KeyedLimiter:
    """One bucket per key (a client address), bounded in memory (least recently used out).

    Keys are held only in memory and never logged.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        return bucket

    def allowed(self, key: str, now: float) -> bool:
        """Whether ``key`` still has budget, without spending it."""
        return self._bucket(key).peek(now) >= 1.0

    def take(self, key: str, now: float) -> bool:
        """Spend one of ``key``'s budget; False (nothing spent) when none is left."""
        return self._bucket(key).take(now)
