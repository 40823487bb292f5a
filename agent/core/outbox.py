"""The flash ring as a delivery store: the ring plus what has been sent and not yet receipted.

A reading leaves the ring only once the backend's delivery receipt covers its
``(boot_id, seq)`` (``agent/core/receipts.py``, shared with the CPython agent); the
broker's PUBACK only moves it to "in flight". The ring is a FIFO, so the oldest in-flight
readings are popped as soon as they and everything before them are covered. After a
reconnect, or when the oldest unreceipted reading was sent ``timeout_ms`` ago, sending
starts again from the oldest reading (the backend stores a replay on the same point).
Without receipts, a PUBACK pops the reading (``ack``; a backend without receipts).

The store interface of ``agent.core.reporter.Reporter`` (the SQLite queue has the same
methods): ``mark_sent``, ``ack``, ``unsend_all``, ``receipted``; the keys are the
records' bytes as :meth:`RingOutbox.unsent` returned them, ``now`` is in milliseconds.

The in-flight list mirrors the ring's oldest records one for one. A full ring dropping
its oldest record while a send is under way (a command answered while waiting for a
PUBACK) is accounted for, so a receipt never pops a record it does not cover.

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

    from agent.core.ring import RingBuffer

import json

from agent.core import receipts as receipt_logic


def identity(data: bytes) -> "tuple[Any, Any]":
    """``(boot_id, seq)`` of a stored message; ``(None, None)`` for a torn record."""
    if not data:
        return None, None
    try:
        msg = json.loads(data)
        return msg.get("boot_id"), msg.get("seq")
    except (ValueError, AttributeError):
        return None, None


class RingOutbox:
    """The ring and its in-flight readings.

    Args:
        ring: the flash ring (``agent.core.ring.RingBuffer``).
        timeout_ms: resend the unreceipted readings after this long.
    """

    def __init__(self, ring: "RingBuffer", timeout_ms: int = receipt_logic.DEFAULT_TIMEOUT_MS) -> None:
        self.ring = ring
        self.timeout_ms = timeout_ms
        # One entry per ring record from the head that was sent: [boot_id, seq, sent_at_ms, covered].
        self.inflight = []  # type: list[list[Any]]
        self.cleared = 0  # readings receipts took out of the ring
        self._gone = 0  # unsent records the ring dropped since the last unsent()

    @property
    def depth(self) -> int:
        """Readings in the ring (in flight or not yet sent)."""
        return int(self.ring.count)

    @property
    def dropped(self) -> int:
        """Readings the full ring dropped (oldest first), since the ring was made."""
        return int(self.ring.dropped)

    def append(self, data: bytes) -> int:
        """Store one message; return how many old ones the ring dropped for it.

        Raises:
            ValueError: the message is larger than a ring record.
        """
        dropped = int(self.ring.append(data))
        for _ in range(dropped):
            if self.inflight:
                del self.inflight[0]
            else:
                self._gone += 1
        return dropped

    def unsent(self, n: int) -> "list[bytes]":
        """Up to ``n`` oldest messages not yet sent, oldest first (torn ones as b"")."""
        self._gone = 0
        return self.ring.peek(n, len(self.inflight))

    def _still_here(self, rows: "list[bytes]") -> "list[bytes]":
        # Rows the ring dropped since unsent() returned them are not in it any more.
        skip = min(self._gone, len(rows))
        self._gone -= skip
        return rows[skip:]

    def mark_sent(self, rows: "list[bytes]", now_ms: int) -> None:
        """The broker acknowledged these rows (the next ones :meth:`unsent` returned): in
        flight until their receipt."""
        for data in self._still_here(rows):
            boot, seq = identity(data)
            self.inflight.append([boot, seq, now_ms, boot is None])
        self._pop_covered()

    def ack(self, rows: "list[bytes]") -> None:
        """The broker acknowledged these rows and no receipt will come: pop them."""
        self.ring.pop(len(self._still_here(rows)))

    def receipted(self, boot_id: str, ranges: "list[list[int]]") -> int:
        """Mark the in-flight readings a parsed receipt covers; pop the covered prefix and
        return how many left the ring."""
        for entry in self.inflight:
            if entry[0] == boot_id and receipt_logic.covers(ranges, entry[1]):
                entry[3] = True
        return self._pop_covered()

    def unsend_all(self) -> None:
        """Send every ring record again (a new connection: unreceipted readings go again)."""
        self.inflight = []
        self._gone = 0

    def check_timeout(self, now_ms: int) -> bool:
        """Resend from the oldest when it waits for its receipt ``timeout_ms`` or more."""
        for i, entry in enumerate(self.inflight):
            if not entry[3]:
                if receipt_logic.due([(i, entry[2])], now_ms, self.timeout_ms):
                    self.unsend_all()
                    return True
                return False
        return False

    def _pop_covered(self) -> int:
        n = 0
        while n < len(self.inflight) and self.inflight[n][3]:
            n += 1
        if n:
            self.ring.pop(n)
            del self.inflight[:n]
            self.cleared += n
        return n
