"""Late readings correct every rollup level: debounced, bounded recomputation after ingest.

A continuous query only recomputes its recent past (the 1-minute level 10 minutes back,
`backend.rollups.LEVELS`), so readings replayed after a 4G outage of hours land in ``raw``
and nowhere else: a 30-day dashboard would show a recovered hamlet as silent. The ingest
notes the time range of every reading older than that window (`LateData.note`, cheap, on
the hot path); a background task waits until the replay has quietened for ``debounce_s``
(or ``max_wait_s`` at the latest) and runs `backend.rollups.backfill` over the range, at
most ``max_span_s`` of it per run, so an ancient batch never turns into one huge query; the
rest stays pending for the next run. What it did is counted in the ingest's
``backend_stats`` (``late_points``, ``recomputes``, ``recompute_points``,
``recompute_pending_s``).

When the ingest's continuous queries were replaced at start (a changed
``[definitions] sound_threshold_dbfs``), the whole of ``raw``'s retention is recomputed
the same way (`LateData.note_range`), span after span, so past rollups follow the new
definition too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from backend.rollups import RECOMPUTE_WINDOW_MS
from protocols.stored_data import NS_PER_MS

__all__ = ["LATE_AFTER_MS", "LateData"]

log = logging.getLogger("backend.ingest")

# Readings older than the 1-minute level's RESAMPLE FOR miss its continuous query.
LATE_AFTER_MS = RECOMPUTE_WINDOW_MS

Backfill = Callable[[int, int], Awaitable[int]]


def _ts_ms(line: str) -> int | None:
    # Ingest's points carry nanoseconds (backend.ingest.points).
    tail = line[line.rfind(" ") + 1 :]
    return int(tail) // NS_PER_MS if tail.isdigit() else None


class LateData:
    """The pending range of late readings and the task that recomputes it.

    Args:
        backfill: Recomputes ``[start_ms, end_ms)`` at every rollup level; returns points written.
        debounce_s: Wait this long after the last late reading before recomputing.
        max_wait_s: Recompute after this long even while late readings keep coming.
        max_span_s: Recompute at most this much time per run (bounded work).
        clock: Wall clock in seconds (injected in tests).
    """

    def __init__(
        self,
        backfill: Backfill,
        *,
        debounce_s: float = 30.0,
        max_wait_s: float = 300.0,
        max_span_s: float = 2 * 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if debounce_s < 0 or max_wait_s < debounce_s or max_span_s < 60:
            raise ValueError(
                f"late data: need 0 <= debounce_s <= max_wait_s and max_span_s >= 60, got "
                f"{debounce_s}, {max_wait_s}, {max_span_s}"
            )
        self._backfill = backfill
        self.debounce_s = debounce_s
        self.max_wait_s = max_wait_s
        self.max_span_ms = int(max_span_s * 1000)
        self._clock = clock
        self.start_ms: int | None = None
        self.end_ms: int | None = None
        self._first_s = 0.0
        self._last_s = 0.0
        self.late_points = 0
        self.recomputes = 0
        self.recompute_points = 0
        self.recompute_errors = 0

    def note(self, lines: Iterable[str]) -> None:
        """Take note of the late readings among freshly ingested points."""
        now_s = self._clock()
        cutoff = int(now_s * 1000) - LATE_AFTER_MS
        late = [ts for ts in map(_ts_ms, lines) if ts is not None and ts < cutoff]
        if not late:
            return
        self.late_points += len(late)
        low, high = min(late), max(late) + 1
        if self.start_ms is None or self.end_ms is None:
            self.start_ms, self.end_ms, self._first_s = low, high, now_s
        else:
            self.start_ms, self.end_ms = min(self.start_ms, low), max(self.end_ms, high)
        self._last_s = now_s

    def note_range(self, start_ms: int, end_ms: int) -> None:
        """Recompute ``[start_ms, end_ms)`` too (the rollups' definition changed), in bounded spans."""
        if end_ms <= start_ms:
            return
        now_s = self._clock()
        if self.start_ms is None or self.end_ms is None:
            self.start_ms, self.end_ms, self._first_s = start_ms, end_ms, now_s
        else:
            self.start_ms, self.end_ms = min(self.start_ms, start_ms), max(self.end_ms, end_ms)
        self._last_s = now_s

    def due(self) -> bool:
        """A recompute is due: late readings wait, and they quietened or waited long enough."""
        if self.start_ms is None:
            return False
        now_s = self._clock()
        return now_s - self._last_s >= self.debounce_s or now_s - self._first_s >= self.max_wait_s

    def pending_s(self) -> float:
        """Seconds of readings still waiting to be recomputed."""
        if self.start_ms is None or self.end_ms is None:
            return 0.0
        return (self.end_ms - self.start_ms) / 1000

    async def recompute(self) -> int:
        """Recompute the oldest ``max_span_s`` of the pending range now; return points written."""
        if self.start_ms is None or self.end_ms is None:
            return 0
        start, end = self.start_ms, min(self.end_ms, self.start_ms + self.max_span_ms)
        try:
            written = await self._backfill(start, end)
        except Exception as exc:  # InfluxDB away: the range stays pending for the next run
            self.recompute_errors += 1
            log.warning("event=late_recompute_failed start_ms=%d end_ms=%d error=%r", start, end, exc)
            self._first_s = self._last_s = self._clock()
            return 0
        self.recomputes += 1
        self.recompute_points += written
        log.info("event=late_recompute start_ms=%d end_ms=%d points=%d", start, end, written)
        if end >= self.end_ms:
            self.start_ms = self.end_ms = None
        else:
            self.start_ms = end
        return written

    async def run(self, poll_s: float = 1.0) -> None:
        """Recompute whenever due, until cancelled; a long range goes span after span."""
        while True:
            await asyncio.sleep(poll_s)
            errors = self.recompute_errors
            while self.due() and self.recompute_errors == errors:
                await self.recompute()
                await asyncio.sleep(0)  # let ingest run between spans

    def fields(self) -> dict[str, int | float]:
        """Counters for the ingest's ``backend_stats``."""
        return {
            "late_points": self.late_points,
            "recomputes": self.recomputes,
            "recompute_points": self.recompute_points,
            "recompute_errors": self.recompute_errors,
            "recompute_pending_s": self.pending_s(),
        }
