"""Queue logic shared by the SQLite queue (CPython) and the flash ring (MicroPython).

What to send next from a backlog: single messages while the backlog is short, ``batch``
messages once it is long (fewer round trips over 4G after an outage), never more than
the protocol's limits per batch.

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

import json

from protocols import payloads

# Kinds that may ride in a batch (protocols: no batch, command or death inside a batch;
# birth is published on its own, retained, on the state topic).
BATCHABLE = ("heartbeat", "audio", "display", "event", "result")

# Bytes a batch adds around its items: {"v":1,"kind":"batch","device":"...","items":[]}
_BATCH_OVERHEAD = 128


def plan_sends(
    rows: "list[tuple[Any, str, int]]",
    backlog: int,
    threshold: int = 50,
    max_items: int = 100,
    max_bytes: int = 204800,
) -> "list[list[Any]]":
    """Group queued messages into publishes, oldest first, keeping their order.

    Args:
        rows: ``(key, kind, size_bytes)`` of the oldest queued messages, in order.
        backlog: how many messages are queued in all.
        threshold: above this backlog, consecutive batchable messages are grouped.
        max_items: most messages in one batch.
        max_bytes: most payload bytes in one batch.

    Returns:
        Groups of keys: a one-element group is published as it is, a longer one as a
        ``batch``.
    """
    if backlog <= threshold:
        return [[row[0]] for row in rows]
    max_items = min(max_items, payloads.MAX_BATCH_ITEMS)
    max_bytes = min(max_bytes, payloads.MAX_BATCH_BYTES) - _BATCH_OVERHEAD
    groups = []  # type: list[list[Any]]
    current = []  # type: list[Any]
    size = 0
    for key, kind, nbytes in rows:
        if kind not in BATCHABLE:
            if current:
                groups.append(current)
                current, size = [], 0
            groups.append([key])
            continue
        if current and (len(current) >= max_items or size + nbytes + 1 > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(key)
        size += nbytes + 1
    if current:
        groups.append(current)
    return groups


def overflow(depth: int, cap: int) -> int:
    """How many of the oldest messages to drop so that ``depth`` fits in ``cap``."""
    if cap <= 0:
        raise ValueError("queue cap must be > 0, got %r" % (cap,))
    return depth - cap if depth > cap else 0


def batch_payload(device: str, items: "list[bytes]") -> bytes:
    """Encode already-encoded messages as one ``batch`` (validated)."""
    decoded = [json.loads(item) for item in items]
    return payloads.encode(payloads.batch(device, decoded))
