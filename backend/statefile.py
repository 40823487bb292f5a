"""The backend's small state files (open alerts, maintenance windows, outage episodes, the
monitor's run record): JSON written whole and atomically, so a process killed mid-write
leaves the previous version, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_json"]


def write_json(path: Path, data: Any, *, sync: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file in the same directory,
    flushed to disk (unless ``sync`` is false: a file rewritten every few seconds) before
    it replaces the old file.

    Raises:
        OSError: the directory cannot be made or the file written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        json.dump(data, out, ensure_ascii=False, indent=1)
        if sync:
            out.flush()
            os.fsync(out.fileno())
    os.replace(tmp, path)
