"""Read a period's outages and crash-free hours from InfluxDB (InfluxQL over `InfluxClient`).

Outages come from the monitor's ``outage`` points (the refined cause wins over the first
guess at the same moment) and their lengths from its ``down_interval`` points; crash-free
hours from heartbeats, through the KPI report's own `fetch_measurements` and `crash_free`.
"""

from __future__ import annotations

from typing import Any

from backend.health.compute import Outage
from backend.influx import InfluxClient, rows
from backend.kpi.definitions import Definitions
from backend.kpi.devices import crash_free
from backend.kpi.model import CrashFree, Period
from backend.kpi.queries import fetch_measurements
from backend.registry import Registry

__all__ = ["fetch_crash_free", "fetch_outages"]


def _where(start_ms: int, end_ms: int) -> str:
    return f"time >= {start_ms}ms AND time < {end_ms}ms"


async def fetch_outages(influx: InfluxClient, period: Period) -> list[Outage]:
    """The outages that began in ``period``, each with its (refined) cause and its end.

    Raises:
        InfluxError: a query failed.
    """
    where = _where(period.start_ms, period.end_ms)
    causes: dict[tuple[str, int], tuple[bool, str]] = {}
    query = f'SELECT "refined", "cause" FROM "outage" WHERE {where} GROUP BY "device"'
    for row in rows(await influx.query(query, epoch="ms")):
        key = (str(row["device"]), int(row["time"]))
        refined = row.get("refined") is True
        if key not in causes or refined:
            causes[key] = (refined, str(row.get("cause") or "unknown"))
    ends: dict[tuple[str, int], int] = {}
    query = f'SELECT "end_ms" FROM "down_interval" WHERE {where} GROUP BY "device"'
    for row in rows(await influx.query(query, epoch="ms")):
        end: Any = row.get("end_ms")
        if end is not None:
            ends[(str(row["device"]), int(row["time"]))] = int(end)
    return [
        Outage(device, start, ends.get((device, start)), cause)
        for (device, start), (_, cause) in sorted(causes.items())
    ]


async def fetch_crash_free(influx: InfluxClient, registry: Registry, period: Period) -> list[CrashFree]:
    """Crash-free hours of every registered device, as the KPI report counts them.

    Raises:
        InfluxError: a query failed.
    """
    measurements = await fetch_measurements(influx, period, Definitions())
    return [crash_free(device, measurements, period) for device in registry.devices.values()]
