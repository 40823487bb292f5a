"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, print tables, write JSON.

Each benchmark is a module ``bench/<name>.py`` with ``run(quick) -> dict``; results go to
``bench/results/<name>.json`` (``<name>-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.common import say

BENCHMARKS = (
    "ingest",
    "fleet",
    "detection",
    "agent_cost",
    "queries",
    "drill",
    "fuzz",
    "broker_save",
    "mcu_heap",
    "areas",
)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; exit 1 if any of them failed to run."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter windows (< 5 min)")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this one (repeatable)")
    args = parser.parse_args(argv)
    failed = []
    started = time.monotonic()
    for name in args.only or BENCHMARKS:
        say(f"=== {name} ({'quick' if args.quick else 'full'}) ===")
        began = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").run(args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        say(f"=== {name} took {time.monotonic() - began:.0f} s ===")
    say(
        f"all done in {time.monotonic() - started:.0f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
