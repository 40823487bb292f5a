"""The MCU agent's heap over one reporting cycle, under MicroPython's unix port from .mpy files.

    python -m bench.mcu_heap          (or python -m bench --only mcu_heap)

Compiles the board's modules with mpy-cross (as ``make dist-mpy`` does), runs
``bench/micropython_mcu_heap.py`` on them and prints its JSON line with the cycle's
allocation as a ratio of the heap after imports (the baseline of the same run). The
cycle ends with the backend's delivery receipt clearing the ring (the script checks it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.mcu_build import compile_mpy
from bench.common import say, table, write_result

REPO = Path(__file__).resolve().parent.parent


def measure() -> dict[str, Any]:
    """Measure; the script's report plus ``cycle_vs_imports``."""
    binary = Path(sys.executable).with_name("micropython")
    with tempfile.TemporaryDirectory() as tmp:
        compile_mpy(Path(tmp) / "board")
        flash = Path(tmp) / "flash"
        flash.mkdir()
        done = subprocess.run(
            [str(binary), str(REPO / "bench" / "micropython_mcu_heap.py"), str(flash)],
            env=dict(os.environ, MICROPYPATH=".frozen:" + str(Path(tmp) / "board" / "lib")),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    imports = report["after_imports"] - report["before_imports"]
    report["cycle_vs_imports"] = round(report["cycle_alloc"] / imports, 2)
    return report


def run(quick: bool = False) -> dict[str, Any]:
    """Measure (the same in ``--quick``: it takes seconds), print the table of
    docs/benchmarks.md, write ``bench/results/mcu_heap.json``."""
    report = measure()
    rows = [
        ("heap after importing the agent (from .mpy)", report["after_imports"]),
        ("heap with the agent built, ring open", report["after_agent"]),
        ("most in use during one cycle, collector every 8 KiB", report["peak_cycle_collector_on"]),
        ("allocated by one cycle (collector off)", report["cycle_alloc"]),
        ("in use after the cycle, collected", report["after_cycle"]),
    ]
    report["table"] = table("MCU agent heap, one reporting cycle (bytes)", ("what", "bytes"), rows)
    say(f"cycle allocation = {report['cycle_vs_imports']} x the imports")
    write_result("mcu_heap", quick, report)
    return report


if __name__ == "__main__":
    print(json.dumps(measure()))
