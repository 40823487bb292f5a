"""A crash-safe on-disk spool: an append-only log of records, drained in order.

The ingest appends a batch of line-protocol points here when InfluxDB cannot take it, and
only then acknowledges the batch's messages to the broker; a background task drains the
spool into InfluxDB when it answers again.

Layout: ``DIR/spool-<n:012d>.log`` segments, each a run of records::

    length (u32 big-endian) | crc32(length bytes + payload) (u32 big-endian) | payload

and ``DIR/cursor``: the segment number and byte offset of the next record to drain,
replaced atomically (write, fsync, rename) on every commit. Every append is fsynced
before it returns, so a record whose `append` returned survives ``kill -9`` and power
loss. A record torn by a crash (short, or failing its CRC) at the tail of the newest
segment is cut off when the spool is opened; it was never acknowledged. A bad record in
an older segment (disk corruption) ends that segment: it is counted and logged, never
raised. One process owns a spool directory at a time (``flock`` on ``DIR/lock``).

Two limits keep a long InfluxDB outage from filling the disk that InfluxDB itself (and the
system) needs: ``max_bytes`` on what waits in the spool (appends stop once it is reached),
and ``min_free_bytes`` left free on its file system. An append past either raises
`SpoolFull`; the ingest then leaves the batch's messages unacknowledged, so they wait at
the broker instead.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["Position", "Record", "Spool", "SpoolError", "SpoolFull", "SpoolLocked", "encode_record"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
_PREFIX = "spool-"
_SUFFIX = ".log"
MAX_RECORD_BYTES = 64 * 1024 * 1024


class SpoolError(Exception):
    """The spool cannot be opened or written (disk full, permissions, record too large)."""


class SpoolFull(SpoolError):
    """An append would pass the spool's size cap or its disk's free-space floor."""


class SpoolLocked(SpoolError):
    """Another process already owns this spool directory."""


@dataclass(frozen=True, order=True)
class Position:
    """A place in the spool: segment number and byte offset inside it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class Record:
    """One spooled record and the position just after it (commit that to consume it)."""

    payload: bytes
    end: Position


def _segment_name(number: int) -> str:
    return f"{_PREFIX}{number:012d}{_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_record(f: BinaryIO) -> bytes | None:
    """The next whole, CRC-valid record at ``f``'s position, or None (end, torn or bad)."""
    header = f.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    length, crc = _HEADER.unpack(header)
    if length > MAX_RECORD_BYTES:
        return None
    payload = f.read(length)
    if len(payload) < length or _crc(header[:4], payload) != crc:
        return None
    return payload


def _crc(length_bytes: bytes, payload: bytes) -> int:
    # The length is covered too, so a run of zeros (what a crash can leave in a file's last
    # block) is not a valid empty record.
    return zlib.crc32(payload, zlib.crc32(length_bytes))


def encode_record(payload: bytes) -> bytes:
    """A record as stored on disk (header + payload)."""
    length_bytes = struct.pack(">I", len(payload))
    return length_bytes + struct.pack(">I", _crc(length_bytes, payload)) + payload


class Spool:
    """The spool in one directory; thread-safe (appends and drains run in worker threads).

    Args:
        directory: Created if missing.
        segment_bytes: A new segment starts once the current one reaches this size.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = 8 * 1024 * 1024,
        max_bytes: int = 0,
        min_free_bytes: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.corrupt_records = 0
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.directory / "lock", "a+b")  # noqa: SIM115 (held until close)
        except OSError as exc:
            raise SpoolError(f"cannot open spool directory {self.directory}: {exc}") from exc
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            raise SpoolLocked(f"spool {self.directory} is in use by another process") from exc
        self._cursor = self._load_cursor()
        self._depth = 0
        self._depth_bytes = 0
        self._recover()
        self._tail_file = open(self.directory / _segment_name(self._tail), "ab")  # noqa: SIM115

    # -- opening ---------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        numbers = []
        for path in self.directory.glob(f"{_PREFIX}*{_SUFFIX}"):
            stem = path.name[len(_PREFIX) : -len(_SUFFIX)]
            if stem.isdigit():
                numbers.append(int(stem))
        return sorted(numbers)

    def _load_cursor(self) -> Position:
        try:
            text = (self.directory / "cursor").read_text(encoding="ascii").split()
            return Position(int(text[0]), int(text[1]))
        except FileNotFoundError:
            return Position(0, 0)
        except (OSError, ValueError, IndexError):
            # A cursor is only ever replaced atomically; an unreadable one means outside damage.
            # Draining from the oldest segment again only re-writes points (idempotent).
            log.warning("event=spool_cursor_unreadable dir=%s action=drain_from_oldest", self.directory)
            return Position(0, 0)

    def _recover(self) -> None:
        """Delete consumed segments, cut a torn tail, count what is left to drain."""
        segments = self._segments()
        for number in segments:
            if number < self._cursor.segment:
                (self.directory / _segment_name(number)).unlink()
        segments = [n for n in segments if n >= self._cursor.segment]
        if not segments:
            self._tail = max(self._cursor.segment, 0)
            (self.directory / _segment_name(self._tail)).touch()
            if self._cursor.segment != self._tail:
                self._cursor = Position(self._tail, 0)
            return
        if self._cursor.segment < segments[0]:
            self._cursor = Position(segments[0], 0)
        self._tail = segments[-1]
        for number in segments:
            start = self._cursor.offset if number == self._cursor.segment else 0
            size_now = (self.directory / _segment_name(number)).stat().st_size
            if start > size_now:
                # Only outside damage shortens a segment below the cursor; resume at its end.
                self._cursor = Position(number, size_now)
                start = size_now
            valid_end, count, size = self._scan(number, start)
            path = self.directory / _segment_name(number)
            if number == self._tail and valid_end < path.stat().st_size:
                log.warning(
                    "event=spool_torn_tail segment=%s cut_bytes=%d",
                    path.name,
                    path.stat().st_size - valid_end,
                )
                with open(path, "r+b") as f:
                    f.truncate(valid_end)
                    os.fsync(f.fileno())
            self._depth += count
            self._depth_bytes += size

    def _scan(self, number: int, start: int) -> tuple[int, int, int]:
        """(offset after the last good record, records, payload bytes) from ``start``."""
        count = size = 0
        path = self.directory / _segment_name(number)
        with open(path, "rb") as f:
            f.seek(start)
            end = start
            while (payload := _read_record(f)) is not None:
                count += 1
                size += len(payload)
                end = f.tell()
            if end < path.stat().st_size and number != self._tail:
                self.corrupt_records += 1
                log.error("event=spool_corrupt segment=%s offset=%d action=skip_rest", path.name, end)
        return end, count, size

    # -- public API ------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Records appended and not yet committed as drained."""
        return self._depth

    @property
    def depth_bytes(self) -> int:
        """Payload bytes of those records."""
        return self._depth_bytes

    def append(self, payload: bytes) -> None:
        """Append one record and fsync it; once this returns the record survives a crash.

        Raises:
            SpoolError: the record is too large or the disk refused it.
        """
        if len(payload) > MAX_RECORD_BYTES:
            raise SpoolError(f"spool record is {len(payload)} bytes, limit {MAX_RECORD_BYTES}")
        data = encode_record(payload)
        with self._lock:
            self._check_room(len(payload), len(data))
            start: int | None = None
            try:
                if self._tail_file.tell() >= self.segment_bytes:
                    self._roll()
                start = self._tail_file.tell()
                self._tail_file.write(data)
                self._tail_file.flush()
                os.fsync(self._tail_file.fileno())
            except OSError as exc:
                self._cut_back(start)
                raise SpoolError(f"cannot append to spool {self.directory}: {exc}") from exc
            self._depth += 1
            self._depth_bytes += len(payload)

    def _check_room(self, payload_bytes: int, record_bytes: int) -> None:
        # The cap stops appends once it is reached (the last batch may pass it), so a batch
        # larger than the cap still finds room in an empty spool.
        if self.max_bytes and self._depth_bytes >= self.max_bytes:
            raise SpoolFull(
                f"spool {self.directory} is full: {self._depth_bytes:,} bytes wait, "
                f"its cap is {self.max_bytes:,} (spool.max_mb)"
            )
        if self.min_free_bytes:
            try:
                free = shutil.disk_usage(self.directory).free
            except OSError as exc:
                raise SpoolError(f"cannot check free space for spool {self.directory}: {exc}") from exc
            if free - record_bytes < self.min_free_bytes:
                raise SpoolFull(
                    f"disk of spool {self.directory} is nearly full: {free // 2**20:,} MiB free, "
                    f"{self.min_free_bytes // 2**20:,} MiB kept for InfluxDB and the system "
                    "(spool.min_free_mb)"
                )

    def _cut_back(self, start: int | None) -> None:
        # A failed write may leave part of the record behind; later appends must not follow it.
        if start is None:
            return
        try:
            self._tail_file.truncate(start)
            self._tail_file.seek(start)
        except OSError:
            log.exception("event=spool_cut_back_failed dir=%s", self.directory)

    def _roll(self) -> None:
        self._tail_file.close()
        self._tail += 1
        self._tail_file = open(self.directory / _segment_name(self._tail), "ab")  # noqa: SIM115
        _fsync_dir(self.directory)

    def read(self, max_records: int, max_bytes: int = 16 * 1024 * 1024) -> list[Record]:
        """Up to ``max_records`` records (at least one if any) from the drain cursor, in order.

        Reading does not consume: `commit` the last record's ``end`` once it is written.
        """
        out: list[Record] = []
        total = 0
        with self._lock:
            self._tail_file.flush()
            position = self._cursor
            while len(out) < max_records and total < max_bytes:
                path = self.directory / _segment_name(position.segment)
                if path.exists():
                    with open(path, "rb") as f:
                        f.seek(position.offset)
                        while len(out) < max_records and total < max_bytes:
                            payload = _read_record(f)
                            if payload is None:
                                break
                            total += len(payload)
                            position = Position(position.segment, f.tell())
                            out.append(Record(payload, position))
                if len(out) >= max_records or total >= max_bytes or position.segment >= self._tail:
                    break
                # This older segment is finished (or ends in a corrupt record): the next record
                # is at the start of the next segment, and committing this end moves past it.
                position = Position(position.segment + 1, 0)
                if out:
                    out[-1] = Record(out[-1].payload, position)
        return out

    def commit(self, end: Position) -> None:
        """Mark every record before ``end`` drained (durably) and delete drained segments."""
        with self._lock:
            if end <= self._cursor:
                return
            consumed, consumed_bytes = self._count_between(self._cursor, end)
            tmp = self.directory / "cursor.tmp"
            with open(tmp, "w", encoding="ascii") as f:
                f.write(f"{end.segment} {end.offset}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / "cursor")
            _fsync_dir(self.directory)
            for number in self._segments():
                if number < end.segment:
                    (self.directory / _segment_name(number)).unlink(missing_ok=True)
            self._cursor = end
            self._depth = max(0, self._depth - consumed)
            self._depth_bytes = max(0, self._depth_bytes - consumed_bytes)

    def _count_between(self, start: Position, end: Position) -> tuple[int, int]:
        count = size = 0
        for number in range(start.segment, end.segment + 1):
            path = self.directory / _segment_name(number)
            try:
                f = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                continue
            with f:
                f.seek(start.offset if number == start.segment else 0)
                limit = end.offset if number == end.segment else None
                while limit is None or f.tell() < limit:
                    payload = _read_record(f)
                    if payload is None:
                        break
                    count += 1
                    size += len(payload)
        return count, size

    def close(self) -> None:
        """Close the files and release the directory lock."""
        with self._lock:
            self._tail_file.close()
            self._lock_file.close()
