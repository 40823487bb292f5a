"""Panel and template-variable helpers shared by the dashboards.

Thin wrappers over grafana-foundation-sdk builders that fix tincoso's defaults: the
InfluxDB data source, refIds A, B, C... in order, and the tag filters every panel uses.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, stat, statetimeline, statushistory, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from backend.rollups import RAW_RP, ROLLUP_1D_RP, ROLLUP_1H_RP, ROLLUP_1M_RP
from dashboards.i18n import Strings
from dashboards.influxql import DATASOURCE, InfluxQL
from protocols.payloads import DEVICE_KINDS
from protocols.stored_data import LOCAL_TZ_NAME

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


def thresholds(base: str, *steps: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: ``base`` colour, then ``(value, colour)`` from that value up."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(None, base), *(dm.Threshold(value, color) for value, color in steps)])
    )


NEUTRAL = "blue"
FAULTS = thresholds("green", (1, "red"))


def big_number(
    title: str,
    query: InfluxQL,
    *more: InfluxQL,
    unit: str = "short",
    w: int = 6,
    h: int = 4,
    colours: db.ThresholdsConfig | None = None,
) -> stat.Panel:
    """A stat panel showing the last value of each query (a count beside its total)."""
    panel = (
        stat.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(cm.BigValueGraphMode.NONE)
        .thresholds(colours or thresholds(NEUTRAL))
    )
    _targets(panel, (query, *more))
    return panel


def table_panel(
    title: str,
    *queries: InfluxQL,
    w: int = 24,
    h: int = 8,
    columns: dict[str, str] | None = None,
    units: dict[str, str] | None = None,
) -> table.Panel:
    """A table of one or more ``table`` targets, merged on their common columns.

    Args:
        columns: column -> the header people read (an ``organize`` rename); ``*_ms`` columns
            are shown as local date and time.
        units: column -> Grafana unit (``s``, ``m``, ``percent``...).
    """
    panel = (
        table.Panel().title(title).datasource(DATASOURCE).span(w).height(h).thresholds(thresholds(NEUTRAL))
    )
    _targets(panel, tuple(query.table() for query in queries))
    if len(queries) > 1:
        panel.with_transformation(merge())
    if columns:
        panel.with_transformation(
            dm.DataTransformerConfig(
                id_val="organize", options={"renameByName": columns, "excludeByName": {"Time": True}}
            )
        )
    shown = columns or {}
    for column, unit in {
        **{c: "dateTimeAsLocal" for c in shown if c.endswith("_ms")},
        **(units or {}),
    }.items():
        panel.override_by_name(shown.get(column, column), [dm.DynamicConfigValue("unit", unit)])
    return panel


def status_mapping(t: Strings) -> list[dm.ValueMapping]:
    """A KPI result as words in colour: Đạt, Không đạt, Không có dữ liệu."""
    return [
        dm.ValueMap(
            options={
                "met": dm.ValueMappingResult(text=t("kpi.met"), color="green", index=0),
                "not_met": dm.ValueMappingResult(text=t("kpi.not_met"), color="red", index=1),
                "unknown": dm.ValueMappingResult(text=t("kpi.unknown"), color="gray", index=2),
            }
        ),
        dm.SpecialValueMap(
            options=dm.DashboardSpecialValueMapOptions(
                match=dm.SpecialValueMatch.NULL_AND_NAN,
                result=dm.ValueMappingResult(text=t("kpi.unknown"), color="gray", index=3),
            )
        ),
    ]


def cause_mapping(t: Strings) -> list[dm.ValueMapping]:
    """An outage's cause code (backend.monitor.causes) as words: Mất điện lưới, Lỗi thiết bị..."""
    colours = {"mains": "orange", "device": "red", "cellular": "blue", "unknown": "gray"}
    return [
        dm.ValueMap(
            options={
                code: dm.ValueMappingResult(text=t(f"cause.{code}"), color=colour, index=n)
                for n, (code, colour) in enumerate(colours.items())
            }
        )
    ]


def coloured_cells(panel: table.Panel, column: str) -> table.Panel:
    """Colour the background of ``column``'s cells by its mapping or thresholds."""
    return panel.override_by_name(
        column, [dm.DynamicConfigValue("custom.cellOptions", {"type": "color-background"})]
    )


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


def named_variable(name: str, label: str, names: dict[str, str]) -> db.CustomVariable:
    """A multi-value variable that shows names and puts ids in queries (``name : id`` pairs)."""
    pairs = ",".join(f"{text.replace(',', ' ')} : {value}" for value, text in names.items())
    return (
        db.CustomVariable(name)
        .label(label)
        .values(pairs)
        .multi(True)
        .include_all(True)
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
    )


def kind_variable(t: Strings) -> db.CustomVariable:
    """``$kind`` listing device kinds by their Vietnamese names."""
    return named_variable("kind", t("var.kind"), {kind: t(f"kind.{kind}") for kind in DEVICE_KINDS})


def commune_variable(t: Strings, measurement: str = "heartbeat") -> db.CustomVariable | db.QueryVariable:
    """``$commune`` by name from the registry (ids from the data when no registry was given)."""
    if t.communes:
        return named_variable("commune", t("var.commune"), t.communes)
    return tag_variable("commune", t("var.commune"), "commune", measurement=measurement)


def location_variables(t: Strings) -> list[db.QueryVariable | db.CustomVariable]:
    """``$commune``, ``$hamlet`` (within the communes) and ``$kind``."""
    return [
        commune_variable(t),
        tag_variable("hamlet", t("var.hamlet"), "hamlet", where='"commune" =~ /^$commune$/'),
        kind_variable(t),
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
        .timezone(LOCAL_TZ_NAME)
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


def _value_names(names: dict[str, str]) -> list[dict[str, object]]:
    options = {value: {"text": text, "index": i} for i, (value, text) in enumerate(names.items())}
    return [{"type": "value", "options": options}]


def named_columns(panel: table.Panel, t: Strings, columns: dict[str, str]) -> table.Panel:
    """Show commune and kind ids in a table's columns by their names (after renaming)."""
    kinds = {kind: t(f"kind.{kind}") for kind in DEVICE_KINDS}
    for column, names in (("commune", t.communes), ("kind", kinds)):
        if column in columns and names:
            panel.override_by_name(columns[column], [dm.DynamicConfigValue("mappings", _value_names(names))])
    return panel


def named_series(panel: Any, ref_names: dict[str, str]) -> Any:
    """Name each query's value (refId -> the name shown), e.g. "Trực tuyến" beside "Đã đăng ký"."""
    for ref_id, name in ref_names.items():
        panel.override_by_query(ref_id, [dm.DynamicConfigValue("displayName", name)])
    return panel
