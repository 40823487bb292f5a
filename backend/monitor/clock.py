"""Time for the monitor, injected so that tests decide what "now" is."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Source of the current time in epoch seconds (UTC)."""

    def now(self) -> float:
        """Current time, epoch seconds."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to (tests).

    Args:
        start: Initial time, epoch seconds.
    """

    def __init__(self, start: float) -> None:
        self._now = float(start)

    def now(self) -> float:
        """The time last set."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        self._now += seconds

    def set(self, ts: float) -> None:
        """Jump to ``ts`` (epoch seconds)."""
        self._now = float(ts)
