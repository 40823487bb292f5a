"""The KPI dashboard's panel queries read the ``kpi`` points a report stored, in a real InfluxDB."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from backend.influx import InfluxClient
from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions
from backend.kpi.model import AudioReading, Measurements, Period
from backend.kpi.store import store_report
from backend.registry import parse_registry
from dashboards import kpi
from dashboards.i18n import Strings

REGISTRY = parse_registry(
    """
district: Võ Nhai
communes:
  - id: dinh-ca
    name: Đình Cả
    type: town
    radio_system: ip
    schedule:
      - {name: Bản tin chiều, start: "17:00", end: "18:00"}
  - {id: than-sa, name: Thần Sa, radio_system: fm_wired}
devices:
  - {id: vn-dinhca-loa-01, kind: speaker_cluster, commune: dinh-ca, hamlet: Phố Ngữ}
"""
)


def _queries(lang: str) -> list[tuple[str, str]]:
    model = json.loads(json.dumps(kpi.build(Strings(lang)).build(), cls=JSONEncoder))
    return [(panel["title"], target["query"]) for panel in model["panels"] for target in panel["targets"]]


async def test_every_kpi_panel_reads_the_stored_report(influx_db: Any) -> None:
    period = Period(date(2025, 3, 1), date(2025, 3, 1))
    audio = [AudioReading(period.start_ms + 17 * 3_600_000 + i * 60_000, -20.0, 60.0) for i in range(1, 61)]
    m = Measurements(audio={"vn-dinhca-loa-01": audio})
    report = compute_report(REGISTRY, m, period, Definitions(), now_ms=period.end_ms)
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        await store_report(influx, report)
        time_filter = f"time >= {period.start_ms}ms and time <= {period.end_ms}ms"
        results = {}
        for title, query in _queries("en"):
            q = query.replace("$timeFilter", time_filter).replace("$__interval", "1d")
            assert "$" not in q, q
            results[title] = await influx.query(q)
    district = {s["tags"]["indicator"]: dict(zip(s["columns"], s["values"][0], strict=True)) for s in results[
        "District: value, target, result"]}  # fmt: skip
    assert set(district) == {"1.1", "1.2", "1.3", "1.4", "1.5", "2.2"}
    assert (district["1.1"]["value"], district["1.1"]["status"]) == (50.0, "unknown")
    assert (district["1.2"]["value"], district["1.2"]["target"], district["1.2"]["status"]) == (
        50.0,
        100.0,
        "not_met",
    )
    trend = results["Value per report period (%)"]
    assert {s["tags"]["indicator"] for s in trend} == set(district)
    communes = {(s["tags"]["indicator"], s["tags"]["commune"]): s["values"][0] for s in results[
        "Per commune: value, data coverage, result"]}  # fmt: skip
    assert communes[("1.1", "dinh-ca")][1:] == [100.0, 100.0, "met"]
    assert communes[("1.2", "than-sa")][3] == "not_met"


def test_kpi_dashboard_text_in_both_languages() -> None:
    assert next(title for title, _ in _queries("vi")) == "Toàn huyện: giá trị, kế hoạch, kết quả"
