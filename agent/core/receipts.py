"""Delivery receipts on the device side: which queued readings a receipt clears, and which
sent readings are due to be sent again.

The backend publishes ``tincoso/v1/<device>/receipt`` once readings are durable (written to
InfluxDB or fsynced to its spool): inclusive ``[first, last]`` seq ranges of one
``boot_id``, ``stored`` or ``rejected`` (invalid, never to be stored). A reading stays in
the device's durable queue until a receipt covers its ``(boot_id, seq)``; the broker's
PUBACK only marks it sent. A sent reading with no receipt is sent again after a reconnect
or once ``timeout_ms`` has passed; the backend stores a replay on the same point, so
sending twice is harmless.

API (used by the CPython agent's SQLite queue and by the MicroPython agent's ring):

- ``parse(data, device)`` -> ``(boot_id, ranges)``: a received receipt, checked.
- ``covers(ranges, seq)`` -> bool.
- ``cleared(entries, boot_id, ranges)`` -> keys of ``(key, boot_id, seq)`` entries covered.
- ``due(entries, now_ms, timeout_ms)`` -> keys of ``(key, sent_at_ms)`` entries to send
  (never sent: ``sent_at_ms`` is None, or sent ``timeout_ms`` ago or more).

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

from protocols import payloads
from protocols.errors import InvalidPayload

DEFAULT_TIMEOUT_MS = 60000


def merge(ranges: "list[Any]") -> "list[list[int]]":
    """Sorted, non-overlapping, non-adjacent copy of inclusive ``[first, last]`` ranges."""
    out = []  # type: list[list[int]]
    for first, last in sorted([int(r[0]), int(r[1])] for r in ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1][1] = last
        else:
            out.append([first, last])
    return out


def parse(data: "bytes | str", device: str) -> "tuple[str, list[list[int]]]":
    """``(boot_id, merged stored+rejected ranges)`` of a receipt for ``device``.

    Raises:
        InvalidPayload: not a valid v1 receipt, or one for another device.
    """
    msg = payloads.decode(data)
    if msg["kind"] != "receipt":
        raise InvalidPayload("expected a receipt, got a %s message" % msg["kind"])
    if msg["device"] != device:
        raise InvalidPayload("receipt is for device %r, not %r" % (msg["device"], device))
    return msg["boot_id"], merge(msg["stored"] + msg["rejected"])


def covers(ranges: "list[list[int]]", seq: int) -> bool:
    """True if ``seq`` lies in one of the merged ``ranges`` (binary search)."""
    lo, hi = 0, len(ranges)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranges[mid][1] < seq:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] <= seq


def cleared(entries: "list[Any]", boot_id: str, ranges: "list[list[int]]") -> "list[Any]":
    """Keys of the ``(key, boot_id, seq)`` entries the receipt covers."""
    return [key for key, boot, seq in entries if boot == boot_id and covers(ranges, seq)]


def due(entries: "list[Any]", now_ms: int, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> "list[Any]":
    """Keys of the ``(key, sent_at_ms)`` entries to send now, in the given order."""
    return [key for key, sent_at in entries if sent_at is None or now_ms - sent_at >= timeout_ms]
