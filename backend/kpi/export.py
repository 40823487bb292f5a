"""The KPI report's figures as CSV (one row per indicator and unit) and JSON (everything)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from backend.kpi.compute import data_coverage_pct
from backend.kpi.definitions import Definitions
from backend.kpi.model import KpiReport

__all__ = ["CSV_COLUMNS", "report_csv", "report_json"]

# Indicators the report lists but cannot measure (backend/kpi/provenance.py says why).
NOT_MEASURED_IDS = ("2.1",)

CSV_COLUMNS = (
    "indicator", "scope", "commune", "commune_name", "device", "verdict", "value_pct", "target_pct",
    "target_year", "coverage_pct", "reason", "detail", "period_from", "period_to",
)  # fmt: skip


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def report_csv(report: KpiReport) -> str:
    """Indicator rows (scope ``district``) followed by their units (scope ``commune``/``board``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    period = (report.period.first_day.isoformat(), report.period.last_day.isoformat())
    for ind in report.indicators:
        target = (_pct(ind.target_pct), ind.target_year)
        summary = f"{ind.met_units} met, {ind.unknown_units} unknown of {ind.in_scope}"
        district = ["district", "", report.district, "", ind.verdict, _pct(ind.value_pct)]
        writer.writerow([ind.id, *district, *target, "", "", summary, *period])
        for u in ind.units:
            scope = "board" if u.device else "commune"
            unit = [scope, u.commune, u.commune_name, u.device, u.verdict, _pct(u.value_pct)]
            writer.writerow([ind.id, *unit, *target, _pct(u.coverage_pct), u.reason, u.detail, *period])
    for indicator in NOT_MEASURED_IDS:
        writer.writerow(
            [
                indicator,
                "district",
                "",
                report.district,
                "",
                "not_measurable",
                "",
                "",
                "",
                "",
                "not_measurable",
                "",
                *period,
            ]
        )
    return out.getvalue()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def report_json(report: KpiReport, defs: Definitions, provenance: Mapping[str, Any] | None = None) -> str:
    """The whole report (every bulletin, board, check and gap) and the definitions, as JSON.

    Args:
        report: The computed report.
        defs: The definitions in force.
        provenance: `backend.kpi.provenance.provenance` of the report, if known.
    """
    coverage = data_coverage_pct(report)
    warning = coverage is None or coverage < defs.coverage_warn_pct
    body = {
        "provenance": dict(provenance or {}),
        "definitions": _plain(defs),
        "data_coverage_pct": coverage,
        "coverage_warning": warning,
        "not_measured": [{"id": i, "verdict": "not_measurable"} for i in NOT_MEASURED_IDS],
        **_plain(report),
    }
    return json.dumps(body, ensure_ascii=False, indent=1, sort_keys=False) + "\n"
