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
from protocols.stored_data import ENERGY_MEAN_DBFS

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
            columns={
                "device": t("col.device"),
                "reboot_reason": t("col.reboot_reason"),
                "uptime_s": t("col.uptime"),
            },
            units={"uptime_s": "s"},
        )
    )
    dash.with_panel(
        p.time_series(
            t("device.audio"),
            # Averaged by energy over readings and rollups alike (protocols/stored_data.py).
            rolled(f'{ENERGY_MEAN_DBFS} AS "rms_dbfs"', "audio"),
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
    health = InfluxQL(
        'SELECT last("crash_free_h") AS "crash_free_h", last("operating_h") AS "operating_h", '
        'last("crashes") AS "crashes", last("crash_free_pct") AS "crash_free_pct" FROM "device_health" '
        f'WHERE {WHERE} GROUP BY "device"'
    )
    dash.with_panel(
        p.table_panel(
            t("device.crash_free"),
            health,
            w=24,
            h=5,
            columns={
                "device": t("col.device"),
                "crash_free_h": t("col.crash_free_h"),
                "operating_h": t("col.operating_h"),
                "crashes": t("col.crashes"),
                "crash_free_pct": t("col.crash_free_pct"),
            },
            units={"crash_free_h": "h", "operating_h": "h", "crash_free_pct": "percent"},
        ).description(t("device.crash_free.help"))
    )
    dash.with_panel(
        p.table_panel(
            t("device.down"),
            raw('"start_ms", "end_ms", "duration_s"', "down_interval", 'GROUP BY "device"'),
            w=24,
            columns={
                "device": t("col.device"),
                "start_ms": t("col.start"),
                "end_ms": t("col.end"),
                "duration_s": t("col.duration"),
            },
            units={"duration_s": "s"},
        )
    )
    outages = p.table_panel(
        t("device.outages"),
        raw('"since_ms", "text", "duration_s"', "outage", 'GROUP BY "device", "cause"'),
        w=24,
        columns={
            "device": t("col.device"),
            "since_ms": t("col.start"),
            "cause": t("col.cause"),
            "text": t("col.evidence"),
            "duration_s": t("col.duration"),
        },
        units={"duration_s": "s"},
    )
    dash.with_panel(outages.mappings(p.cause_mapping(t)).description(t("device.outages.help")))
    return dash
