"""The KPI report on missing data: "no data" where it must, never "Đạt" on nothing (issue 14)."""

from __future__ import annotations

import json
from datetime import date

from backend.kpi.compute import compute_report, data_coverage_pct
from backend.kpi.definitions import Definitions
from backend.kpi.export import report_json
from backend.kpi.model import UNKNOWN, AudioReading, DisplayReading, Measurements, Period
from backend.kpi.render_html import render_html
from backend.registry import parse_registry

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
    board_hours:
      - {start: "07:00", end: "21:00"}
  - id: la-hien
    name: La Hiên
    type: commune
    radio_system: ip
    schedule:
      - {name: Bản tin chiều, start: "17:00", end: "18:00"}
    board_hours:
      - {start: "07:00", end: "21:00"}
  - id: vu-chan
    name: Vũ Chấn
    type: commune
    radio_system: ip
    schedule:
      - {name: Bản tin chiều, start: "17:00", end: "18:00"}
devices:
  - {id: vn-dinhca-loa-01, kind: speaker_cluster, commune: dinh-ca, hamlet: Tổ 1}
  - {id: vn-dinhca-bangtin-01, kind: eboard, commune: dinh-ca, hamlet: UBND thị trấn}
  - {id: vn-lahien-loa-01, kind: speaker_cluster, commune: la-hien, hamlet: Xóm Cậy}
  - {id: vn-lahien-bangtin-01, kind: eboard, commune: la-hien, hamlet: UBND xã}
"""
)
# 2024: the plan's targets for 1.4 and 1.5 are 0 %, which anything would "meet".
PERIOD = Period(date(2024, 6, 1), date(2024, 6, 3))
NOW_MS = PERIOD.end_ms + 3_600_000


def _report(m: Measurements) -> tuple[dict[str, object], str]:
    report = compute_report(REGISTRY, m, PERIOD, Definitions(), now_ms=NOW_MS)
    body = json.loads(report_json(report, Definitions()))
    return body, render_html(report, REGISTRY, Definitions(), "vi")


def test_a_period_without_any_data_says_no_data_and_judges_nothing_met() -> None:
    report = compute_report(REGISTRY, Measurements(), PERIOD, Definitions(), now_ms=NOW_MS)
    for indicator in ("1.1", "1.4", "1.5"):
        result = report.indicator(indicator)
        assert result.verdict == UNKNOWN, indicator
        assert result.value_pct is None, indicator  # never "0 %" for missing data
    body, html = _report(Measurements())
    assert body["data_coverage_pct"] == 0
    assert body["coverage_warning"] is True
    assert "không có dữ liệu đo nào trong kỳ" in html
    summary = html.split('<table class="summary">')[1].split("</table>")[0]
    assert "Đạt" not in summary.replace("Đạt / chưa rõ / tổng", "")


def test_partial_coverage_opens_with_a_banner_and_judges_only_covered_units() -> None:
    town_board = "vn-dinhca-bangtin-01"
    start = PERIOD.start_ms
    readings = [
        DisplayReading(start + minute * 60_000, True, False, False, None) for minute in range(0, 3 * 1440, 5)
    ]
    bulletins = [
        AudioReading(start + (day * 24 + 10) * 3_600_000 + minute * 60_000, -20.0, 60.0)
        for day in range(3)
        for minute in range(1, 61)
    ]
    m = Measurements(audio={"vn-dinhca-loa-01": bulletins}, display={town_board: readings})
    report = compute_report(REGISTRY, m, PERIOD, Definitions(), now_ms=NOW_MS)
    coverage = data_coverage_pct(report)
    assert coverage is not None
    assert 0 < coverage < Definitions().coverage_warn_pct
    assert report.indicator("1.4").verdict == "met"  # the town's board was measured showing
    # The commune board sent nothing: no data for it, not a 0 %.
    la_hien = next(u for u in report.indicator("1.5").units if u.commune == "la-hien")
    assert (la_hien.verdict, la_hien.value_pct) == (UNKNOWN, None)
    body, html = _report(m)
    assert body["coverage_warning"] is True
    assert "Cảnh báo: dữ liệu đo chỉ phủ" in html


def test_a_commune_without_devices_is_no_data_for_radio_not_a_failure() -> None:
    report = compute_report(REGISTRY, Measurements(), PERIOD, Definitions(), now_ms=NOW_MS)
    unit = next(u for u in report.indicator("1.1").units if u.commune == "vu-chan")
    assert unit.verdict == UNKNOWN
    assert unit.reason == "no_devices"
    assert unit.value_pct is None


def test_report_states_its_provenance_and_that_2_1_is_not_measured() -> None:
    from dataclasses import replace

    from backend.kpi.export import report_csv
    from backend.kpi.provenance import provenance

    report = compute_report(REGISTRY, Measurements(), PERIOD, Definitions(), now_ms=NOW_MS)
    source = "InfluxDB http://127.0.0.1:8086, database tincoso, raw"
    html = render_html(report, REGISTRY, Definitions(), "vi", source=source)
    block = provenance(report, REGISTRY, Definitions(), source)
    assert block["software"].startswith("tincoso ")
    assert "Nguồn gốc số liệu" in html
    assert source in html
    assert block["registry_sha256"] in html
    assert block["definitions_sha256"] in html
    stricter = provenance(report, REGISTRY, replace(Definitions(), cluster_bulletins_pct=95.0), source)
    assert stricter["definitions_sha256"] != block["definitions_sha256"]
    assert stricter["registry_sha256"] == block["registry_sha256"]
    assert "Không đo được" in html
    assert any(
        row.startswith("2.1,district,") and "not_measurable" in row for row in report_csv(report).splitlines()
    )
    body = json.loads(report_json(report, Definitions(), block))
    assert body["provenance"]["period"].startswith("2024-06-01 .. 2024-06-03")
    assert body["not_measured"] == [{"id": "2.1", "verdict": "not_measurable"}]


async def test_crash_free_hours_count_hours_reported_without_a_crash_boot(influx_db: object) -> None:
    from typing import Any

    from backend.influx import InfluxClient, line, rows
    from backend.kpi.queries import fetch_measurements
    from backend.kpi.store import store_report

    db: Any = influx_db
    device = "vn-lahien-loa-01"
    tags = {"device": device, "commune": "la-hien", "hamlet": "Xóm Cậy", "kind": "speaker_cluster"}
    start = PERIOD.start_ms
    points = []
    # Ten hours of heartbeats every 5 min; a watchdog reboot at 03:20, a clean restart at 06:10.
    for minute in range(0, 600, 5):
        ts = start + minute * 60_000
        boot, booted, reason = ("b1", start - 60_000, "first_boot")
        if minute >= 200:
            boot, booted, reason = ("b2", start + 200 * 60_000, "watchdog")
        if minute >= 370:
            boot, booted, reason = ("b3", start + 370 * 60_000, "clean")
        fields = {"uptime_s": (ts - booted) / 1000, "reboot_reason": reason, "boot_id": boot, "seq": minute}
        points.append(line("heartbeat", tags, fields, ts))
    async with InfluxClient(db.base_url, db.name) as influx:
        await influx.create_database()
        await influx.write(points)
        m = await fetch_measurements(influx, PERIOD, Definitions())
        report = compute_report(REGISTRY, m, PERIOD, Definitions(), now_ms=NOW_MS)
        health = next(c for c in report.crash_free if c.device == device)
        assert (health.operating_h, health.crash_free_h, health.crashes) == (10, 9, 1)
        # Stored for the device dashboard's crash-free panel.
        await store_report(influx, report)
        stored = rows(
            await influx.query(
                f"SELECT crash_free_h, operating_h FROM device_health WHERE device = '{device}'"
            )
        )
        assert [(r["crash_free_h"], r["operating_h"]) for r in stored] == [(9, 10)]
    html = render_html(report, REGISTRY, Definitions(), "vi")
    assert "Giờ hoạt động không lỗi" in html
    assert "90%" in html
