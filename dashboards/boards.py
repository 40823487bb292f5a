"""Boards: commune e-boards and the district LED board: lit or not, offline time, source sync.

"Unlit" readings (dark, blank or frozen) come from the 1-minute rollups' conditional
counts, because InfluxQL cannot aggregate booleans. Availability within each board's
operating hours needs the registry and is computed by the KPI report; this dashboard
shows all hours.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from backend.rollups import ROLLUP_1M_RP
from dashboards import panels as p
from dashboards.i18n import Strings
from dashboards.influxql import InfluxQL

UID = "tincoso-boards"
BOARD_FILTER = f'"commune" =~ /^$commune$/ AND "kind" =~ {p.BOARD_KINDS} AND {p.DEVICE_FILTER}'
WHERE = f"$timeFilter AND {BOARD_FILTER}"
BY_DEVICE = 'GROUP BY time($__interval), "device" fill(none)'


def build(t: Strings) -> db.Dashboard:
    """The boards dashboard."""
    dash = p.dashboard(UID, t("boards.title"), t, time_from="now-7d")
    dash.with_variable(p.commune_variable(t, measurement="display"))
    dash.with_variable(
        p.tag_variable(
            "device",
            t("var.device"),
            "device",
            measurement="display",
            where=f'"commune" =~ /^$commune$/ AND "kind" =~ {p.BOARD_KINDS}',
        )
    )
    dash.with_variable(p.resolution_variable(t))
    unlit_share = InfluxQL(
        f"""SELECT 100 * sum("unlit_samples") / sum("samples") FROM "{ROLLUP_1M_RP}"."display"
        WHERE {WHERE} GROUP BY time($__interval), "device" fill(none)"""
    )
    # fill(none): an interval without readings is no data, not 0 % unlit.
    dash.with_panel(
        p.time_series(t("boards.unlit"), unlit_share, unit="percent")
        .description(t("boards.unlit.help"))
        .no_value(t("no_data"))
    )
    counts = InfluxQL(
        f"""SELECT sum("dark_samples") AS "dark", sum("blank_samples") AS "blank",
        sum("frozen_samples") AS "frozen" FROM "{ROLLUP_1M_RP}"."display" WHERE {WHERE}
        GROUP BY time($__interval), "device" fill(0)"""
    )
    dash.with_panel(p.time_series(t("boards.unlit_counts"), counts, bars=True))
    offline = InfluxQL(
        f"""SELECT sum("duration_s") / 60 FROM "down_interval" WHERE {WHERE}
        GROUP BY time($__interval), "device" fill(0)"""
    )
    dash.with_panel(p.time_series(t("boards.offline"), offline, unit="m", bars=True))
    sync_age = InfluxQL(f'SELECT max("source_sync_age_s") FROM "$rp"."display" WHERE {WHERE} {BY_DEVICE}')
    dash.with_panel(p.time_series(t("boards.sync_age"), sync_age, unit="s"))
    modules = InfluxQL(f'SELECT max("failed_modules") FROM "$rp"."display" WHERE {WHERE} {BY_DEVICE}')
    dash.with_panel(p.time_series(t("boards.modules"), modules))
    state = InfluxQL(f'SELECT "power", "blank", "frozen" FROM "display" WHERE {WHERE} GROUP BY "device"')
    dash.with_panel(
        p.state_timeline(
            t("device.display"),
            state,
            [p.bool_mapping(t, "state.yes", "state.no", "green", "transparent")],
            w=12,
        )
    )
    return dash
