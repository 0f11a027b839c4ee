"""The pure parts of the hardening: connection table, waiting joins, JSON limits, log filters."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import boundedjson
from carecall.connections import ConnectionTable, Verdict
from carecall.listener import capacity
from carecall.logs import PrivacyFilter, RepeatFilter
from signalling.waiting import WaitingJoins


def test_an_address_at_its_cap_evicts_its_oldest_idle_connection() -> None:
    table = ConnectionTable(max_total=10, max_per_address=3)
    for key in ("a1", "a2", "a3"):
        assert table.open(key, "10.0.0.1").verdict is Verdict.ADMIT
    table.request_started("a1")  # a1 is busy: not evictable
    decision = table.open("a4", "10.0.0.1")
    assert (decision.verdict, decision.victim) == (Verdict.ADMIT_EVICTING, "a2")
    assert "a2" not in table and table.from_address("10.0.0.1") == 3
    # Another address is unaffected by the first one's cap.
    assert table.open("b1", "10.0.0.2").verdict is Verdict.ADMIT


def test_an_address_whose_connections_are_all_busy_is_refused() -> None:
    table = ConnectionTable(max_total=10, max_per_address=2)
    for key in ("a1", "a2"):
        table.open(key, "10.0.0.1")
        table.request_started(key)
    assert table.open("a3", "10.0.0.1").verdict is Verdict.REFUSE_ADDRESS
    table.request_ended("a2")
    assert table.open("a3", "10.0.0.1").victim == "a2"


def test_the_node_cap_refuses_whatever_the_address() -> None:
    table = ConnectionTable(max_total=2, max_per_address=2)
    table.open("a", "10.0.0.1")
    table.open("b", "10.0.0.2")
    assert table.open("c", "10.0.0.3").verdict is Verdict.REFUSE_NODE
    table.close("a")
    table.close("a")  # idempotent
    assert table.open("c", "10.0.0.3").verdict is Verdict.ADMIT
    assert len(table) == 2


def test_a_trusted_proxy_is_not_held_to_the_per_address_cap() -> None:
    table = ConnectionTable(max_total=5, max_per_address=1,
                            is_proxy=lambda address: address == "10.9.9.9")
    for key in range(4):
        assert table.open(key, "10.9.9.9").verdict is Verdict.ADMIT


@given(st.lists(st.tuples(st.sampled_from(["open", "start", "end", "close"]),
                          st.integers(0, 15), st.sampled_from(["x", "y", "z"])),
                max_size=200))
def test_the_table_never_exceeds_its_caps(ops: list[tuple[str, int, str]]) -> None:
    table = ConnectionTable(max_total=8, max_per_address=3)
    for op, key, address in ops:
        if op == "open" and key not in table:
            table.open(key, address)
        elif op == "start":
            table.request_started(key)
        elif op == "end":
            table.request_ended(key)
        elif op == "close":
            table.close(key)
        assert len(table) <= 8
        assert all(table.from_address(a) <= 3 for a in ("x", "y", "z"))


def test_capacity_keeps_a_reserve_below_the_descriptor_limit() -> None:
    assert capacity(1024, None) == 896
    assert capacity(1024, 100) == 100
    assert capacity(1024, 5000) == 896  # never more than the descriptors allow
    assert capacity(100, None) == 36


def test_waiting_joins_displace_the_oldest_of_the_same_address() -> None:
    waiting = WaitingJoins(per_address=2)
    assert waiting.add("a", 1) is None
    assert waiting.add("a", 2) is None
    assert waiting.add("b", 3) is None
    assert waiting.add("a", 4) == 1
    waiting.remove("a", 2)
    waiting.remove("a", 2)
    assert len(waiting) == 2
    assert waiting.add("a", 5) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs",))),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=40)


def nesting(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300)
@given(json_values)
def test_the_depth_scan_agrees_with_the_parsed_value(value: Any) -> None:
    """Brackets inside strings (escaped quotes included) do not count."""
    text = json.dumps(value)
    assert boundedjson.depth(text, limit=10_000) == nesting(value)
    assert boundedjson.loads(text, max_bytes=len(text)) == value


@pytest.mark.parametrize("text", ["[" * 60_000, '{"a":' * 40 + "1" + "}" * 40,
                                  "[" * 33 + "]" * 33])
def test_deep_nesting_is_refused_before_parsing(text: str) -> None:
    with pytest.raises(boundedjson.JSONLimitError, match="nested more than 32"):
        boundedjson.loads(text, max_bytes=1_000_000)


def test_32_levels_are_allowed_and_size_is_checked_first() -> None:
    assert boundedjson.loads("[" * 32 + "]" * 32, max_bytes=64) is not None
    with pytest.raises(boundedjson.JSONLimitError, match="larger than 10 bytes"):
        boundedjson.loads('"' + "x" * 20 + '"', max_bytes=10)
    # Brackets in a string never count against the depth.
    assert boundedjson.loads(json.dumps("[" * 100), max_bytes=1000) == "[" * 100


def record(name: str, msg: str, *args: Any, exc: BaseException | None = None,
           level: int = logging.ERROR) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(name, level, "x.py", 1, msg, args, info)


def test_third_party_records_lose_their_arguments_and_traceback() -> None:
    rec = record("aiohttp.server", "Error handling request from %s", "203.0.113.9",
                 exc=ValueError("header b'secret'"))
    assert PrivacyFilter().filter(rec)
    assert rec.getMessage() == "Error handling request from <…> (ValueError)"
    assert rec.exc_info is None and rec.args is None
    own = record("signalling.handler", "joined room %s", "r-1")
    PrivacyFilter().filter(own)
    assert own.getMessage() == "joined room r-1"
    percent = record("aiosqlite", "100%% of %(name)s", {"name": "Ann"})
    PrivacyFilter().filter(percent)
    assert percent.getMessage() == "100% of <…>"


def test_a_repeated_error_is_written_once_per_interval_with_a_count() -> None:
    now = [0.0]
    repeats = RepeatFilter(interval=60, clock=lambda: now[0])
    first = record("carecall.listener", "connection refused: %s", "address_full")
    assert repeats.filter(first)
    assert not any(repeats.filter(record("carecall.listener", "connection refused: %s",
                                         "address_full")) for _ in range(500))
    assert repeats.filter(record("carecall.listener", "other: %s", 1))
    now[0] = 61.0
    later = record("carecall.listener", "connection refused: %s", "address_full")
    assert repeats.filter(later)
    assert later.getMessage() == ("connection refused: address_full (and 500 more like it "
                                  "in the last 60 s)")
    # INFO records are never folded.
    assert all(repeats.filter(record("x", "m", level=logging.INFO)) for _ in range(3))
