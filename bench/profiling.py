"""Where a process spends its time: py-spy attached to it, summarised by function.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;frame count``). The
summary gives each function's *inclusive* share (on the stack at all) and *self* share
(the frame that was running), which is what docs/benchmarks.md quotes for a missed target.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    """The py-spy executable beside this Python (a dev dependency), or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, output: Path, rate: int = 100) -> subprocess.Popen[bytes] | None:
    """Begin sampling ``pid`` (and its threads) into ``output``; None without py-spy."""
    exe = py_spy()
    if exe is None:
        return None
    command = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate)]
    command += ["--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(recorder: subprocess.Popen[bytes] | None) -> None:
    """Stop sampling (py-spy writes its file on SIGINT)."""
    if recorder is None:
        return
    recorder.send_signal(2)
    try:
        recorder.wait(timeout=20)
    except subprocess.TimeoutExpired:
        recorder.kill()


_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match.group('func')} ({path})"


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by inclusive and by self share of the samples in a raw py-spy file."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"samples": 0, "inclusive": [], "self": []}
    for row in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = row.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";")[1:]]  # the first entry is the thread
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    share = 100 / max(1, total)
    return {
        "samples": total,
        "inclusive": [(name, round(n * share, 1)) for name, n in inclusive.most_common(top)],
        "self": [(name, round(n * share, 1)) for name, n in own.most_common(top)],
    }
