"""Whose outage was it: each device's alerted outage hours in the period, by likely cause.

The monitor names each offline episode's likely cause and settles it when the device is
back (`backend.monitor.outages`: ``outage`` points with ``duration_s``). An outage caused by
the grid or the carrier is still an outage for indicator 1.1 (the hamlet did not hear the
bulletin); this table is the evidence the district asks for beside it: how many of the
hours were the power company's, the carrier's, the equipment's, or unexplained.
"""

from __future__ import annotations

from backend.kpi.model import Measurements, OutageHours, Period
from backend.registry import Device

__all__ = ["CAUSES", "outage_hours"]

CAUSES = ("mains", "cellular", "device", "unknown")


def outage_hours(device: Device, m: Measurements, period: Period) -> OutageHours:
    """``device``'s outage hours and counts per cause, clipped to the period."""
    hours = dict.fromkeys(CAUSES, 0.0)
    counts = dict.fromkeys(CAUSES, 0)
    for outage in m.outages.get(device.id, []):
        start = max(outage.since_ms, period.start_ms)
        end = min(outage.since_ms + int(outage.duration_s * 1000), period.end_ms)
        if end <= start:
            continue
        cause = outage.cause if outage.cause in hours else "unknown"
        hours[cause] += (end - start) / 3_600_000
        counts[cause] += 1
    return OutageHours(device.id, device.commune, device.hamlet, hours, counts)
