"""A flash-backed ring buffer of fixed-size records in one file (the MicroPython queue).

An ESP32 has no SQLite, but it has a small flash file system. The ring keeps the last
``capacity`` messages; when full, appending drops the oldest one and counts it. Two
header slots are written alternately, each with a generation number and a checksum, so
a power cut in the middle of a header write leaves the previous header readable; each
record carries its own length and checksum, so a torn record is skipped, not replayed
as garbage.

Portable: runs unchanged on MicroPython and CPython (tests run it on both).
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

import struct

_MAGIC = b"TQR1"
_HEADER = "<4sIIIII"  # magic, generation, head, count, dropped, checksum
_HEADER_SIZE = 32
_RECORD_HEAD = "<HI"  # length, checksum
_RECORD_HEAD_SIZE = 6


def checksum(data: "bytes | bytearray | memoryview") -> int:
    """Fletcher-32 style checksum (MicroPython ports do not all have zlib.crc32)."""
    a = 1
    b = 0
    for x in data:
        a = (a + x) % 65521
        b = (b + a) % 65521
    return (b << 16) | a


class RingBuffer:
    """Durable FIFO of at most ``capacity`` records of up to ``record_size - 6`` bytes.

    Args:
        path: the file; created (and pre-sized) if missing.
        capacity: number of record slots.
        record_size: bytes per slot, including a 6-byte record header.
    """

    def __init__(self, path: str, capacity: int = 256, record_size: int = 1024) -> None:
        if capacity < 1 or record_size <= _RECORD_HEAD_SIZE:
            raise ValueError("ring needs capacity >= 1 and record_size > 6")
        self.path = path
        self.capacity = capacity
        self.record_size = record_size
        self.generation = 0
        self.head = 0
        self.count = 0
        self.dropped = 0
        try:
            self._f = open(path, "r+b")  # noqa: SIM115 -- kept open for the ring's lifetime
        except OSError:
            self._f = open(path, "w+b")  # noqa: SIM115
            self._f.write(b"\x00" * (2 * _HEADER_SIZE + capacity * record_size))
            self._f.flush()
        self._load_header()

    @property
    def max_payload(self) -> int:
        """Largest message that fits in one record."""
        return self.record_size - _RECORD_HEAD_SIZE

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def _load_header(self) -> None:
        best = None
        for slot in (0, 1):
            self._f.seek(slot * _HEADER_SIZE)
            raw = self._f.read(_HEADER_SIZE)
            if len(raw) < struct.calcsize(_HEADER):
                continue
            magic, gen, head, count, dropped, check = struct.unpack(_HEADER, raw[: struct.calcsize(_HEADER)])
            if magic != _MAGIC or check != checksum(raw[:20]):
                continue
            if head >= self.capacity or count > self.capacity:
                continue
            if best is None or gen > best[0]:
                best = (gen, head, count, dropped)
        if best is not None:
            self.generation, self.head, self.count, self.dropped = best

    def _save_header(self) -> None:
        self.generation += 1
        body = struct.pack("<4sIIII", _MAGIC, self.generation, self.head, self.count, self.dropped)
        raw = body + struct.pack("<I", checksum(body))
        self._f.seek((self.generation % 2) * _HEADER_SIZE)
        self._f.write(raw)
        self._f.flush()

    def _offset(self, index: int) -> int:
        return 2 * _HEADER_SIZE + (index % self.capacity) * self.record_size

    def append(self, data: bytes) -> int:
        """Store one message durably; return how many old ones were dropped to make room.

        Raises:
            ValueError: the message is larger than a record.
        """
        if len(data) > self.max_payload:
            raise ValueError("message is %d bytes, ring record holds %d" % (len(data), self.max_payload))
        dropped = 0
        if self.count >= self.capacity:
            self.head = (self.head + 1) % self.capacity
            self.count -= 1
            self.dropped += 1
            dropped = 1
        self._f.seek(self._offset(self.head + self.count))
        self._f.write(struct.pack(_RECORD_HEAD, len(data), checksum(data)) + data)
        self._f.flush()
        self.count += 1
        self._save_header()
        return dropped

    def peek(self, n: int, start: int = 0) -> "list[bytes]":
        """Up to ``n`` oldest messages after the first ``start``, oldest first; a torn
        record reads as b""."""
        out = []
        for i in range(start, min(start + n, self.count)):
            self._f.seek(self._offset(self.head + i))
            raw = self._f.read(self.record_size)
            length, check = struct.unpack(_RECORD_HEAD, raw[:_RECORD_HEAD_SIZE])
            data = raw[_RECORD_HEAD_SIZE : _RECORD_HEAD_SIZE + length]
            if length > self.max_payload or len(data) != length or checksum(data) != check:
                data = b""
            out.append(bytes(data))
        return out

    def pop(self, n: int) -> None:
        """Forget the ``n`` oldest messages (delivered: receipted, or acknowledged)."""
        n = min(n, self.count)
        if n <= 0:
            return
        self.head = (self.head + n) % self.capacity
        self.count -= n
        self._save_header()
