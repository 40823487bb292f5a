"""A small UPS on the controller's supply: what the board can read of it, and its battery.

Many pole controllers sit on a 5 V UPS HAT or a DC UPS that reports "on mains / on battery"
through a GPIO or a sysfs ``power_supply`` node; the agent's system probe reads it from
``mains_path`` (``1``/``0``, ``online``/``battery``). The simulator keeps that status in a file
and, when the grid goes, runs on its battery for ``battery_s`` seconds before calling
``on_empty`` (the rig powers the controller off: the agent is killed without a clean stop).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


class UpsSimulator:
    """The UPS status file and battery of one controller.

    Args:
        workdir: where the status file ``ups_online`` goes.
        battery_s: how long the battery carries the controller without mains.
    """

    def __init__(self, workdir: str | os.PathLike[str], *, battery_s: float = 40.0) -> None:
        self.path = Path(workdir) / "ups_online"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.battery_s = battery_s
        self.on_mains = True
        self.ran_out_at: float | None = None
        self._timer: threading.Timer | None = None
        self._write()

    def mains_lost(self, on_empty: Callable[[], None]) -> None:
        """The grid goes: the status reads ``0`` and the battery starts to run down."""
        self.on_mains = False
        self._write()
        self._cancel()
        self._timer = threading.Timer(self.battery_s, on_empty)
        self._timer.daemon = True
        self._timer.start()

    def mains_back(self) -> None:
        """The grid is back: status ``1``; a battery still running is no longer drawn on."""
        self._cancel()
        self.on_mains = True
        self._write()

    def stop(self) -> None:
        """Stop the battery timer (nothing else runs)."""
        self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("1\n" if self.on_mains else "0\n", encoding="ascii")
        os.replace(tmp, self.path)
