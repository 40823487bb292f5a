"""Panel and template-variable helpers shared by the dashboards.

Thin wrappers over grafana-foundation-sdk builders that fix tincoso's defaults: the
InfluxDB data source, refIds A, B, C... in order, and the tag filters every panel uses.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, stat, statetimeline, statushistory, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from backend.rollups import RAW_RP, ROLLUP_1D_RP, ROLLUP_1H_RP, ROLLUP_1M_RP
from dashboards.i18n import Strings
from dashboards.influxql import DATASOURCE, InfluxQL

TAG_FILTER = '"commune" =~ /^$commune$/ AND "hamlet" =~ /^$hamlet$/ AND "kind" =~ /^$kind$/'
DEVICE_FILTER = '"device" =~ /^$device$/'
BOARD_KINDS = "/^(eboard|district_led)$/"
# For "now" panels on sparse measurements the monitor writes only on change: look back as
# far as raw data is kept rather than over the dashboard range.
LATEST = "time > now() - 90d"

Panel = timeseries.Panel | stat.Panel | table.Panel | geomap.Panel | statetimeline.Panel | statushistory.Panel


def _targets(panel: Panel, queries: tuple[InfluxQL, ...]) -> None:
    for index, query in enumerate(queries):
        panel.with_target(query.ref_id(chr(ord("A") + index)))


def merge() -> dm.DataTransformerConfig:
    """Merge the tables of several targets into one on their common columns."""
    return dm.DataTransformerConfig(id_val="merge", options={})


def time_series(
    title: str, *queries: InfluxQL, unit: str = "short", w: int = 12, h: int = 8, bars: bool = False
) -> timeseries.Panel:
    """A time-series panel (lines, or bars for per-interval totals)."""
    panel = timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).span(w).height(h)
    if bars:
        panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
    _targets(panel, queries)
    return panel


def big_number(title: str, query: InfluxQL, *, unit: str = "short", w: int = 6, h: int = 4) -> stat.Panel:
    """A stat panel showing the last value of one query."""
    panel = (
        stat.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(cm.BigValueGraphMode.NONE)
    )
    _targets(panel, (query,))
    return panel


def table_panel(title: str, *queries: InfluxQL, w: int = 24, h: int = 8) -> table.Panel:
    """A table of one or more ``table`` targets, merged on their common columns."""
    panel = table.Panel().title(title).datasource(DATASOURCE).span(w).height(h)
    _targets(panel, tuple(query.table() for query in queries))
    if len(queries) > 1:
        panel.with_transformation(merge())
    return panel


def state_timeline(
    title: str, query: InfluxQL, mappings: list[dm.ValueMapping], *, w: int = 24, h: int = 8
) -> statetimeline.Panel:
    """A state timeline (one row per series) for boolean or categorical readings."""
    panel = statetimeline.Panel().title(title).datasource(DATASOURCE).span(w).height(h).mappings(mappings)
    _targets(panel, (query,))
    return panel


def status_history(
    title: str, query: InfluxQL, *, unit: str = "m", w: int = 24, h: int = 8
) -> statushistory.Panel:
    """A status history: one row per series, one cell per interval, coloured by value."""
    panel = statushistory.Panel().title(title).datasource(DATASOURCE).unit(unit).span(w).height(h)
    _targets(panel, (query,))
    return panel


def bool_mapping(
    t: Strings, true_key: str, false_key: str, true_color: str, false_color: str
) -> dm.ValueMapping:
    """Show true/false as words in colour."""
    return dm.ValueMap(
        options={
            "true": dm.ValueMappingResult(text=t(true_key), color=true_color, index=0),
            "false": dm.ValueMappingResult(text=t(false_key), color=false_color, index=1),
        }
    )


def tag_variable(
    name: str, label: str, key: str, *, measurement: str = "heartbeat", where: str | None = None
) -> db.QueryVariable:
    """A multi-value variable over one tag's values (``SHOW TAG VALUES``), with "All"."""
    query = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"'
    if where:
        query += f" WHERE {where}"
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .multi(True)
        .include_all(True)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def location_variables(t: Strings) -> list[db.QueryVariable]:
    """``$commune``, ``$hamlet`` (within the communes) and ``$kind``."""
    return [
        tag_variable("commune", t("var.commune"), "commune"),
        tag_variable("hamlet", t("var.hamlet"), "hamlet", where='"commune" =~ /^$commune$/'),
        tag_variable("kind", t("var.kind"), "kind"),
    ]


def device_variable(t: Strings, where: str = TAG_FILTER) -> db.QueryVariable:
    """``$device`` within the chosen commune, hamlet and kind."""
    return tag_variable("device", t("var.device"), "device", where=where)


def resolution_variable(t: Strings) -> db.CustomVariable:
    """``$rp``: the retention policy long-range panels read (raw, 1-minute, 1-hour or daily rollups)."""
    return (
        db.CustomVariable("rp")
        .label(t("var.rp"))
        .description(t("var.rp.help"))
        .values(f"{RAW_RP},{ROLLUP_1M_RP},{ROLLUP_1H_RP},{ROLLUP_1D_RP}")
        .current(dm.VariableOption(selected=True, text=RAW_RP, value=RAW_RP))
    )


def dashboard(uid: str, title: str, t: Strings, *, time_from: str = "now-24h") -> db.Dashboard:
    """A dashboard with tincoso's uid, tags, time zone and refresh."""
    return (
        db.Dashboard(title)
        .uid(uid)
        .tags([t("tag.tincoso")])
        .timezone("Asia/Ho_Chi_Minh")
        .time(time_from, "now")
        .refresh("1m")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
    )


def map_view() -> geomap.MapViewConfig:
    """The map's initial view: Võ Nhai district, Thái Nguyên."""
    return geomap.MapViewConfig().id("coords").lat(21).lon(106).zoom(10)


def markers(name: str, color_field: str) -> cb.MapLayerOptions:
    """A marker layer placed by the ``lat``/``lon`` columns, coloured by one field."""
    return (
        cb.MapLayerOptions()
        .type("markers")
        .name(name)
        .location(
            cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS).latitude("lat").longitude("lon")
        )
        .config({"color": {"field": color_field, "fixed": "green"}, "showLegend": True, "size": {"fixed": 8}})
        .tooltip(True)
    )
