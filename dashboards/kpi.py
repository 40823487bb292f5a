"""KPI: the plan's indicators as `tincoso report kpi --store` computed them (the ``kpi`` measurement).

The logic lives in one place, ``backend/kpi``: this dashboard only reads its stored
results, one point per indicator and commune per report period (``commune`` is
``_district`` for the district total), so Grafana and the PDF always show the same figures.
Its text is kept here until ``dashboards/i18n.py`` takes the ``kpi.*`` keys.
"""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table as tb
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import panels as p
from dashboards.i18n import Strings
from dashboards.influxql import InfluxQL

UID = "tincoso-kpi"
DISTRICT = "_district"

_TEXT = {
    "title": ("Chỉ tiêu kế hoạch (đo được)", "Plan indicators (measured)"),
    "district": ("Toàn huyện: giá trị, kế hoạch, kết quả", "District: value, target, result"),
    "district.help": (
        "Kết quả mới nhất trong khoảng thời gian đã chọn, do 'tincoso report kpi --store' tính: "
        "Đạt, Không đạt, hoặc Không có dữ liệu (thiếu dữ liệu để kết luận).",
        "Latest result in the chosen range, computed by 'tincoso report kpi --store': Met, Not met, "
        "or No data (missing data decides).",
    ),
    "trend": ("Giá trị theo kỳ báo cáo (%)", "Value per report period (%)"),
    "communes": ("Theo xã: giá trị, dữ liệu phủ, kết quả", "Per commune: value, data coverage, result"),
}


def _text(t: Strings, key: str) -> str:
    vi, en = _TEXT[key]
    return vi if t.lang == "vi" else en


def build(t: Strings) -> db.Dashboard:
    """The KPI dashboard."""
    dash = p.dashboard(UID, _text(t, "title"), t, time_from="now-1y")
    district = InfluxQL(
        f"""SELECT last("value") AS "value", last("target") AS "target", last("status") AS "status",
        last("units_met") AS "units_met", last("units") AS "units" FROM "kpi"
        WHERE $timeFilter AND "commune" = '{DISTRICT}' GROUP BY "indicator\""""
    )
    columns = {
        "indicator": t("col.indicator"),
        "value": t("col.value"),
        "target": t("col.target"),
        "status": t("col.status"),
        "units_met": t("col.units_met"),
        "units": t("col.units"),
    }
    table = p.table_panel(_text(t, "district"), district, h=9, columns=columns).description(
        _text(t, "district.help")
    )
    dash.with_panel(_status_cells(table, t))
    trend = InfluxQL(
        f"""SELECT last("value") FROM "kpi" WHERE $timeFilter AND "commune" = '{DISTRICT}'
        GROUP BY time($__interval), "indicator" fill(none)"""
    )
    dash.with_panel(p.time_series(_text(t, "trend"), trend, unit="percent", w=24))
    communes = InfluxQL(
        f"""SELECT last("value") AS "value", last("coverage") AS "coverage", last("status") AS "status"
        FROM "kpi" WHERE $timeFilter AND "commune" != '{DISTRICT}' GROUP BY "indicator", "commune\""""
    )
    columns = {
        "indicator": t("col.indicator"),
        "commune": t("col.commune"),
        "value": t("col.value"),
        "coverage": t("col.coverage"),
        "status": t("col.status"),
    }
    table = p.table_panel(_text(t, "communes"), communes, h=12, columns=columns)
    dash.with_panel(p.named_columns(_status_cells(table, t), t, columns))
    return dash


def _status_cells(table: tb.Panel, t: Strings) -> tb.Panel:
    """The result column as Đạt / Không đạt / Không có dữ liệu on green, red or grey."""
    mappings = [json.loads(json.dumps(m, cls=JSONEncoder)) for m in p.status_mapping(t)]
    table.override_by_name(t("col.status"), [dm.DynamicConfigValue("mappings", mappings)])
    return p.coloured_cells(table, t("col.status"))
