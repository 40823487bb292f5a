"""The KPI report says whose each outage was: alerted outage hours by likely cause, read from
the monitor's settled ``outage`` points on a real InfluxDB."""

from __future__ import annotations

import json
from typing import Any

from backend.influx import InfluxClient, line
from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions
from backend.kpi.export import report_json
from backend.kpi.queries import fetch_measurements
from backend.kpi.render_html import render_html
from tests.test_kpi_no_data import NOW_MS, PERIOD, REGISTRY

HOUR_MS = 3_600_000


def _outage(device: str, commune: str, since_ms: int, cause: str, evidence: str, hours: float | None) -> str:
    tags = {
        "device": device,
        "commune": commune,
        "kind": "speaker_cluster",
        "cause": cause,
        "evidence": evidence,
    }
    fields: dict[str, Any] = {"text": f"Nghi ... ({cause})", "refined": False, "since_ms": since_ms}
    if hours is not None:
        fields["duration_s"] = hours * 3600
    return line("outage", tags, fields, since_ms)


async def test_outage_hours_by_cause_in_the_report(influx_db: object) -> None:
    db: Any = influx_db
    start = PERIOD.start_ms
    points = [
        # The grid: classified when the alert opened, settled (same tags) with its duration.
        _outage("vn-lahien-loa-01", "la-hien", start + 2 * HOUR_MS, "mains", "mains_flag", None),
        _outage("vn-lahien-loa-01", "la-hien", start + 2 * HOUR_MS, "mains", "mains_flag", 3.0),
        # The carrier: first "unknown", refined to cellular after the return.
        _outage("vn-lahien-loa-01", "la-hien", start + 30 * HOUR_MS, "unknown", "none", None),
        _outage("vn-lahien-loa-01", "la-hien", start + 30 * HOUR_MS, "cellular", "no_reboot", 1.5),
        # The equipment, starting before the period: only its hours inside count.
        _outage("vn-dinhca-loa-01", "dinh-ca", start - HOUR_MS, "device", "disk_ro", 2.0),
        # Still open (not settled): no hours yet.
        _outage("vn-dinhca-loa-01", "dinh-ca", start + 40 * HOUR_MS, "unknown", "none", None),
    ]
    async with InfluxClient(db.base_url, db.name) as influx:
        await influx.create_database()
        await influx.write(points)
        m = await fetch_measurements(influx, PERIOD, Definitions())
    report = compute_report(REGISTRY, m, PERIOD, Definitions(), now_ms=NOW_MS)
    by_device = {o.device: o for o in report.outage_causes}
    lahien = by_device["vn-lahien-loa-01"]
    assert lahien.hours == {"mains": 3.0, "cellular": 1.5, "device": 0.0, "unknown": 0.0}
    assert lahien.outages == {"mains": 1, "cellular": 1, "device": 0, "unknown": 0}
    assert by_device["vn-dinhca-loa-01"].hours["device"] == 1.0
    body = json.loads(report_json(report, Definitions()))
    assert {"device": "vn-lahien-loa-01", "hours": lahien.hours}.items() <= next(
        o for o in body["outage_causes"] if o["device"] == "vn-lahien-loa-01"
    ).items()
    html = render_html(report, REGISTRY, Definitions(), "vi")
    section = html.split("Giờ mất kết nối theo nguyên nhân", 1)[1].split("<h2>", 1)[0]
    assert "vẫn tính vào chỉ tiêu 1.1" in section
    for words in (
        "Mất điện lưới",
        "Mất sóng di động",
        "Lỗi thiết bị",
        "La Hiên",
        "Xóm Cậy",
        "3,0 (1)",
        "1,5 (1)",
    ):
        assert words in section, words
    english = render_html(report, REGISTRY, Definitions(), "en")
    assert "Outage hours by cause" in english
    assert "Mains power lost" in english
