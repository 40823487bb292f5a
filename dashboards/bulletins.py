"""Bulletins: did every hamlet really sound, measured on the audio output, and for how long.

"Sounded" means the agent reported playing, no dead air and RMS above the threshold
(``protocols.stored_data.sounded_where``); "silent" means playing was reported but it did
not sound. The threshold is the dashboard's hidden constant ``$sound_threshold``, written
by the build from backend.toml's ``[definitions]`` (`dashboards.build.render`). Each audio
reading covers ``window_s`` seconds, so summing it gives airtime.

The per-day panel reads the daily rollups (``rollup_1d``, Vietnam days). A daily point is
stamped at the start of its day, so that panel's range starts a day before the
dashboard's (``${__from}ms - 1d``): the first day shown is whole, not dropped or cut.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards import panels as p
from dashboards.i18n import Strings
from dashboards.influxql import InfluxQL
from protocols.stored_data import (
    LOCAL_TZ_NAME,
    ROLLUP_1D_RP,
    SOUND_THRESHOLD_VARIABLE,
    silent_where,
    sounded_where,
)

UID = "tincoso-bulletins"
WHERE = f"$timeFilter AND {p.TAG_FILTER}"
PER_SLOT = 'GROUP BY time(30m), "commune", "hamlet" fill(none)'
PER_HAMLET = 'GROUP BY "commune", "hamlet"'
# Whole days overlapping the dashboard's range (see the module docstring).
DAYS_FILTER = "time > ${__from}ms - 1d AND time <= ${__to}ms"
SOUNDED_WHERE = sounded_where("$" + SOUND_THRESHOLD_VARIABLE)
SILENT_WHERE = silent_where("$" + SOUND_THRESHOLD_VARIABLE)


def minutes(alias: str, condition: str, group: str) -> InfluxQL:
    """Minutes of audio windows matching ``condition``."""
    return InfluxQL(
        f'SELECT sum("window_s") / 60 AS "{alias}" FROM "audio" WHERE {WHERE} AND ({condition}) {group}'
    )


def HAMLET_COLUMNS(t: Strings) -> dict[str, str]:
    """Headers of the per-hamlet table."""
    return {
        "commune": t("col.commune"),
        "hamlet": t("col.hamlet"),
        "played_min": t("col.played_min"),
        "sounded_min": t("col.sounded_min"),
        "silent_min": t("col.silent_min"),
    }


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
            # Three-valued: a hamlet with no readings is "no data", not 0 minutes sounded.
            InfluxQL(f'SELECT count("rms_dbfs") AS "readings" FROM "audio" WHERE {WHERE} {PER_HAMLET}'),
            w=12,
            h=10,
            columns=HAMLET_COLUMNS(t),
            units={"played_min": "m", "sounded_min": "m", "silent_min": "m"},
        )
    )
    per_day = InfluxQL(
        f"""SELECT sum("sounded_s") / 60 AS "sounded_min" FROM "{ROLLUP_1D_RP}"."audio"
        WHERE {DAYS_FILTER} AND {p.TAG_FILTER}
        GROUP BY time(1d), "commune" fill(none) tz('{LOCAL_TZ_NAME}')"""
    )
    # fill(none): a day without readings has no bar (no data), not a 0-minute one.
    dash.with_panel(
        p.time_series(t("bulletins.per_day"), per_day, unit="m", w=12, h=10, bars=True)
        .no_value(t("no_data"))
        .description(t("bulletins.per_day.help"))
    )
    events = InfluxQL(
        f"""SELECT "commune", "hamlet", "device", "event", "programme", "duration_s" FROM "event"
        WHERE {WHERE} AND "event" =~ /^playback_(start|end)$/"""
    )
    columns = {
        "commune": t("col.commune"),
        "hamlet": t("col.hamlet"),
        "device": t("col.device"),
        "event": t("col.event"),
        "programme": t("col.programme"),
        "duration_s": t("col.duration"),
    }
    table = p.table_panel(t("bulletins.events"), events, h=10, columns=columns, units={"duration_s": "s"})
    dash.with_panel(p.named_columns(table, t, columns))
    return dash
