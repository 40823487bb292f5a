"""Write a report's figures as the ``kpi`` measurement, which the Grafana KPI panels read.

One point per indicator and unit, stamped at the period's last millisecond, so running
the same period again replaces its points and Grafana draws one value per report period.
Tags ``indicator``, ``commune`` (``_district`` for the district total) and ``device``
(the district board for 2.2); fields ``value``, ``target``, ``met``, ``status``,
``coverage``, ``target_year``, ``period_from``, ``period_to``.
"""

from __future__ import annotations

from collections.abc import Iterator

from backend.influx import FieldValue, InfluxClient, line
from backend.kpi.model import MET, KpiReport

__all__ = ["DEVICE_HEALTH", "DISTRICT", "MEASUREMENT", "report_lines", "store_report"]

MEASUREMENT = "kpi"
# Crash-free hours per device and report period, read by the device dashboard.
DEVICE_HEALTH = "device_health"
DISTRICT = "_district"


def report_lines(report: KpiReport) -> Iterator[str]:
    """The report as ``kpi`` line-protocol points."""
    ts = report.period.end_ms - 1
    common: dict[str, FieldValue | None] = {
        "target_year": report.target_year,
        "period_from": report.period.first_day.isoformat(),
        "period_to": report.period.last_day.isoformat(),
    }
    for ind in report.indicators:
        fields: dict[str, FieldValue | None] = {
            "value": ind.value_pct,
            "target": ind.target_pct,
            "met": ind.verdict == MET,
            "status": ind.verdict,
            "units": len(ind.units),
            "units_met": ind.met_units,
            "units_unknown": ind.unknown_units,
            **common,
        }
        yield line(MEASUREMENT, {"indicator": ind.id, "commune": DISTRICT}, fields, ts)
        for unit in ind.units:
            unit_fields: dict[str, FieldValue | None] = {
                "value": unit.value_pct,
                "target": ind.target_pct,
                "met": unit.verdict == MET,
                "status": unit.verdict,
                "coverage": unit.coverage_pct,
                **common,
            }
            tags = {"indicator": ind.id, "commune": unit.commune, "device": unit.device or None}
            yield line(MEASUREMENT, tags, unit_fields, ts)
    for health in report.crash_free:
        health_fields: dict[str, FieldValue | None] = {
            "operating_h": health.operating_h,
            "crash_free_h": health.crash_free_h,
            "crashes": health.crashes,
            "crash_free_pct": health.crash_free_pct,
            **common,
        }
        where = {"device": health.device, "commune": health.commune, "hamlet": health.hamlet or None}
        yield line(DEVICE_HEALTH, where, health_fields, ts)


async def store_report(influx: InfluxClient, report: KpiReport) -> int:
    """Write the report's ``kpi`` points; return how many.

    Raises:
        InfluxError: InfluxDB refused or could not be reached.
    """
    return await influx.write(report_lines(report))
