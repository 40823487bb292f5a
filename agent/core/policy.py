"""Reporting policy: when to send a heartbeat, telemetry on change, and full snapshots.

A field agent on 4G pays per byte and shares its uplink with the audio stream, so
telemetry goes out when something changed by more than a dead band, plus a full
snapshot every ``snapshot_s`` so the backend never waits long for a complete picture.
Heartbeats go out every ``heartbeat_s``. Every period is spread by a per-device jitter
so that a commune's speaker clusters, all restarted by the same power cut, do not
report in lockstep.

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

# A change smaller than this does not trigger a telemetry message on its own. Fields
# that change every reading by nature (counters, ages) have an infinite band: they
# ride along with snapshots and real changes. Fields not listed: any change counts.
_NEVER = float("inf")
DEFAULT_DEADBANDS = {
    "rms_dbfs": 6.0,
    "peak_dbfs": 6.0,
    "amp_power_w": 10.0,
    "amp_voltage_v": 10.0,
    "amp_current_a": 0.1,
    "amp_energy_wh": _NEVER,
    "dead_air_s": _NEVER,
    "window_s": _NEVER,
    "temp_c": 3.0,
    "source_sync_age_s": _NEVER,
    "uptime_s": _NEVER,
    "signal_dbm": 6.0,
    "disk_free_mb": 50.0,
    "queue_depth": _NEVER,
    "queue_dropped": _NEVER,
}


def device_seed(device: str) -> int:
    """A stable 31-bit number from a device id (same on CPython and MicroPython)."""
    h = 2166136261
    for ch in device:
        h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
    return h & 0x7FFFFFFF


class Jitter:
    """Deterministic pseudo-random spread in [-fraction, +fraction] of a period.

    A linear congruential generator seeded by the device id: no ``random`` module
    differences between ports, and a test can predict it.
    """

    def __init__(self, seed: int, fraction: float = 0.1) -> None:
        if not 0 <= fraction < 1:
            raise ValueError("jitter fraction must be in [0, 1), got %r" % (fraction,))
        self.fraction = fraction
        self._state = seed & 0x7FFFFFFF

    def unit(self) -> float:
        """Next value in [0, 1)."""
        self._state = (self._state * 1103515245 + 12345) & 0x7FFFFFFF
        return self._state / 2147483648.0

    def spread(self, period_s: float) -> float:
        """``period_s`` moved by up to ``fraction`` of itself either way."""
        return period_s * (1.0 + self.fraction * (2.0 * self.unit() - 1.0))


def changed(
    old: "dict[str, Any] | None", new: "dict[str, Any]", deadbands: "dict[str, float]"
) -> "list[str]":
    """Names of the fields of ``new`` that differ from ``old`` by more than their dead band."""
    if old is None:
        return sorted(new)
    out = []
    for name in new:
        a = old.get(name)
        b = new[name]
        if _is_number(a) and _is_number(b):
            band = deadbands.get(name, 0.0)
            if abs(b - a) > band:
                out.append(name)
        elif a != b or (name not in old):
            out.append(name)
    out.sort()
    return out


def _is_number(x: "Any") -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class ReportingPolicy:
    """Decides, at each poll, which messages are due.

    Args:
        device: device id; seeds the jitter.
        heartbeat_s: seconds between heartbeats.
        snapshot_s: seconds between full telemetry snapshots per kind.
        jitter: fraction of each period by which it is spread.
        deadbands: per-field change thresholds (defaults: ``DEFAULT_DEADBANDS``).
        now_s: monotonic time at start; the first heartbeat is due at once and the first
            snapshot of each kind goes out with the first reading.
    """

    def __init__(
        self,
        device: str,
        heartbeat_s: float = 30.0,
        snapshot_s: float = 300.0,
        jitter: float = 0.1,
        deadbands: "dict[str, float] | None" = None,
        now_s: float = 0.0,
    ) -> None:
        self._jitter = Jitter(device_seed(device), jitter)
        self.deadbands = dict(DEFAULT_DEADBANDS)
        if deadbands:
            self.deadbands.update(deadbands)
        self.heartbeat_s = 1.0
        self.snapshot_s = 1.0
        self.set_intervals(heartbeat_s, snapshot_s)
        self._next_heartbeat = now_s
        self._next_snapshot = {}  # type: dict[str, float]
        self._last_sent = {}  # type: dict[str, dict[str, Any]]
        self._mains = None  # type: bool | None

    def set_intervals(self, heartbeat_s: "float | None" = None, snapshot_s: "float | None" = None) -> None:
        """Change the periods; the new heartbeat period applies from the next heartbeat."""
        if heartbeat_s is not None:
            if heartbeat_s <= 0:
                raise ValueError("heartbeat_s must be > 0, got %r" % (heartbeat_s,))
            self.heartbeat_s = float(heartbeat_s)
        if snapshot_s is not None:
            if snapshot_s <= 0:
                raise ValueError("snapshot_s must be > 0, got %r" % (snapshot_s,))
            self.snapshot_s = float(snapshot_s)

    def heartbeat_due(self, now_s: float) -> bool:
        """Whether a heartbeat should be sent now."""
        return now_s >= self._next_heartbeat

    def dying_gasp(self, mains: "bool | None") -> bool:
        """Whether the heartbeat's ``mains`` flag just turned false: send a heartbeat now.

        A controller on a small UPS has its battery's minutes left when the grid goes, often
        less than a heartbeat period: the "mains lost" reading must leave at once, so the
        backend can tell a power cut from a dead controller or a lost cell.
        """
        gasp = mains is False and self._mains is not False
        if mains is not None:
            self._mains = mains
        return gasp

    def heartbeat_sent(self, now_s: float) -> None:
        """Record a heartbeat sent at ``now_s`` and schedule the next one."""
        self._next_heartbeat = now_s + self._jitter.spread(self.heartbeat_s)

    def next_heartbeat_in(self, now_s: float) -> float:
        """Seconds until the next heartbeat is due (0 if overdue)."""
        return max(0.0, self._next_heartbeat - now_s)

    def telemetry_due(self, kind: str, fields: "dict[str, Any]", now_s: float) -> "str | None":
        """Why a telemetry message of ``kind`` with ``fields`` is due, or None.

        Returns:
            ``"first"``, ``"snapshot"`` or ``"change:<field>"``; None when nothing is due.
        """
        last = self._last_sent.get(kind)
        if last is None:
            return "first"
        if now_s >= self._next_snapshot.get(kind, 0.0):
            return "snapshot"
        diff = changed(last, fields, self.deadbands)
        if diff:
            return "change:" + diff[0]
        return None

    def telemetry_sent(self, kind: str, fields: "dict[str, Any]", now_s: float) -> None:
        """Record telemetry sent; the next snapshot is one (jittered) period later."""
        self._last_sent[kind] = dict(fields)
        self._next_snapshot[kind] = now_s + self._jitter.spread(self.snapshot_s)

    def force(self) -> None:
        """Make everything due at the next poll (the ``report_now`` command)."""
        self._next_heartbeat = -1.0
        for kind in self._next_snapshot:
            self._next_snapshot[kind] = -1.0
