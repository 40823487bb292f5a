"""Maintenance windows: a device or a whole commune whose alerts are muted for a while.

Kept in ``<state dir>/maintenance.json``, written by ``tincoso maintenance`` and re-read
by the monitor whenever the file changes, so no restart is needed.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["MaintenanceError", "MaintenanceStore", "MaintenanceWindow"]

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

    def _save(self, windows: list[MaintenanceWindow]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps([asdict(w) for w in windows], ensure_ascii=False, indent=1), encoding="utf-8"
        )
        os.replace(tmp, self.path)
        self._stamp = None
