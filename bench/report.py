"""One benchmark figure beside its baseline, and the table and JSON of a run.

Every suite of ``python -m bench`` returns a ``Suite``: its figures (each with the
baseline measured in the same run, where there is one, and the issue's target) and
the CPU time its servers and load generators used, so a reader sees whether a figure
is about the server or about the machine.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure. ``target`` reads like "<= 50 ms" or "<= 1.15x"; ``ratio``
    is value / baseline when there is a baseline; ``met`` is None without a target."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or math.isnan(self.baseline):
            return None
        return self.value / self.baseline


def at_most(name: str, value: float, unit: str, limit: float, **kw: Any) -> Figure:
    """A figure whose target is an upper bound on the value itself."""
    return Figure(name, value, unit, target=f"<= {limit:g} {unit}", met=value <= limit, **kw)


def at_least(name: str, value: float, unit: str, limit: float, **kw: Any) -> Figure:
    """A figure whose target is a lower bound on the value itself."""
    return Figure(name, value, unit, target=f">= {limit:g} {unit}", met=value >= limit, **kw)


def ratio_at_most(name: str, value: float, unit: str, baseline: float, baseline_name: str,
                  limit: float, **kw: Any) -> Figure:
    """A figure whose target is value / baseline <= ``limit``."""
    ratio = value / baseline if baseline else math.inf
    return Figure(name, value, unit, baseline, baseline_name, f"<= {limit:g}x baseline",
                  ratio <= limit, **kw)


def ratio_at_least(name: str, value: float, unit: str, baseline: float, baseline_name: str,
                   limit: float, **kw: Any) -> Figure:
    """A figure whose target is value / baseline >= ``limit``."""
    ratio = value / baseline if baseline else 0.0
    return Figure(name, value, unit, baseline, baseline_name, f">= {limit:g}x baseline",
                  ratio >= limit, **kw)


@dataclass(slots=True)
class Suite:
    """What one benchmark measured: its figures, the CPU seconds each process used
    (``{"server": 3.1, "load generators": 1.2}``) and anything else worth keeping."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": round(self.seconds, 1),
                "cpu_seconds": {k: round(v, 2) for k, v in self.cpu_seconds.items()},
                "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures],
                "details": self.details}


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Count, p50, p99 and max of durations given in seconds, in milliseconds."""
    if not seconds:
        return {"n": 0, "p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    return {"n": len(seconds), "p50_ms": statistics.median(seconds) * 1000,
            "p99_ms": quantile(seconds, 0.99) * 1000, "max_ms": max(seconds) * 1000}


def _number(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "–"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 10 \
        else f"{value:.1f}"
    return f"{text} {unit}".strip()


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: ""}[met]


def table(suites: Sequence[Suite]) -> str:
    """The run as one Markdown table: a row per figure, then each suite's CPU use."""
    lines = ["| suite | figure | value | baseline | ratio | target | |",
             "|---|---|---|---|---|---|---|"]
    for suite in suites:
        for f in suite.figures:
            baseline = (f"{_number(f.baseline, f.unit)} ({f.baseline_name})"
                        if f.baseline is not None else "")
            ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
            lines.append(f"| {suite.name} | {f.name} | {_number(f.value, f.unit)} | "
                         f"{baseline} | {ratio} | {f.target} | {_verdict(f.met)} |")
    lines += ["", "| suite | wall time | CPU seconds used |", "|---|---|---|"]
    for suite in suites:
        cpu = ", ".join(f"{name} {value:.1f}" for name, value in suite.cpu_seconds.items())
        lines.append(f"| {suite.name} | {suite.seconds:.0f} s | {cpu} |")
    return "\n".join(lines)
