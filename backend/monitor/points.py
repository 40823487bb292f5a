"""The monitor's InfluxDB writes: buffered and flushed in the background, never blocking rules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping

from backend.influx import InfluxClient, InfluxError, InfluxUnavailable, line

__all__ = ["PointWriter"]

log = logging.getLogger(__name__)

FieldValue = bool | int | float | str


class PointWriter:
    """Collects points and writes them in batches; keeps them while InfluxDB is away.

    Args:
        influx: The client, or None to only count (monitor without a database).
        max_points: Points held at most; beyond it the oldest are dropped and counted.
        batch: Points per write.
        interval_s: Pause between flushes.
    """

    def __init__(
        self,
        influx: InfluxClient | None,
        *,
        max_points: int = 100_000,
        batch: int = 5000,
        interval_s: float = 0.2,
    ) -> None:
        self.influx = influx
        self.batch = batch
        self.interval_s = interval_s
        self._lines: deque[str] = deque(maxlen=max_points)
        self._last_ms: dict[tuple[str, tuple[tuple[str, str | None], ...]], int] = {}
        self.written = 0
        self.dropped = 0
        self.invalid = 0

    def add(
        self,
        measurement: str,
        tags: Mapping[str, str | None],
        fields: Mapping[str, FieldValue | None],
        ts: float,
        *,
        exact: bool = False,
    ) -> None:
        """Queue one point (``ts`` in epoch seconds).

        InfluxDB keeps one point per series and timestamp, so a point landing on (or just
        before) the series' previous millisecond is moved 1 ms after it: two deliveries
        or state changes in the same millisecond both stay. ``exact`` keeps ``ts``: the point
        completes the one already there (its fields are merged into it).
        """
        key = (measurement, tuple(sorted(tags.items())))
        ts_ms = int(ts * 1000)
        last = self._last_ms.get(key)
        if not exact and last is not None and last - 1000 < ts_ms <= last:
            ts_ms = last + 1
        try:
            text = line(measurement, tags, fields, ts_ms)
        except ValueError as exc:
            self.invalid += 1
            log.error("monitor point %s not written: %s", measurement, exc)
            return
        if len(self._last_ms) > 100_000:
            self._last_ms.clear()
        self._last_ms[key] = max(ts_ms, last or 0)
        if len(self._lines) == self._lines.maxlen:
            self.dropped += 1
        self._lines.append(text)

    def pending(self) -> int:
        """Points not yet written."""
        return len(self._lines)

    async def flush(self) -> None:
        """Write what is queued; on failure keep it for the next flush."""
        while self._lines and self.influx is not None:
            chunk = [self._lines[i] for i in range(min(self.batch, len(self._lines)))]
            try:
                await self.influx.write(chunk)
            except InfluxUnavailable as exc:
                log.warning("InfluxDB unavailable, %d monitor points held: %s", len(self._lines), exc)
                return
            except InfluxError as exc:
                log.error("InfluxDB refused %d monitor points, dropped: %s", len(chunk), exc)
                self.invalid += len(chunk)
            for _ in chunk:
                self._lines.popleft()
            self.written += len(chunk)
        if self.influx is None:
            self._lines.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``interval_s`` until ``stop`` is set, then once more."""
        while not stop.is_set():
            await self.flush()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await stop.wait()
        await self.flush()
