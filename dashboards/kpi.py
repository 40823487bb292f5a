"""KPI: the plan's indicators as `tincoso report kpi --store` computed them (the ``kpi`` measurement).

The logic lives in one place, ``backend/kpi``: this dashboard only reads its stored
results, one point per indicator and commune per report period (``commune`` is
``_district`` for the district total), so Grafana and the PDF always show the same figures.
Its text is kept here until ``dashboards/i18n.py`` takes the ``kpi.*`` keys.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards import panels as p
from dashboards.i18n import Strings
from dashboards.influxql import InfluxQL

UID = "tincoso-kpi"
DISTRICT = "_district"

_TEXT = {
    "title": ("Chỉ tiêu kế hoạch (đo được)", "Plan indicators (measured)"),
    "district": ("Toàn huyện: giá trị, kế hoạch, kết quả", "District: value, target, result"),
    "district.help": (
        "Kết quả mới nhất trong khoảng thời gian đã chọn, do 'tincoso report kpi --store' tính; "
        "status: met = đạt, not_met = không đạt, unknown = chưa xác định (thiếu dữ liệu quyết định).",
        "Latest result in the chosen range, computed by 'tincoso report kpi --store'; status met, "
        "not_met, or unknown (missing data decides).",
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
    dash.with_panel(p.table_panel(_text(t, "district"), district, h=9).description(_text(t, "district.help")))
    trend = InfluxQL(
        f"""SELECT last("value") FROM "kpi" WHERE $timeFilter AND "commune" = '{DISTRICT}'
        GROUP BY time($__interval), "indicator" fill(none)"""
    )
    dash.with_panel(p.time_series(_text(t, "trend"), trend, unit="percent", w=24))
    communes = InfluxQL(
        f"""SELECT last("value") AS "value", last("coverage") AS "coverage", last("status") AS "status"
        FROM "kpi" WHERE $timeFilter AND "commune" != '{DISTRICT}' GROUP BY "indicator", "commune\""""
    )
    dash.with_panel(p.table_panel(_text(t, "communes"), communes, h=12))
    return dash
