"""Sequence-gap detection per (device, boot_id).

Within a boot the agent numbers every message, so a missing number is a lost message. After
an outage the agent sends a fresh birth before replaying its backlog, so numbers arrive out
of order: a hole is only reported once it has stayed open for ``grace_s``, and late
messages that fill it shrink or close it first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["DataGap", "GapDetector"]


@dataclass(frozen=True)
class DataGap:
    """Messages ``from_seq``..``to_seq`` of one boot never arrived."""

    device: str
    boot_id: str
    from_seq: int
    to_seq: int
    opened_at: float

    @property
    def missing(self) -> int:
        """How many messages are missing."""
        return self.to_seq - self.from_seq + 1


@dataclass
class _Hole:
    lo: int
    hi: int
    opened_at: float


@dataclass
class _Track:
    high: int
    holes: list[_Hole] = field(default_factory=list)


class GapDetector:
    """Finds lost messages from ``seq`` numbers.

    Args:
        grace_s: How long a hole may wait for late (replayed) messages before it is a gap.
        boots_per_device: Boots remembered per device (a backlog of the previous boot may
            arrive after the new one started).
        max_holes: Holes kept per boot; beyond it the oldest is reported at once.
    """

    def __init__(self, grace_s: float = 120.0, *, boots_per_device: int = 4, max_holes: int = 256) -> None:
        self.grace_s = grace_s
        self.boots_per_device = boots_per_device
        self.max_holes = max_holes
        self._tracks: dict[str, OrderedDict[str, _Track]] = {}
        self._overflow: list[DataGap] = []

    def observe(self, device: str, boot_id: str, seq: int, now: float) -> None:
        """Record that message ``seq`` of ``boot_id`` arrived at ``now``."""
        boots = self._tracks.setdefault(device, OrderedDict())
        track = boots.get(boot_id)
        if track is None:
            boots[boot_id] = _Track(high=seq)
            while len(boots) > self.boots_per_device:
                old_id, old = boots.popitem(last=False)
                self._overflow += [self._gap(device, old_id, h) for h in old.holes]
            return
        boots.move_to_end(boot_id)
        if seq > track.high + 1:
            track.holes.append(_Hole(track.high + 1, seq - 1, now))
            if len(track.holes) > self.max_holes:
                self._overflow.append(self._gap(device, boot_id, track.holes.pop(0)))
        if seq > track.high:
            track.high = seq
            return
        self._fill(track, seq)

    def expire(self, now: float) -> list[DataGap]:
        """Holes open for ``grace_s`` or longer, now reported as gaps (each only once)."""
        gaps, self._overflow = self._overflow, []
        for device, boots in self._tracks.items():
            for boot_id, track in boots.items():
                due = [h for h in track.holes if now - h.opened_at >= self.grace_s]
                if due:
                    track.holes = [h for h in track.holes if now - h.opened_at < self.grace_s]
                    gaps += [self._gap(device, boot_id, h) for h in due]
        return gaps

    def pending(self, device: str) -> int:
        """Messages of ``device`` currently missing but still within the grace time."""
        return sum(h.hi - h.lo + 1 for t in self._tracks.get(device, {}).values() for h in t.holes)

    @staticmethod
    def _fill(track: _Track, seq: int) -> None:
        for i, hole in enumerate(track.holes):
            if hole.lo <= seq <= hole.hi:
                pieces = [
                    _Hole(lo, hi, hole.opened_at)
                    for lo, hi in ((hole.lo, seq - 1), (seq + 1, hole.hi))
                    if lo <= hi
                ]
                track.holes[i : i + 1] = pieces
                return

    @staticmethod
    def _gap(device: str, boot_id: str, hole: _Hole) -> DataGap:
        return DataGap(device, boot_id, hole.lo, hole.hi, hole.opened_at)
