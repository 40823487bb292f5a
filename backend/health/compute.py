"""Device health over a period, from what the monitor and ingest stored: pure arithmetic.

An *outage* is an offline episode that became an alert (past the offline grace): the
monitor writes one ``outage`` point per episode, stamped when the device went dark, with
its cause, and a second one with ``refined = true`` when the device came back and said why.
Its length is the ``down_interval`` point stamped at the same moment (still down at the
period's end: up to the end). A short drop inside the grace is not an outage.

- MTTR (mean time to repair): the mean length of the period's outages.
- MTBF (mean time between failures): time up in the period divided by the number of
  outages (None without an outage: nothing failed).
- Crash-free hours: `backend.kpi.devices.crash_free`, as in the KPI report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from backend.kpi.model import CrashFree, Period
from backend.monitor.causes import CAUSES
from backend.registry import Registry

__all__ = ["CommuneHealth", "DeviceHealth", "Outage", "commune_health", "device_health", "worst"]


@dataclass(frozen=True)
class Outage:
    """One offline episode of a device (times in epoch ms)."""

    device: str
    start_ms: int
    end_ms: int | None  # None: still down
    cause: str


@dataclass(frozen=True)
class DeviceHealth:
    """One device's health over the period."""

    device: str
    commune: str
    hamlet: str
    kind: str
    period_h: float
    outages: int
    by_cause: Mapping[str, int]
    down_h: float
    mttr_h: float | None
    mtbf_h: float | None
    operating_h: int
    crash_free_h: int
    crashes: int

    @property
    def main_cause(self) -> str | None:
        """The cause of most of its outages (None without one)."""
        known = Counter({c: n for c, n in self.by_cause.items() if n})
        return known.most_common(1)[0][0] if known else None


@dataclass(frozen=True)
class CommuneHealth:
    """A commune's devices together (MTBF and MTTR pooled over every outage)."""

    commune: str
    devices: int
    outages: int
    by_cause: Mapping[str, int] = field(default_factory=dict)
    down_h: float = 0.0
    mttr_h: float | None = None
    mtbf_h: float | None = None
    crash_free_h: int = 0
    operating_h: int = 0


def device_health(
    registry: Registry,
    period: Period,
    outages: Iterable[Outage],
    crash_free: Iterable[CrashFree],
) -> list[DeviceHealth]:
    """Every registered device's health over ``period`` (in registry order)."""
    mine: dict[str, list[Outage]] = {}
    for outage in outages:
        if period.start_ms <= outage.start_ms < period.end_ms:
            mine.setdefault(outage.device, []).append(outage)
    crashes = {c.device: c for c in crash_free}
    period_h = (period.end_ms - period.start_ms) / 3_600_000
    out = []
    for device in registry.devices.values():
        episodes = mine.get(device.id, [])
        lengths = [(min(o.end_ms or period.end_ms, period.end_ms) - o.start_ms) / 3_600_000 for o in episodes]
        down_h = sum(lengths)
        by_cause = Counter(o.cause if o.cause in CAUSES else "unknown" for o in episodes)
        health = crashes.get(device.id)
        out.append(
            DeviceHealth(
                device.id,
                device.commune,
                device.hamlet,
                device.kind,
                period_h,
                len(episodes),
                {cause: by_cause.get(cause, 0) for cause in CAUSES},
                down_h,
                down_h / len(episodes) if episodes else None,
                (period_h - down_h) / len(episodes) if episodes else None,
                health.operating_h if health else 0,
                health.crash_free_h if health else 0,
                health.crashes if health else 0,
            )
        )
    return out


def commune_health(devices: Iterable[DeviceHealth]) -> list[CommuneHealth]:
    """Per commune, sorted by commune id."""
    grouped: dict[str, list[DeviceHealth]] = {}
    for d in devices:
        grouped.setdefault(d.commune, []).append(d)
    out = []
    for commune, items in sorted(grouped.items()):
        outages = sum(d.outages for d in items)
        down_h = sum(d.down_h for d in items)
        up_h = sum(d.period_h for d in items) - down_h
        by_cause = {c: sum(d.by_cause.get(c, 0) for d in items) for c in CAUSES}
        out.append(
            CommuneHealth(
                commune,
                len(items),
                outages,
                by_cause,
                down_h,
                down_h / outages if outages else None,
                up_h / outages if outages else None,
                sum(d.crash_free_h for d in items),
                sum(d.operating_h for d in items),
            )
        )
    return out


def worst(devices: Iterable[DeviceHealth], n: int = 5) -> list[DeviceHealth]:
    """The ``n`` devices that did worst: most time down, then most outages, then most crashes."""
    bad = [d for d in devices if d.outages or d.crashes]
    return sorted(bad, key=lambda d: (-d.down_h, -d.outages, -d.crashes, d.device))[:n]
