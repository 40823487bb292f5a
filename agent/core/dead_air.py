"""Dead-air state machine: silence on a speaker line that should be playing.

A loudspeaker cluster that is powered but silent during a broadcast is the fault
villagers notice first. Short pauses between sentences are normal, so the detector
needs hysteresis: the level must stay below the threshold for ``enter_s`` seconds
before dead air starts, and above it for ``clear_s`` seconds before it ends.

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

from protocols.stored_data import SOUND_THRESHOLD_DBFS, is_audible

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing


class DeadAirDetector:
    """Hysteresis detector over a stream of (level, time) samples.

    Args:
        threshold_dbfs: levels at or below this count as silence
            (`protocols.stored_data.is_audible`, the backend's own definition).
        enter_s: seconds of continuous silence before dead air starts.
        clear_s: seconds of continuous sound before dead air ends.
    """

    def __init__(
        self, threshold_dbfs: float = SOUND_THRESHOLD_DBFS, enter_s: float = 15.0, clear_s: float = 10.0
    ) -> None:
        if enter_s < 0 or clear_s < 0:
            raise ValueError("enter_s and clear_s must be >= 0, got %r and %r" % (enter_s, clear_s))
        self.threshold_dbfs = float(threshold_dbfs)
        self.enter_s = float(enter_s)
        self.clear_s = float(clear_s)
        self._active = False
        self._silent_since = None  # type: float | None
        self._loud_since = None  # type: float | None
        self._last_now = None  # type: float | None

    @property
    def active(self) -> bool:
        """Whether dead air is currently declared."""
        return self._active

    @property
    def silent_for_s(self) -> float:
        """Seconds of continuous silence up to the last sample (0 while sound is present)."""
        if self._silent_since is None or self._last_now is None:
            return 0.0
        return max(0.0, self._last_now - self._silent_since)

    def reset(self) -> None:
        """Forget all history (e.g. the programme stopped on purpose)."""
        self._active = False
        self._silent_since = None
        self._loud_since = None
        self._last_now = None

    def update(self, level_dbfs: float, now_s: float) -> "str | None":
        """Feed one level measurement.

        Args:
            level_dbfs: the measured level (RMS, dBFS) of the latest window.
            now_s: monotonic time of the measurement in seconds.

        Returns:
            ``"start"`` when dead air begins, ``"end"`` when it clears, else ``None``.
        """
        if self._last_now is not None and now_s < self._last_now:
            # A clock stepping backwards must not produce a negative duration; treat it as now.
            now_s = self._last_now
        self._last_now = now_s
        silent = not is_audible(level_dbfs, self.threshold_dbfs)
        if silent:
            self._loud_since = None
            if self._silent_since is None:
                self._silent_since = now_s
            if not self._active and now_s - self._silent_since >= self.enter_s:
                self._active = True
                return "start"
            return None
        self._silent_since = None
        if self._loud_since is None:
            self._loud_since = now_s
        if self._active and now_s - self._loud_since >= self.clear_s:
            self._active = False
            self._loud_since = None
            return "end"
        return None
