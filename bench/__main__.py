"""Run carecall's benchmarks: a table on stdout, the figures as JSON in bench/results/.

    python -m bench [--quick] [--only NAME ...] [--json PATH]

Each suite starts what it measures as processes of its own (``carecall serve``, load
generators, PostgreSQL databases of its own) and stops them before the next begins.
Every figure stands beside a baseline measured in the same run where the issue names
one. The machine should be otherwise idle: the figures are about carecall, not about
what else runs. Not a pass/fail test, and not part of the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.report import Suite, table

# (name, module): each module has ``run(quick: bool) -> Suite``. In the order they run.
SUITES = (
    ("call-setup", "bench.call_setup"),
    ("top-of-hour", "bench.top_of_hour"),
    ("relay-saturation", "bench.saturation"),
    ("idle-connections", "bench.idle"),
    ("joins", "bench.joins"),
    ("gate-at-scale", "bench.gate_scale"),
    ("browser-setup", "bench.browser_setup"),
)
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "load_average": os.getloadavg()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a one-minute version: smaller sizes, shorter runs")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        choices=[name for name, _ in SUITES],
                        help="run only this suite (repeatable): "
                             + ", ".join(name for name, _ in SUITES))
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="where to write the figures (default: "
                             "bench/results/<date>[-quick].json)")
    args = parser.parse_args(argv)
    chosen = [(n, m) for n, m in SUITES if not args.only or n in args.only]
    started = time.monotonic()
    suites: list[Suite] = []
    for number, (name, module) in enumerate(chosen, 1):
        print(f"[{number}/{len(chosen)}] {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            suite: Suite = importlib.import_module(module).run(args.quick)
        except Exception as error:  # one suite's failure must not lose the others' figures
            print(f"[{number}/{len(chosen)}] {name} failed: {type(error).__name__}: {error}",
                  file=sys.stderr, flush=True)
            suite = Suite(name, details={"error": f"{type(error).__name__}: {error}"})
        suite.seconds = time.monotonic() - began
        suites.append(suite)
        print(f"[{number}/{len(chosen)}] {name} done in {suite.seconds:.0f} s",
              file=sys.stderr, flush=True)
    print(table(suites))
    day = datetime.now(UTC).date().isoformat()
    path = args.json or RESULTS / f"{day}{'-quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
        "machine": machine(), "seconds": round(time.monotonic() - started, 1),
        "suites": [suite.json() for suite in suites]}, indent=2) + "\n")
    print(f"\nfigures written to {path} ({time.monotonic() - started:.0f} s in all)",
          file=sys.stderr)
    failed = [s.name for s in suites if "error" in s.details]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
