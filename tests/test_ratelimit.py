"""Token buckets (signalling.ratelimit): refill, burst cap, per-key limits, LRU bound."""

from __future__ import annotations

import pytest

from signalling.ratelimit import KeyedLimiter, TokenBucket

# Rates and times are binary fractions so that refills are exact in floating point.


def test_fresh_bucket_allows_a_full_burst_then_refuses() -> None:
    """A new bucket starts full: ``burst`` takes succeed at once, the next one fails."""
    bucket = TokenBucket(rate=4.0, burst=3.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(("later", "allowed"), [(0.125, False), (0.25, True), (1.0, True)],
                         ids=["half-a-token", "one-token", "four-tokens"])
def test_bucket_refills_at_its_rate(later: float, allowed: bool) -> None:
    """An empty bucket of rate 4/s has a whole token again after 0.25 s, not before."""
    bucket = TokenBucket(rate=4.0, burst=2.0)
    assert bucket.take(10.0) and bucket.take(10.0)
    assert bucket.peek(10.0 + later) == min(2.0, 4.0 * later)
    assert bucket.take(10.0 + later) is allowed


def test_refill_accumulates_across_refused_takes() -> None:
    """A refused take spends nothing: the partial refill is kept and completed later."""
    bucket = TokenBucket(rate=4.0, burst=1.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.125)
    assert bucket.take(0.25)


def test_bucket_never_holds_more_than_burst() -> None:
    """After a long idle period only ``burst`` takes succeed back to back."""
    bucket = TokenBucket(rate=4.0, burst=3.0)
    for _ in range(3):
        bucket.take(0.0)
    assert bucket.peek(1_000.0) == 3.0
    assert [bucket.take(1_000.0) for _ in range(4)] == [True, True, True, False]


def test_take_with_a_cost() -> None:
    """A take of cost c needs c tokens and removes exactly c."""
    bucket = TokenBucket(rate=1.0, burst=4.0)
    assert bucket.take(0.0, cost=2.5)
    assert bucket.peek(0.0) == 1.5
    assert not bucket.take(0.0, cost=2.0)
    assert bucket.peek(0.0) == 1.5


def test_peek_does_not_spend() -> None:
    """peek reports the budget without using it, on a fresh and on a used bucket."""
    bucket = TokenBucket(rate=1.0, burst=2.0)
    assert bucket.peek(5.0) == bucket.peek(5.0) == 2.0
    bucket.take(5.0)
    assert bucket.peek(5.0) == bucket.peek(5.0) == 1.0


def test_keyed_limiter_allowed_does_not_spend_and_take_does() -> None:
    """allowed() can be asked any number of times; only take() uses the key's budget."""
    limiter = KeyedLimiter(rate=1.0, burst=2.0)
    assert all(limiter.allowed("a", 0.0) for _ in range(10))
    limiter.take("a", 0.0)
    assert limiter.allowed("a", 0.0)
    limiter.take("a", 0.0)
    assert not limiter.allowed("a", 0.0)


def test_keyed_limiter_take_says_whether_there_was_budget() -> None:
    """take() is True while the key has budget, then False, and True again once refilled."""
    limiter = KeyedLimiter(rate=0.5, burst=2.0)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [True, True, False]
    assert not limiter.take("a", 1.0)
    assert limiter.take("a", 2.0)


def test_keyed_limiter_keys_are_independent_and_refill() -> None:
    """One key's exhaustion does not touch another's; a key recovers at the rate."""
    limiter = KeyedLimiter(rate=0.5, burst=1.0)
    limiter.take("a", 0.0)
    assert not limiter.allowed("a", 0.0)
    assert limiter.allowed("b", 0.0)
    assert not limiter.allowed("a", 1.5)
    assert limiter.allowed("a", 2.0)


def test_keyed_limiter_forgets_the_least_recently_used_key() -> None:
    """Past max_keys the key used longest ago is dropped; a recently used one is kept."""
    limiter = KeyedLimiter(rate=1.0, burst=1.0, max_keys=2)
    limiter.take("old", 0.0)
    limiter.take("kept", 0.0)
    assert not limiter.allowed("kept", 0.0)  # also makes "kept" the most recent
    limiter.allowed("new", 0.0)  # evicts "old", whose refused budget is forgotten
    assert not limiter.allowed("kept", 0.0)
    assert limiter.allowed("old", 0.0)


def test_keyed_limiter_memory_is_bounded() -> None:
    """However many addresses appear, at most max_keys buckets are held."""
    limiter = KeyedLimiter(rate=1.0, burst=1.0, max_keys=8)
    for i in range(1_000):
        limiter.take(f"198.51.100.{i}", 0.0)
    assert len(limiter._buckets) == 8
    assert list(limiter._buckets) == [f"198.51.100.{i}" for i in range(992, 1_000)]


def test_client_address_uses_forwarded_for_only_from_a_trusted_proxy() -> None:
    """X-Forwarded-For counts only when the direct peer is a configured proxy."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from signalling.appkeys import CONFIG
    from signalling.config import SignallingConfig
    from signalling.handler import client_address

    app = web.Application()
    app[CONFIG] = SignallingConfig(trusted_proxies=("10.0.0.2",))
    headers = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}

    def address(remote: str) -> str:
        # make_mocked_request: aiohttp's own helper; no socket is needed to read headers.
        request = make_mocked_request("GET", "/ws", headers=headers, app=app)
        return client_address(request.clone(remote=remote))

    assert address("10.0.0.2") == "198.51.100.7"
    assert address("192.0.2.1") == "192.0.2.1"


def test_client_address_trusts_a_proxy_network_given_in_cidr_form() -> None:
    """A CIDR entry trusts every proxy inside it (dual-stack ::ffff: form included), exact
    addresses still work, and a peer outside every entry is counted as itself."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from signalling.appkeys import CONFIG
    from signalling.config import SignallingConfig
    from signalling.handler import client_address

    app = web.Application()
    app[CONFIG] = SignallingConfig(trusted_proxies=("172.16.0.0/12", "fd00::/8", "10.0.0.2"))
    headers = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}

    def address(remote: str) -> str:
        request = make_mocked_request("GET", "/ws", headers=headers, app=app)
        return client_address(request.clone(remote=remote))

    for proxy in ("172.18.0.5", "172.31.255.254", "::ffff:172.20.0.3", "fd00::7", "10.0.0.2"):
        assert address(proxy) == "198.51.100.7", proxy
    for outsider in ("172.32.0.1", "10.0.0.3", "fe80::1", "192.0.2.1"):
        assert address(outsider) == outsider


def test_trusted_proxy_entries_that_are_no_address_are_refused_by_the_check() -> None:
    """proxy_networks names an entry that is neither an address nor a network; such an
    entry never makes a peer trusted, and the valid entries beside it still work."""
    from signalling.handler import is_trusted_proxy, proxy_networks

    assert [str(n) for n in proxy_networks(("10.0.0.2", "172.18.0.5/16"))] == [
        "10.0.0.2/32", "172.18.0.0/16"]
    with pytest.raises(ValueError, match=r"'proxy' is neither an IP address nor a network"):
        proxy_networks(("10.0.0.2", "proxy"))
    with pytest.raises(ValueError, match=r"'10.0.0.0/33' is neither"):
        proxy_networks(("10.0.0.0/33",))
    assert not is_trusted_proxy("10.0.0.9", ("proxy", "10.0.0.0/33"))
    assert is_trusted_proxy("10.0.0.9", ("proxy", "10.0.0.0/24"))
    assert not is_trusted_proxy("unknown", ("0.0.0.0/0",))
