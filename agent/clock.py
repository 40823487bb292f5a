"""The device's clocks: wall time, time since boot, and whether wall time is trusted.

A board without an RTC battery boots in 1970 (or at its image's build date) and stays
there until NTP answers over 4G. Readings taken before that are marked
``clock_ok=false`` and carry ``mono_ms`` so the backend can place them by receive time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import subprocess
import time
from collections.abc import Callable

from agent.core.messages import clock_ok

log = logging.getLogger(__name__)

_TIME_ERROR = 5  # adjtimex() return value: clock not synchronised


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: only the layout size matters, we read the return code.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_char * 256)]


def adjtimex_synced() -> bool | None:
    """Ask the kernel (adjtimex) whether the clock is synchronised; None if it cannot say."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        buf = _Timex()
        state = libc.adjtimex(ctypes.byref(buf))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


def timedatectl_synced() -> bool | None:
    """Ask systemd (``timedatectl show -p NTPSynchronized``); None if it cannot say."""
    try:
        out = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    if value in ("yes", "no"):
        return value == "yes"
    return None


SYNC_CHECKS: dict[str, Callable[[], bool | None]] = {
    "adjtimex": adjtimex_synced,
    "timedatectl": timedatectl_synced,
    "none": lambda: None,
}


def _boot_clock() -> float:
    # CLOCK_BOOTTIME keeps counting through suspend, so mono_ms really is "since boot".
    clock_id = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
    return time.clock_gettime(clock_id)


class Clock:
    """Wall clock, boot clock and the ``clock_ok`` decision, each injectable for tests.

    Args:
        min_epoch_s: any wall time before this is wrong for sure.
        sync_check: returns whether the OS clock is synchronised (None: unknown).
        wall: wall clock in seconds since the epoch.
        boot: seconds since boot.
        recheck_s: how long one sync answer is reused (the check may fork a process).
    """

    def __init__(
        self,
        min_epoch_s: int = 1_735_689_600,
        sync_check: Callable[[], bool | None] = adjtimex_synced,
        wall: Callable[[], float] = time.time,
        boot: Callable[[], float] = _boot_clock,
        recheck_s: float = 60.0,
    ) -> None:
        self.min_epoch_ms = min_epoch_s * 1000
        self._sync_check = sync_check
        self._wall = wall
        self._boot = boot
        self._recheck_s = recheck_s
        self._synced: bool | None = None
        self._checked_at: float | None = None

    def now_ms(self) -> int:
        """Wall clock in ms since the Unix epoch."""
        return int(self._wall() * 1000)

    def mono_ms(self) -> int:
        """Milliseconds since boot."""
        return int(self._boot() * 1000)

    def mono_s(self) -> float:
        """Seconds since boot (for intervals)."""
        return self._boot()

    def synced(self) -> bool | None:
        """The OS's answer, cached for ``recheck_s``."""
        now = self._boot()
        if self._checked_at is None or now - self._checked_at >= self._recheck_s:
            try:
                self._synced = self._sync_check()
            except Exception as exc:  # an injected check must not stop reporting
                log.warning("clock sync check failed: %s", exc)
                self._synced = None
            self._checked_at = now
        return self._synced

    def stamp(self) -> tuple[int, bool, int]:
        """``(ts_ms, clock_ok, mono_ms)`` for a message built now."""
        ts = self.now_ms()
        return ts, clock_ok(ts, self.synced(), self.min_epoch_ms), self.mono_ms()
