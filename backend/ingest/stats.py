"""The ingest's own counters (``backend_stats``) and rate-limited logging of bad input."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from backend.influx import FieldValue, line_ns
from protocols.stored_data import NS_PER_MS

__all__ = ["IngestStats", "InvalidInputLog"]

log = logging.getLogger("backend.ingest")


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


class IngestStats:
    """Counters since start; write latencies since the last report."""

    def __init__(self) -> None:
        self.messages_in = 0
        self.points_in = 0
        self.written = 0
        self.spooled = 0
        self.drained = 0
        self.rejected = 0
        self.invalid = 0
        self.unknown_devices = 0
        self.batches = 0
        self.spool_errors = 0
        self.invalid_by: Counter[tuple[str, str]] = Counter()
        self.unknown_ids: set[str] = set()
        self._latencies_ms: deque[float] = deque(maxlen=10_000)
        # More counters of the process (the late-data recompute's), merged into `fields`.
        self.extra: Callable[[], dict[str, int | float]] | None = None

    def record_invalid(self, device: str, reason: str) -> None:
        """Count one quarantined message by device and reason."""
        self.invalid_by[(device, reason)] += 1
        if reason == "unknown_device":
            self.unknown_devices += 1
            if len(self.unknown_ids) < 10_000:
                self.unknown_ids.add(device)
        else:
            self.invalid += 1

    def record_write(self, latency_ms: float) -> None:
        """One successful InfluxDB write and how long it took."""
        self._latencies_ms.append(latency_ms)

    def fields(self, spool_depth: int, spool_bytes: int) -> dict[str, FieldValue | None]:
        """The ``backend_stats`` fields now; resets the latency window."""
        latencies = sorted(self._latencies_ms)
        self._latencies_ms.clear()
        return {
            "messages_in": self.messages_in,
            "points_in": self.points_in,
            "written": self.written,
            "spooled": self.spooled,
            "drained": self.drained,
            "rejected": self.rejected,
            "invalid": self.invalid,
            "unknown_devices": self.unknown_devices,
            "unknown_device_ids": len(self.unknown_ids),
            "batches": self.batches,
            "spool_depth": spool_depth,
            "spool_bytes": spool_bytes,
            "spool_errors": self.spool_errors,
            "write_latency_p50_ms": _percentile(latencies, 0.50) if latencies else None,
            "write_latency_p95_ms": _percentile(latencies, 0.95) if latencies else None,
            **(self.extra() if self.extra is not None else {}),
        }

    def line(self, process: str, role: str, ts_ms: int, spool_depth: int, spool_bytes: int) -> str:
        """The ``backend_stats`` point, in nanoseconds like every point of ingest."""
        tags = {"process": process, "role": role}
        return line_ns("backend_stats", tags, self.fields(spool_depth, spool_bytes), ts_ms * NS_PER_MS)


class InvalidInputLog:
    """Logs bad input at most once per device per interval, with how many were held back."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def report(self, device: str, reason: str, detail: str, topic: str) -> bool:
        """Log this rejection unless the device was logged recently; True if logged."""
        now = self._clock()
        last = self._last.get(device)
        if last is not None and now - last < self.interval_s:
            self._held[device] += 1
            return False
        if len(self._last) > 100_000:
            self._last.clear()
        self._last[device] = now
        held = self._held.pop(device, 0)
        log.warning(
            "event=message_quarantined device=%s reason=%s topic=%r detail=%r suppressed_since_last=%d",
            device,
            reason,
            topic[:200],
            detail[:300],
            held,
        )
        return True
