"""Device detail: health, audio, amplifier, display, network and data-path readings of devices.

Panels marked "$rp" read the retention policy the ``rp`` variable names, so a 30- or
365-day view reads rollups; field names are the same in ``raw`` and the rollups (see
backend/rollups.py). Event-like measurements (gaps, offline periods) are sparse and stay raw.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards import panels as p
from dashboards.i18n import Strings
from dashboards.influxql import InfluxQL

UID = "tincoso-device"
WHERE = f"$timeFilter AND {p.DEVICE_FILTER}"
BY_DEVICE = 'GROUP BY time($__interval), "device" fill(none)'


def rolled(select: str, measurement: str) -> InfluxQL:
    """A per-device series over the chosen resolution (``$rp``)."""
    return InfluxQL(f'SELECT {select} FROM "$rp"."{measurement}" WHERE {WHERE} {BY_DEVICE}')


def raw(select: str, measurement: str, group: str = BY_DEVICE) -> InfluxQL:
    """A per-device series over raw points."""
    return InfluxQL(f'SELECT {select} FROM "{measurement}" WHERE {WHERE} {group}')


def build(t: Strings) -> db.Dashboard:
    """The device detail dashboard."""
    dash = p.dashboard(UID, t("device.title"), t)
    for variable in [*p.location_variables(t), p.device_variable(t), p.resolution_variable(t)]:
        dash.with_variable(variable)
    dash.with_panel(p.time_series(t("device.uptime"), rolled('max("uptime_s")', "heartbeat"), unit="s"))
    dash.with_panel(
        p.time_series(t("device.boots"), raw('count(distinct("boot_id"))', "heartbeat"), w=6, bars=True)
    )
    dash.with_panel(
        p.table_panel(
            t("device.reboot_reason"),
            raw('last("reboot_reason") AS "reboot_reason", "uptime_s"', "heartbeat", 'GROUP BY "device"'),
            w=6,
        )
    )
    dash.with_panel(
        p.time_series(
            t("device.audio"),
            rolled('mean("rms_dbfs") AS "rms_dbfs"', "audio"),
            rolled('max("peak_dbfs") AS "peak_dbfs"', "audio"),
            unit="dB",
        )
    )
    dash.with_panel(p.time_series(t("device.dead_air"), rolled('max("dead_air_s")', "audio"), unit="s"))
    dash.with_panel(p.time_series(t("device.amp"), rolled('mean("amp_power_w")', "audio"), unit="watt"))
    dash.with_panel(
        p.state_timeline(
            t("device.display"),
            raw('"power", "blank", "frozen"', "display", 'GROUP BY "device"'),
            [p.bool_mapping(t, "state.yes", "state.no", "green", "transparent")],
            w=12,
        )
    )
    dash.with_panel(p.time_series(t("device.signal"), rolled('mean("signal_dbm")', "heartbeat"), unit="dBm"))
    dash.with_panel(
        p.time_series(
            t("device.temperature"),
            rolled('mean("temp_c") AS "controller"', "heartbeat"),
            rolled('mean("temp_c") AS "display"', "display"),
            unit="celsius",
        )
    )
    dash.with_panel(
        p.time_series(
            t("device.queue"),
            rolled('max("queue_depth") AS "queue_depth"', "heartbeat"),
            rolled('max("queue_dropped") AS "queue_dropped"', "heartbeat"),
        )
    )
    dash.with_panel(
        p.time_series(
            t("device.gaps"),
            raw('sum("missing")', "data_gap", 'GROUP BY time($__interval), "device" fill(0)'),
            bars=True,
        )
    )
    dash.with_panel(
        p.table_panel(
            t("device.down"),
            raw('"start_ms", "end_ms", "duration_s"', "down_interval", 'GROUP BY "device"'),
            w=24,
        )
    )
    return dash
