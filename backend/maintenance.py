"""Maintenance windows: a device or a whole commune whose alerts are muted for a while.

Kept in ``<state dir>/maintenance.json``, written by ``tincoso maintenance`` and re-read
by the monitor whenever the file changes, so no restart is needed.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from backend.statefile import write_json

__all__ = ["MaintenanceError", "MaintenanceStore", "MaintenanceWindow", "muted_during"]

FILE_NAME = "maintenance.json"


class MaintenanceError(ValueError):
    """A window is invalid or the file cannot be read (the message says which)."""


@dataclass(frozen=True)
class MaintenanceWindow:
    """Alerts of ``device`` (or of every device of ``commune``) are muted from ``start`` to ``end``.

    Attributes:
        id: Short id used to remove it.
        target: ``device`` or ``commune``.
        name: The device id or commune id.
        start: Epoch seconds.
        end: Epoch seconds.
        reason: Why (shown in lists).
    """

    id: str
    target: str
    name: str
    start: float
    end: float
    reason: str = ""

    def covers(self, device: str, commune: str | None, at: float) -> bool:
        """Whether this window mutes ``device`` (of ``commune``) at ``at``."""
        if not self.start <= at < self.end:
            return False
        return self.name == device if self.target == "device" else self.name == commune


class MaintenanceStore:
    """The maintenance file.

    Args:
        path: The JSON file (``<state dir>/maintenance.json``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cache: list[MaintenanceWindow] = []
        self._stamp: tuple[int, int] | None = None

    def windows(self) -> list[MaintenanceWindow]:
        """Every window in the file (re-read only when the file changed).

        Raises:
            MaintenanceError: the file is not valid.
        """
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._cache, self._stamp = [], None
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self._cache = [MaintenanceWindow(**item) for item in raw]
            except (OSError, ValueError, TypeError) as exc:
                raise MaintenanceError(f"{self.path} is not a valid maintenance file: {exc}") from exc
            self._stamp = stamp
        return list(self._cache)

    def muting(self, device: str, commune: str | None, at: float) -> MaintenanceWindow | None:
        """The window muting ``device`` at ``at``, if any."""
        return next((w for w in self.windows() if w.covers(device, commune, at)), None)

    def add(self, target: str, name: str, start: float, end: float, reason: str = "") -> MaintenanceWindow:
        """Add a window and save; return it with its new id."""
        if target not in ("device", "commune"):
            raise MaintenanceError(f"target must be device or commune, got {target!r}")
        if end <= start:
            raise MaintenanceError("the window must end after it starts")
        window = MaintenanceWindow(f"m-{secrets.token_hex(3)}", target, name, start, end, reason)
        self._save([*self.windows(), window])
        return window

    def remove(self, window_id: str) -> bool:
        """Remove a window by id; False if there is none with that id."""
        windows = self.windows()
        kept = [w for w in windows if w.id != window_id]
        if len(kept) == len(windows):
            return False
        self._save(kept)
        return True

    def end_at(self, window_id: str, end: float) -> MaintenanceWindow | None:
        """Move a window's end (not before its start); None if there is no such window."""
        windows = self.windows()
        found = next((w for w in windows if w.id == window_id), None)
        if found is None:
            return None
        moved = replace(found, end=max(end, found.start + 1))
        self._save([moved if w.id == window_id else w for w in windows])
        return moved

    def _save(self, windows: list[MaintenanceWindow]) -> None:
        write_json(self.path, [asdict(w) for w in windows])
        self._stamp = None


@contextmanager
def muted_during(
    store: MaintenanceStore,
    device: str,
    reason: str,
    *,
    longest_s: float = 3600.0,
    tail_s: float = 300.0,
    clock: Callable[[], float] = time.time,
) -> Iterator[MaintenanceWindow]:
    """Mute ``device`` while the block runs (a vendor's acceptance test), then ``tail_s`` more.

    The window is written before the block with a generous end (``longest_s``), so a crash
    cannot leave the device muted for ever, and is cut to ``tail_s`` after the block: long
    enough for the reconnect the test forced to settle before alerts go out again.
    """
    start = clock()
    window = store.add("device", device, start, start + longest_s, reason)
    try:
        yield window
    finally:
        store.end_at(window.id, clock() + tail_s)
