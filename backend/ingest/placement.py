"""Placing readings in time when the device clock is not synchronised.

A device without NTP still counts ``mono_ms`` from boot. For each (device, boot) the
backend keeps an anchor: the wall-clock time of that boot, estimated as
``receive_time_ms - mono_ms``. Network and queueing delay only ever make that estimate
later, never earlier, so the smallest estimate seen is the best: the anchor follows the
minimum. A live delivery may also raise it once the anchor is ``refresh_ms`` old, so slow
drift between the device's oscillator and the server clock is followed over long uptimes.
Keeping the minimum also makes the anchor settle, so a QoS-1 duplicate delivered later is
placed at the same timestamp as the original (and overwrites it in InfluxDB).

One reading with a wrong ``mono_ms`` (a firmware bug, a corrupt flash record) would give an
estimate far earlier than the truth and, adopted as the minimum, place every later reading
of that boot out of range. So an estimate more than ``max_skew_ms`` below the anchor is
only a candidate until a second reading of the boot confirms it (an estimate within
``max_skew_ms`` of it, or lower): after an outage the live readings confirm each other at
once, a lone outlier never is. An estimate before 2000 is never taken.

A device may also *claim* a synchronised clock that is wrong (an RTC set a day ahead, a
bad NTP server). Delays only make the anchor later, so ``anchor + mono_ms`` is never
earlier than the moment a reading was made: a ``ts`` more than ``max_skew_ms`` after it
is certainly wrong, and such readings are placed like ``clock_ok=false`` ones. A clock
that runs *behind* cannot be told apart from a late delivery this way; the agent's own
check (``clock_ok``) has to catch that.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["ClockPlacer"]

# No tincoso device booted before 2000-01-01: an earlier estimate is a wrong mono_ms.
_EARLIEST_BOOT_MS = 946_684_800_000


class ClockPlacer:
    """Per-(device, boot) anchors; bounded (least recently used boots are forgotten).

    Args:
        refresh_ms: Age after which a live message may move the anchor later.
        max_skew_ms: How far ahead of the anchor a "synchronised" clock may run before its
            readings are placed by the anchor instead.
        max_boots: How many (device, boot) anchors to keep.
    """

    def __init__(
        self, *, refresh_ms: int = 600_000, max_boots: int = 100_000, max_skew_ms: int = 300_000
    ) -> None:
        self.refresh_ms = refresh_ms
        self.max_boots = max_boots
        self.max_skew_ms = max_skew_ms
        # (device, boot_id) -> (anchor_ms, set_at_ms)
        self._anchors: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        # (device, boot_id) -> a much earlier estimate waiting for a second reading
        self._unconfirmed: dict[tuple[str, str], int] = {}
        self.outliers = 0

    def observe(self, device: str, boot_id: str, candidate_ms: int, now_ms: int, *, live: bool) -> None:
        """Take ``receive_time - mono_ms`` of one message into the (device, boot) anchor."""
        key = (device, boot_id)
        if candidate_ms < _EARLIEST_BOOT_MS:
            self.outliers += 1
            return
        current = self._anchors.get(key)
        if current is not None and candidate_ms < current[0] - self.max_skew_ms:
            earlier = self._unconfirmed.get(key)
            if earlier is None or candidate_ms > earlier + self.max_skew_ms:
                if len(self._unconfirmed) >= self.max_boots:
                    self._unconfirmed.clear()
                self._unconfirmed[key] = candidate_ms
                self.outliers += 1
                return
            del self._unconfirmed[key]
            candidate_ms = max(candidate_ms, earlier)
        if current is None or candidate_ms < current[0] or (live and now_ms - current[1] >= self.refresh_ms):
            self._anchors[key] = (candidate_ms, now_ms)
        self._anchors.move_to_end(key)
        while len(self._anchors) > self.max_boots:
            self._anchors.popitem(last=False)

    def anchor(self, device: str, boot_id: str) -> int | None:
        """The current anchor (wall-clock ms at boot) of (device, boot), if any."""
        current = self._anchors.get((device, boot_id))
        return None if current is None else current[0]

    def place(self, msg: dict[str, Any]) -> tuple[int, str]:
        """``(timestamp_ms, placed)`` of a validated sequenced message already `observe`-d.

        ``placed`` is ``"device"`` (its own synchronised clock) or ``"received"``.
        """
        anchor = self.anchor(msg["device"], msg["boot_id"])
        if anchor is None:  # not observed: the caller broke the contract; fall back to the device
            return int(msg["ts"]), "device"
        made = anchor + int(msg["mono_ms"])
        if msg["clock_ok"] and int(msg["ts"]) <= made + self.max_skew_ms:
            return int(msg["ts"]), "device"
        return made, "received"

    def export(self) -> dict[str, list[int]]:
        """The anchors as JSON-able data (to survive a restart)."""
        return {f"{d}\n{b}": [a, t] for (d, b), (a, t) in self._anchors.items()}

    def restore(self, data: dict[str, Any]) -> None:
        """Take anchors saved by `export`; malformed entries are skipped."""
        for key, value in data.items():
            parts = str(key).split("\n")
            if len(parts) != 2 or not isinstance(value, list) or len(value) != 2:
                continue
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                self._anchors[(parts[0], parts[1])] = (value[0], value[1])
