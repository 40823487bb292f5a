"""Delivery receipts: tell each device which of its readings are durable.

A device keeps a reading in its durable queue until a receipt covers its ``(boot_id,
seq)``: the broker's PUBACK is not enough, because the broker is not a durable store (a
crash, a restart with a shared subscription). The ingest adds the readings of each chunk
once the batch holding them is durable (written to InfluxDB or fsynced to the spool, the
point where it acknowledges the broker), and publishes at most one receipt per device and
boot per flush: ``stored`` ranges, and ``rejected`` ones for readings it will never store
(invalid, quarantined), so the device does not resend them forever.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocols import payloads, topics
from protocols.errors import InvalidPayload, InvalidTopic

__all__ = ["ReceiptBook", "Sequenced"]

Sequenced = tuple[str, str, int]
"""``(device, boot_id, seq)`` of one reading."""


class ReceiptBook:
    """Durable readings waiting for their receipt, by device and boot."""

    def __init__(self, root: str = topics.ROOT) -> None:
        self.root = root
        self._stored: dict[tuple[str, str], list[int]] = {}
        self._rejected: dict[tuple[str, str], list[int]] = {}
        self.sent = 0
        self.sent_bytes = 0

    def __bool__(self) -> bool:
        return bool(self._stored or self._rejected)

    def add(self, stored: Iterable[Sequenced], rejected: Iterable[Sequenced]) -> None:
        """Readings that are now durable (``stored``) or will never be (``rejected``)."""
        for device, boot_id, seq in stored:
            self._stored.setdefault((device, boot_id), []).append(seq)
        for device, boot_id, seq in rejected:
            self._rejected.setdefault((device, boot_id), []).append(seq)

    def take(self, ts_ms: int) -> list[tuple[str, bytes]]:
        """``(topic, payload)`` of every receipt due, and forget them."""
        out: list[tuple[str, bytes]] = []
        for key in sorted(set(self._stored) | set(self._rejected)):
            device, boot_id = key
            try:
                messages = payloads.receipts(
                    device, boot_id, self._stored.get(key, []), self._rejected.get(key, []), ts_ms
                )
                topic = topics.receipt_topic(device, self.root)
            except (InvalidPayload, InvalidTopic):
                continue  # a boot id or device id no receipt can carry: nothing to confirm
            for msg in messages:
                data = payloads.encode(msg)
                out.append((topic, data))
                self.sent += 1
                self.sent_bytes += len(data)
        self._stored.clear()
        self._rejected.clear()
        return out
