"""District KPI verification: the plan's indicators computed from measurements.

`definitions` (thresholds, targets, the words that explain them), `queries` (InfluxDB),
`compute` (pure), `store` (the ``kpi`` measurement for Grafana), `website_probe`
(indicator 1.3), and the renderers (`render_html`, `render_pdf`, `export`, `charts`),
which import their heavy dependencies only when a report is rendered.
"""

from __future__ import annotations

from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions, DefinitionsError, load_definitions
from backend.kpi.model import KpiReport, Measurements, Period
from backend.kpi.queries import fetch_measurements
from backend.kpi.store import store_report
from backend.kpi.website_probe import probe_websites, run_website_probes

__all__ = [
    "Definitions",
    "DefinitionsError",
    "KpiReport",
    "Measurements",
    "Period",
    "compute_report",
    "fetch_measurements",
    "load_definitions",
    "probe_websites",
    "run_website_probes",
    "store_report",
]
