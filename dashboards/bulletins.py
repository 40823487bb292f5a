"""Bulletins: did every hamlet really sound, measured on the audio output, and for how long.

"Sounded" means the agent reported playing, no dead air and RMS above the threshold in
backend/rollups.py (``SOUNDED_WHERE``); "silent" means playing was reported but it did
not sound. Each audio reading covers ``window_s`` seconds, so summing it gives airtime.

The per-day panel reads the daily rollups (``rollup_1d``, Vietnam days). A daily point is
stamped at the start of its day, so that panel's range starts a day before the
dashboard's (``${__from}ms - 1d``): the first day shown is whole, not dropped or cut.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from backend.rollups import ROLLUP_1D_RP, SILENT_WHERE, SOUNDED_WHERE
from dashboards import panels as p
from dashboards.i18n import Strings
from dashboards.influxql import InfluxQL

UID = "tincoso-bulletins"
WHERE = f"$timeFilter AND {p.TAG_FILTER}"
PER_SLOT = 'GROUP BY time(30m), "commune", "hamlet" fill(none)'
PER_HAMLET = 'GROUP BY "commune", "hamlet"'
# Whole days overlapping the dashboard's range (see the module docstring).
DAYS_FILTER = "time > ${__from}ms - 1d AND time <= ${__to}ms"


def minutes(alias: str, condition: str, group: str) -> InfluxQL:
    """Minutes of audio windows matching ``condition``."""
    return InfluxQL(
        f'SELECT sum("window_s") / 60 AS "{alias}" FROM "audio" WHERE {WHERE} AND ({condition}) {group}'
    )


def build(t: Strings) -> db.Dashboard:
    """The bulletins dashboard."""
    dash = p.dashboard(UID, t("bulletins.title"), t, time_from="now-7d")
    for variable in p.location_variables(t):
        dash.with_variable(variable)
    dash.with_panel(
        p.status_history(
            t("bulletins.sounded"), minutes("sounded_min", SOUNDED_WHERE, PER_SLOT), h=10
        ).description(t("bulletins.sounded.help"))
    )
    dash.with_panel(p.status_history(t("bulletins.silent"), minutes("silent_min", SILENT_WHERE, PER_SLOT)))
    dash.with_panel(
        p.table_panel(
            t("bulletins.per_hamlet"),
            minutes("played_min", '"playing" = true', PER_HAMLET),
            minutes("sounded_min", SOUNDED_WHERE, PER_HAMLET),
            minutes("silent_min", SILENT_WHERE, PER_HAMLET),
            w=12,
            h=10,
        )
    )
    per_day = InfluxQL(
        f"""SELECT sum("sounded_s") / 60 AS "sounded_min" FROM "{ROLLUP_1D_RP}"."audio"
        WHERE {DAYS_FILTER} AND {p.TAG_FILTER}
        GROUP BY time(1d), "commune" fill(0) tz('Asia/Ho_Chi_Minh')"""
    )
    dash.with_panel(
        p.time_series(t("bulletins.per_day"), per_day, unit="m", w=12, h=10, bars=True).description(
            t("bulletins.per_day.help")
        )
    )
    events = InfluxQL(
        f"""SELECT "commune", "hamlet", "device", "event", "programme", "duration_s" FROM "event"
        WHERE {WHERE} AND "event" =~ /^playback_(start|end)$/"""
    )
    dash.with_panel(p.table_panel(t("bulletins.events"), events, h=10))
    return dash
