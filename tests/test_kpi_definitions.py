"""KPI definitions and edge cases of the computation, on hand-built readings (no database)."""

from __future__ import annotations

import asyncio
import io
import socket
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions, DefinitionsError, explain, load_definitions, target_for
from backend.kpi.devices import bounded_verdict, cluster_bulletins, operating_intervals, subtract
from backend.kpi.model import MET, NOT_MET, UNKNOWN, AudioReading, Measurements, Period
from backend.kpi.render_html import render_html
from backend.kpi.render_pdf import html_to_pdf
from backend.kpi.website_probe import probe_website
from backend.registry import LOCAL_TZ, parse_registry

REGISTRY = parse_registry(
    """
district: Võ Nhai
communes:
  - id: la-hien
    name: La Hiên
    type: commune
    radio_system: ip
    schedule:
      - {name: Bản tin sáng, start: "06:00", end: "06:30"}
    board_hours:
      - {start: "18:00", end: "02:00"}
devices:
  - {id: vn-lahien-loa-01, kind: speaker_cluster, commune: la-hien, hamlet: Xóm Cậy, installed: 2025-01-01}
  - {id: vn-lahien-bangtin-01, kind: eboard, commune: la-hien, hamlet: UBND xã}
"""
)


def ms(year: int, month: int, day: int, hh: int, mm: int) -> int:
    """Epoch ms of a local (UTC+7) time."""
    return int(datetime(year, month, day, hh, mm, tzinfo=LOCAL_TZ).timestamp() * 1000)


def test_defaults_carry_the_plan_targets_and_the_year_of_the_period_end_applies() -> None:
    defs = Definitions()
    assert target_for(defs, "1.2", 2024) == (50.0, 2024)
    assert target_for(defs, "1.5", 2025) == (70.0, 2025)
    assert target_for(defs, "1.5", 2026) == (70.0, 2025)  # after the plan its last year stands
    assert target_for(defs, "1.4", 2023) == (0.0, 2024)
    period = Period(date(2024, 12, 30), date(2025, 1, 2))
    assert (period.target_year, period.spans_years) == (2025, True)


def test_definition_text_prints_the_thresholds_in_force() -> None:
    defs = Definitions(cluster_bulletins_pct=95, dead_air_threshold_dbfs=-45)
    assert "95%" in explain("1.1", defs, "vi")
    assert "-45 dBFS" in explain("1.1", defs, "vi")
    assert "at least 95% of the period's scheduled bulletins" in explain("1.1", defs, "en")


def test_definitions_file_overrides_and_rejects_what_it_does_not_know(tmp_path: Path) -> None:
    good = tmp_path / "kpi.toml"
    good.write_text('board_on_pct = 80\n[targets."1.2"]\n2025 = 75\n', encoding="utf-8")
    defs = load_definitions(good)
    assert (defs.board_on_pct, defs.targets["1.2"][2025], defs.targets["1.2"][2024]) == (80.0, 75.0, 50.0)
    bad = tmp_path / "bad.toml"
    bad.write_text("board_on_percent = 80\n", encoding="utf-8")
    with pytest.raises(DefinitionsError, match="'board_on_percent' is not a known setting"):
        load_definitions(bad)
    bad.write_text("bulletin_sounded_pct = 150\n", encoding="utf-8")
    with pytest.raises(
        DefinitionsError, match=r"bulletin_sounded_pct must be a percentage 0\.\.100, got 150"
    ):
        load_definitions(bad)
    with pytest.raises(DefinitionsError, match="does not exist"):
        load_definitions(tmp_path / "missing.toml")


def test_unknown_data_decides_only_when_it_could_change_the_verdict() -> None:
    assert bounded_verdict(95, 100, 90) == MET
    assert bounded_verdict(50, 80, 90) == NOT_MET
    assert bounded_verdict(50, 95, 90) == UNKNOWN
    assert subtract([(0, 10)], [(2, 3), (5, 12)]) == [(0, 2), (3, 5)]


def test_bulletins_before_installation_are_not_scheduled_and_0600_local_is_2300_utc() -> None:
    device = REGISTRY.devices["vn-lahien-loa-01"]
    readings = [AudioReading(ms(2025, 1, 1, 6, 0) + 60_000 * i, -20.0, 60.0) for i in range(1, 31)]
    m = Measurements(audio={device.id: readings})
    bulletins = cluster_bulletins(
        device, REGISTRY, m, Period(date(2024, 12, 30), date(2025, 1, 2)), Definitions()
    )
    assert [(b.day, b.status) for b in bulletins] == [
        (date(2025, 1, 1), "sounded"),
        (date(2025, 1, 2), "no_data"),
    ]
    utc_start = datetime.fromtimestamp(bulletins[0].start_ms / 1000, UTC)
    assert utc_start == datetime(2024, 12, 31, 23, 0, tzinfo=UTC)


def test_board_hours_past_midnight_run_into_the_next_day() -> None:
    board = REGISTRY.devices["vn-lahien-bangtin-01"]
    hours = operating_intervals(board, REGISTRY, Period(date(2025, 3, 1), date(2025, 3, 1)))
    # 00:00–02:00 (the evening before's window) and 18:00–24:00 of the one day.
    assert hours == [
        (ms(2025, 3, 1, 0, 0), ms(2025, 3, 1, 2, 0)),
        (ms(2025, 3, 1, 18, 0), ms(2025, 3, 2, 0, 0)),
    ]


def test_report_across_the_new_year_says_which_year_applies_in_english_pdf(tmp_path: Path) -> None:
    period = Period(date(2024, 12, 30), date(2025, 1, 2))
    report = compute_report(REGISTRY, Measurements(), period, Definitions(), now_ms=ms(2025, 1, 3, 8, 0))
    assert report.target_year == 2025
    assert report.indicator("1.2").target_pct == 100.0
    radio = report.indicator("1.1")
    assert [(u.commune, u.verdict, u.reason) for u in radio.units] == [("la-hien", UNKNOWN, "no_data")]
    assert report.indicator("1.3").units[0].reason == "no_website"
    pdf = html_to_pdf(render_html(report, REGISTRY, Definitions(), "en"), tmp_path / "report.pdf")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.read_bytes())).pages)
    flat = " ".join(text.split())
    assert "The period runs over a new year (2024-12-30–2025-01-02): the targets of 2025 apply." in flat
    for indicator in ("1.1", "1.2", "1.3", "1.4", "1.5", "2.2"):
        assert f"{indicator} " in flat
    assert "Not met" in flat
    assert "No data" in flat
    assert "No district LED board in the registry." in flat


async def test_website_probe_of_a_closed_port_says_why() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = await asyncio.wait_for(probe_website(f"http://127.0.0.1:{port}/", timeout_s=2), 10)
    assert (outcome.ok, outcome.status) == (False, None)
    assert outcome.error is not None
    assert outcome.error.startswith("ConnectError")
    bad = await probe_website("ftp://127.0.0.1/")
    assert (bad.ok, bad.error) == (False, "not an http(s) URL: 'ftp://127.0.0.1/'")


def test_report_and_dashboards_share_the_sounded_threshold() -> None:
    from backend.kpi.definitions import Definitions
    from backend.rollups import SOUND_THRESHOLD_DBFS

    assert Definitions().dead_air_threshold_dbfs == SOUND_THRESHOLD_DBFS
