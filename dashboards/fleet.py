"""Fleet overview: per commune, what is online, in fault and playing; a map; open alerts."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, table
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import panels as p
from dashboards.i18n import Strings
from dashboards.influxql import DATASOURCE, InfluxQL
from protocols.stored_data import alert_open_where

UID = "tincoso-fleet"

# Latest value per device (the inner query), then counted per commune and kind (the outer).
ONLINE = f"""
SELECT count("online") AS "online" FROM (
  SELECT last("online") AS "online" FROM "state" WHERE {p.LATEST} AND {p.TAG_FILTER}
  GROUP BY "device", "commune", "kind"
) WHERE "online" = true {{group}}"""
IN_FAULT = f"""
SELECT count(distinct("dev")) AS "in_fault" FROM (
  SELECT last("message") AS "message", "status", "device" AS "dev" FROM "alert"
  WHERE {p.LATEST} AND {p.TAG_FILTER} GROUP BY "device", "fault", "commune", "kind"
) WHERE {alert_open_where()} {{group}}"""
PLAYING = f"""
SELECT count("playing") AS "playing" FROM (
  SELECT last("playing") AS "playing" FROM "audio" WHERE time > now() - 5m AND {p.TAG_FILTER}
  GROUP BY "device", "commune", "kind"
) WHERE "playing" = true {{group}}"""
# Every registered device: the monitor writes a device_info point for each (with or without coordinates).
DEVICES = f"""
SELECT count("registered") AS "devices" FROM (
  SELECT last("registered") AS "registered" FROM "device_info" WHERE {p.LATEST} AND {p.TAG_FILTER}
  GROUP BY "device", "commune", "kind"
) {{group}}"""
PER_COMMUNE = 'GROUP BY "commune", "kind"'
FAULT_STEPS = {"mode": "absolute", "steps": [{"value": None, "color": "green"}, {"value": 1, "color": "red"}]}
TOTAL = ""


def build(t: Strings) -> db.Dashboard:
    """The fleet overview dashboard."""
    dash = p.dashboard(UID, t("fleet.title"), t)
    for variable in p.location_variables(t):
        dash.with_variable(variable)
    registered = InfluxQL(DEVICES.format(group=TOTAL))
    online = p.big_number(t("fleet.online"), InfluxQL(ONLINE.format(group=TOTAL)), registered, w=8)
    dash.with_panel(p.named_series(online, {"A": t("fleet.online"), "B": t("fleet.registered")}))
    faults = p.big_number(t("fleet.faults"), InfluxQL(IN_FAULT.format(group=TOTAL)), w=8, colours=p.FAULTS)
    dash.with_panel(faults)
    playing = p.big_number(t("fleet.playing"), InfluxQL(PLAYING.format(group=TOTAL)), registered, w=8)
    dash.with_panel(p.named_series(playing, {"A": t("fleet.playing"), "B": t("fleet.registered")}))
    columns = {
        "commune": t("col.commune"),
        "kind": t("col.kind"),
        "devices": t("fleet.registered"),
        "online": t("col.online"),
        "in_fault": t("col.in_fault"),
        "playing": t("col.playing"),
    }
    per_commune = p.table_panel(
        t("fleet.per_commune"),
        InfluxQL(DEVICES.format(group=PER_COMMUNE)),
        InfluxQL(ONLINE.format(group=PER_COMMUNE)),
        InfluxQL(IN_FAULT.format(group=PER_COMMUNE)),
        InfluxQL(PLAYING.format(group=PER_COMMUNE)),
        w=12,
        h=12,
        columns=columns,
    ).description(t("fleet.per_commune.help"))
    per_commune.override_by_name(t("col.in_fault"), [dm.DynamicConfigValue("thresholds", FAULT_STEPS)])
    p.coloured_cells(per_commune, t("col.in_fault"))
    dash.with_panel(p.named_columns(per_commune, t, columns))
    dash.with_panel(device_map(t))
    dash.with_panel(open_alerts(t))
    return dash


def device_map(t: Strings) -> geomap.Panel:
    """Devices at their registry coordinates, coloured by their latest online state."""
    positions = InfluxQL(
        f"""SELECT last("lat") AS "lat", "lon" FROM "device_info" WHERE {p.LATEST} AND {p.TAG_FILTER}
        GROUP BY "device", "commune", "hamlet", "kind" """
    ).table()
    status = InfluxQL(
        f"""SELECT last("online") AS "online" FROM "state" WHERE {p.LATEST} AND {p.TAG_FILTER}
        GROUP BY "device" """
    ).table()
    return (
        geomap.Panel()
        .title(t("fleet.map"))
        .datasource(DATASOURCE)
        .span(12)
        .height(12)
        .with_target(positions.ref_id("A"))
        .with_target(status.ref_id("B"))
        .with_transformation(p.merge())
        .view(p.map_view())
        .layers([p.markers(t("fleet.map"), "online")])
        .mappings([p.bool_mapping(t, "state.online", "state.offline", "green", "red")])
    )


def open_alerts(t: Strings) -> table.Panel:
    """Every (device, fault) whose latest alert point leaves it open (``open`` or ``unconfirmed``)."""
    query = InfluxQL(
        f"""SELECT "commune", "hamlet", "device", "fault", "message", "since_ms" FROM (
          SELECT last("message") AS "message", "since_ms", "status" FROM "alert"
          WHERE {p.LATEST} AND {p.TAG_FILTER} GROUP BY "device", "commune", "hamlet", "fault"
        ) WHERE {alert_open_where()}"""
    )
    columns = {
        "commune": t("col.commune"),
        "hamlet": t("col.hamlet"),
        "device": t("col.device"),
        "fault": t("col.fault"),
        "message": t("col.message"),
        "since_ms": t("col.since"),
    }
    return p.named_columns(p.table_panel(t("fleet.alerts"), query, w=24, h=8, columns=columns), t, columns)
