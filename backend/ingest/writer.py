"""Batches points and makes them durable: in InfluxDB, or else fsynced to the spool.

A message's acknowledgement runs only after the batch holding its points is durable, so a
crash at any moment leaves each message either acknowledged-and-stored or unacknowledged
(the broker redelivers it). A background task drains the spool when InfluxDB answers,
(re)creating the database first; points InfluxDB refuses (4xx) are isolated by bisection,
counted and logged, so one bad point never blocks the rest.

Every point of a writer has one timestamp precision (the ingest's are nanoseconds, see
`backend.ingest.points`). A spool record of another precision starts with a
``#precision=<p>`` line; a record without one holds milliseconds (the spool of a version
before nanoseconds), and the drain converts each record to the writer's precision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from backend.influx import InfluxClient, InfluxError, InfluxUnavailable
from backend.ingest.stats import IngestStats
from backend.rollups import RetentionConfig, ensure_retention_and_rollups
from backend.spool import Spool, SpoolError

__all__ = ["Ack", "DurabilityError", "DurableWriter", "record_lines", "spool_record"]

log = logging.getLogger("backend.ingest")

Ack = Callable[[], None]


# Nanoseconds per unit of each precision a writer may use.
_SCALE = {"ns": 1, "ms": 1_000_000}
_MARK = "#precision="


def spool_record(lines: list[str], precision: str) -> bytes:
    """The spool record of points with ``precision`` timestamps (marked unless ``ms``)."""
    head = [] if precision == "ms" else [_MARK + precision]
    return "\n".join([*head, *lines]).encode("utf-8")


def record_lines(payload: bytes, precision: str) -> list[str]:
    """The points of a spool record, timestamps converted to ``precision``."""
    lines = payload.decode("utf-8", errors="replace").split("\n")
    stored = "ms"
    if lines and lines[0].startswith(_MARK):
        stored = lines.pop(0)[len(_MARK) :]
    if stored == precision or stored not in _SCALE:
        return lines
    return [_rescale(p, _SCALE[stored], _SCALE[precision]) for p in lines]


def _rescale(point: str, from_ns: int, to_ns: int) -> str:
    head, _, tail = point.rpartition(" ")
    if not head or not tail.isdigit():
        return point
    return f"{head} {int(tail) * from_ns // to_ns}"


class DurabilityError(Exception):
    """A batch could be neither written nor spooled; its messages stay unacknowledged."""


class DurableWriter:
    """Collects points with their acknowledgements and flushes them at N points or T ms.

    Args:
        influx: Client of the target database.
        spool: The on-disk spool of this process.
        stats: Counters to update.
        batch_points: Flush once this many points wait.
        batch_ms: Flush this long after the first waiting point at the latest.
        max_pending_acks: Flush once this many messages wait for their acknowledgement
            (the broker stops sending once its in-flight window, the MQTT receive maximum,
            is full: flushing before that keeps messages coming during the write).
        idle_ms: Flush once no message has come for this long while some wait for their
            acknowledgement: a broker whose own window is smaller than ours (Mosquitto's
            20 for MQTT 3.1.1, EMQX's 32) has stopped sending, and would otherwise wait
            ``batch_ms`` for every window. 0 turns this off.
        drain_records: Spool records per drain write.
        retention: Retention policies and rollups to create or update on connect
            (backend/rollups.py); None only creates the database.
        precision: The timestamp precision of every point added (``ms`` or ``ns``).
    """

    def __init__(
        self,
        influx: InfluxClient,
        spool: Spool,
        stats: IngestStats,
        *,
        batch_points: int = 5000,
        batch_ms: int = 200,
        max_pending_acks: int = 1000,
        idle_ms: int = 20,
        drain_records: int = 20,
        retention: RetentionConfig | None = None,
        precision: str = "ms",
    ) -> None:
        if precision not in _SCALE:
            raise ValueError(f"precision must be one of {', '.join(_SCALE)}, got {precision!r}")
        self.precision = precision
        self.influx = influx
        self.retention = retention
        self.spool = spool
        self.stats = stats
        self.batch_points = batch_points
        self.batch_ms = batch_ms
        self.max_pending_acks = max_pending_acks
        self.idle_ms = idle_ms
        self.drain_records = drain_records
        self.influx_up = False
        self._lines: list[str] = []
        # Called with every batch InfluxDB stored (late-data recompute, backend/ingest/late_data.py).
        self.on_written: Callable[[list[str]], None] | None = None
        # Called with the continuous queries replaced at connect (their definition changed).
        self.on_rollups_replaced: Callable[[list[str]], None] | None = None
        self._acks: list[Ack] = []
        self._pending_messages = 0
        self._first_at = 0.0
        self._last_at = 0.0
        self._has_data = asyncio.Event()
        self._full = asyncio.Event()
        self._drain_wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self.failed = asyncio.Event()
        """Set when a batch was neither written nor spooled (its messages stay unacknowledged)."""

    # -- intake ----------------------------------------------------------------------------

    def add(self, lines: list[str], ack: Ack | None = None, *, messages: int = 1) -> None:
        """Queue the points of ``messages`` messages; ``ack`` runs once they are durable.

        Acks run in the order they were added. When a batch cannot be made durable its
        acks never run and `failed` is set: the caller should then drop its broker
        session, so the broker redelivers them.
        """
        self._last_at = time.monotonic()
        if not self._has_data.is_set():
            self._first_at = self._last_at
            self._has_data.set()
        self._lines.extend(lines)
        if ack is not None:
            self._acks.append(ack)
            self._pending_messages += messages
        if len(self._lines) >= self.batch_points or self._pending_messages >= self.max_pending_acks:
            self._full.set()

    # -- background tasks ------------------------------------------------------------------

    async def run(self) -> None:
        """Flush on time or size and drain the spool, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._flush_loop())
            group.create_task(self._drain_loop())

    def _flush_at(self) -> float:
        """When the waiting batch is due: ``batch_ms`` after its first point, or earlier
        when the messages awaiting acknowledgement stopped coming ``idle_ms`` ago."""
        due = self._first_at + self.batch_ms / 1000
        if self.idle_ms and self._pending_messages:
            due = min(due, self._last_at + self.idle_ms / 1000)
        return due

    async def _flush_loop(self) -> None:
        while True:
            await self._has_data.wait()
            while not self._full.is_set() and (remaining := self._flush_at() - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._full.wait()
            try:
                await self.flush()
            except DurabilityError:
                self.failed.set()

    async def flush(self) -> None:
        """Make every waiting point durable, then acknowledge their messages in order.

        Raises:
            DurabilityError: neither InfluxDB nor the spool took the batch.
        """
        async with self._flush_lock:
            lines, acks = self._lines, self._acks
            self._lines, self._acks, self._pending_messages = [], [], 0
            self._has_data.clear()
            self._full.clear()
            if lines:
                await self._make_durable(lines)
            for ack in acks:
                ack()

    async def _make_durable(self, lines: list[str]) -> None:
        self.stats.batches += 1
        if self.influx_up:
            try:
                await self._write(lines)
                return
            except InfluxUnavailable as exc:
                self._went_down(exc)
        payload = spool_record(lines, self.precision)
        try:
            await asyncio.to_thread(self.spool.append, payload)
        except SpoolError as exc:
            self.stats.spool_errors += 1
            log.error("event=spool_append_failed points=%d error=%r", len(lines), str(exc))
            raise DurabilityError(str(exc)) from exc
        self.stats.spooled += len(lines)
        self._drain_wake.set()

    def _went_down(self, exc: Exception) -> None:
        if self.influx_up:
            log.warning("event=influx_down action=spool error=%r", str(exc)[:300])
        self.influx_up = False
        self._drain_wake.set()

    async def _write(self, lines: list[str]) -> int:
        """Write, isolating refused points; return how many were written.

        Raises:
            InfluxUnavailable: InfluxDB is away (or lost the database): nothing is done.
        """
        started = time.monotonic()
        try:
            await self.influx.write(lines, precision=self.precision)
        except InfluxUnavailable:
            raise
        except InfluxError as exc:
            if "database not found" in str(exc):
                raise InfluxUnavailable(str(exc)) from exc
            if len(lines) == 1:
                self.stats.rejected += 1
                log.error("event=point_rejected error=%r point=%r", str(exc)[:300], lines[0][:300])
                return 0
            half = len(lines) // 2
            return await self._write(lines[:half]) + await self._write(lines[half:])
        self.stats.record_write((time.monotonic() - started) * 1000)
        self.stats.written += len(lines)
        if self.on_written is not None:
            self.on_written(lines)
        return len(lines)

    async def _drain_loop(self) -> None:
        while True:
            if not self.influx_up:
                await self._reconnect()
            if self.spool.depth == 0:
                self._drain_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._drain_wake.wait()
                continue
            # About one live batch's worth per write (line protocol runs ~200-300 bytes a point).
            records = await asyncio.to_thread(self.spool.read, self.drain_records, self.batch_points * 300)
            if not records:
                continue
            lines = [p for r in records for p in record_lines(r.payload, self.precision)]
            try:
                written = await self._write(lines)
            except InfluxUnavailable as exc:
                self._went_down(exc)
                continue
            await asyncio.to_thread(self.spool.commit, records[-1].end)
            self.stats.drained += written
            if self.spool.depth == 0:
                log.info("event=spool_drained drained_total=%d", self.stats.drained)

    async def connect(self) -> bool:
        """One attempt to reach InfluxDB and create the database; True if it is up."""
        try:
            if not await self.influx.ping():
                return False
        except InfluxError:
            return False
        try:
            if self.retention is not None:
                replaced = await ensure_retention_and_rollups(self.influx, self.retention)
                if replaced and self.on_rollups_replaced is not None:
                    self.on_rollups_replaced(replaced)
            else:
                await self.influx.create_database()
        except InfluxUnavailable:
            return False
        except InfluxError as exc:
            # A non-admin user may not create databases; the database may well exist.
            log.warning(
                "event=influx_create_database_failed database=%s error=%r", self.influx.database, str(exc)
            )
        if not self.influx_up:
            log.info("event=influx_up url=%s database=%s", self.influx.url, self.influx.database)
        self.influx_up = True
        return True

    async def _reconnect(self) -> None:
        delay = 0.2
        while not await self.connect():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
