"""Backend health: ingest rate, spool depth, invalid and quarantined messages, alert deliveries.

``backend_stats`` counters are cumulative per process (they restart at zero with it), so
rates use ``non_negative_derivative`` and per-interval counts ``non_negative_difference``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards import panels as p
from dashboards.i18n import Strings
from dashboards.influxql import InfluxQL

UID = "tincoso-backend"
BY_PROCESS = 'GROUP BY time($__interval), "process", "role" fill(none)'


def stats(select: str) -> InfluxQL:
    """One expression over ``backend_stats`` per process."""
    return InfluxQL(f'SELECT {select} FROM "backend_stats" WHERE $timeFilter {BY_PROCESS}')


def build(t: Strings) -> db.Dashboard:
    """The backend health dashboard."""
    dash = p.dashboard(UID, t("backend.title"), t, time_from="now-6h")
    dash.with_panel(
        p.time_series(
            t("backend.ingest_rate"), stats('non_negative_derivative(max("written"), 1s)'), unit="pps"
        )
    )
    dash.with_panel(
        p.time_series(
            t("backend.messages_rate"), stats('non_negative_derivative(max("messages_in"), 1s)'), unit="pps"
        )
    )
    dash.with_panel(p.time_series(t("backend.spool"), stats('max("spool_depth")')))
    dash.with_panel(
        p.time_series(t("backend.invalid"), stats('non_negative_difference(max("invalid"))'), bars=True)
    )
    quarantine = InfluxQL(
        """SELECT count("topic") FROM "quarantine" WHERE $timeFilter
        GROUP BY time($__interval), "reason" fill(none)"""
    )
    dash.with_panel(p.time_series(t("backend.quarantine"), quarantine, bars=True))
    deliveries = InfluxQL(
        """SELECT count("attempt") FROM "alert_delivery" WHERE $timeFilter
        GROUP BY time($__interval), "channel", "outcome" fill(none)"""
    )
    dash.with_panel(p.time_series(t("backend.deliveries"), deliveries, bars=True))
    return dash
