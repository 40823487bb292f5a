"""The KPI report end to end: a scripted history in a real InfluxDB, every indicator and its evidence.

The history is written as ingest writes it (measurements, tags and fields of
docs/architecture.md, through `backend.influx.line`) for four days, 1–4 March 2025
(local time), of a small district:

- Đình Cả (town, IP radio): one hamlet cluster that sounds every bulletin, an e-board
  that is always lit, the district LED board in sync; its website answers 200.
- Tràng Xá (commune, IP radio): Xóm Trung Thành sounds every bulletin; Xóm Cây Thị is
  silent at three evening bulletins; Xóm Làng Hang never sends anything (no data); its
  e-board is dark all of 2 March; its website answers 503.
- Thần Sa (commune, wired FM radio): no devices registered, no website.
"""

from __future__ import annotations

import asyncio
import csv
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.influx import InfluxClient, line, rows
from backend.kpi.compute import compute_report, failed_bulletins
from backend.kpi.definitions import Definitions
from backend.kpi.model import MET, NOT_MET, UNKNOWN, KpiReport, Period
from backend.kpi.queries import fetch_measurements
from backend.kpi.store import store_report
from backend.kpi.website_probe import probe_websites, run_website_probes
from backend.registry import LOCAL_TZ, Registry, parse_registry

PERIOD = Period(date(2025, 3, 1), date(2025, 3, 4))
DARK_DAY = date(2025, 3, 2)
SILENT_EVENINGS = (date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 4))
STEP_MS = 300_000
NOW_MS = int(datetime(2025, 3, 5, 8, 0, tzinfo=LOCAL_TZ).timestamp() * 1000)

REGISTRY_YAML = """
district: Võ Nhai
communes:
  - id: dinh-ca
    name: Đình Cả
    type: town
    radio_system: ip
    website: {good_url}
    schedule:
      - {{name: Bản tin sáng, start: "05:30", end: "06:30"}}
      - {{name: Bản tin chiều, start: "17:00", end: "18:00"}}
    board_hours:
      - {{start: "06:00", end: "22:00"}}
  - id: trang-xa
    name: Tràng Xá
    type: commune
    radio_system: ip
    website: {bad_url}
    schedule:
      - {{name: Bản tin sáng, start: "05:30", end: "06:30"}}
      - {{name: Bản tin chiều, start: "17:00", end: "18:00"}}
    board_hours:
      - {{start: "06:00", end: "22:00"}}
  - id: than-sa
    name: Thần Sa
    type: commune
    radio_system: fm_wired
devices:
  - {{id: vn-dinhca-loa-01, kind: speaker_cluster, commune: dinh-ca, hamlet: Tổ dân phố Phố Ngữ}}
  - {{id: vn-dinhca-bangtin-01, kind: eboard, commune: dinh-ca, hamlet: Trụ sở UBND thị trấn}}
  - {{id: vn-trangxa-loa-01, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm Trung Thành}}
  - {{id: vn-trangxa-loa-02, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm Cây Thị}}
  - {{id: vn-trangxa-loa-03, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm Làng Hang}}
  - {{id: vn-trangxa-bangtin-01, kind: eboard, commune: trang-xa, hamlet: Trụ sở UBND xã}}
  - id: vn-huyen-led-01
    kind: district_led
    commune: dinh-ca
    hamlet: Quảng trường trung tâm huyện
    operating_hours:
      - {{start: "05:30", end: "23:00"}}
"""


def local_ms(day: date, hh: int, mm: int) -> int:
    """Epoch ms of a local (UTC+7) wall-clock time."""
    return int(datetime(day.year, day.month, day.day, hh, mm, tzinfo=LOCAL_TZ).timestamp() * 1000)


def _envelope(seq: int) -> dict[str, Any]:
    return {"seq": seq, "boot_id": "b1", "clock_ok": True, "placed": "device"}


def _in_bulletin(ts_ms: int) -> date | None:
    """The local day of the evening/morning bulletin running at ts_ms, with its name."""
    local = datetime.fromtimestamp(ts_ms / 1000, LOCAL_TZ)
    minutes = local.hour * 60 + local.minute
    if 5 * 60 + 30 < minutes <= 6 * 60 + 30 or 17 * 60 < minutes <= 18 * 60:
        return local.date()
    return None


def _silent(device: str, ts_ms: int) -> bool:
    local = datetime.fromtimestamp(ts_ms / 1000, LOCAL_TZ)
    return device == "vn-trangxa-loa-02" and local.hour >= 17 and local.date() in SILENT_EVENINGS


def history(registry: Registry) -> Iterator[str]:
    """Line protocol of the scripted four days (plus the evening before, for held readings)."""
    start, end = PERIOD.start_ms - 86_400_000, PERIOD.end_ms
    for device in registry.devices.values():
        if device.id == "vn-trangxa-loa-03":
            continue  # registered, never reported
        tags = registry.tags(device.id)
        for seq, ts in enumerate(range(start + 30_000, end, STEP_MS), start=1):
            yield line(
                "heartbeat",
                tags,
                {
                    **_envelope(seq),
                    "uptime_s": float(seq * 300),
                    "reboot_reason": "clean",
                    "temp_c": 41.0,
                    "disk_free_mb": 900.0,
                    "disk_ro": False,
                    "net_type": "4g",
                    "signal_dbm": -85.0,
                    "queue_depth": 0,
                    "queue_dropped": 0,
                },
                ts,
            )
        yield from (
            _audio(device.id, tags) if device.kind == "speaker_cluster" else _display(device.id, tags)
        )
    # The monitor's record of the silent device: offline since before the period.
    loa03 = registry.tags("vn-trangxa-loa-03")
    fields = {
        "start_ms": start,
        "end_ms": end + 3_600_000,
        "duration_s": float((end + 3_600_000 - start) / 1000),
    }
    yield line("down_interval", loa03, fields, start)


def _audio(device: str, tags: dict[str, str]) -> Iterator[str]:
    seq = 100_000
    for ts in range(PERIOD.start_ms - 86_400_000, PERIOD.end_ms, 60_000):
        bulletin = _in_bulletin(ts)
        if bulletin is None and ts % STEP_MS:
            continue  # between bulletins: a snapshot every 5 minutes
        seq += 1
        playing = bulletin is not None
        silent = playing and _silent(device, ts)
        rms = -65.0 if silent else (-18.0 if playing else -72.0)
        fields = {
            **_envelope(seq),
            "window_s": 60.0 if playing else 300.0,
            "playing": playing and not silent,
            "rms_dbfs": rms,
            "peak_dbfs": rms + 12,
            "dead_air": silent,
            "dead_air_s": 60.0 if silent else 0.0,
            "clipping": False,
        }
        yield line("audio", tags, fields, ts)


def _display(device: str, tags: dict[str, str]) -> Iterator[str]:
    seq = 200_000
    for ts in range(PERIOD.start_ms - 86_400_000, PERIOD.end_ms, STEP_MS):
        seq += 1
        local_day = datetime.fromtimestamp(ts / 1000, LOCAL_TZ).date()
        dark = device == "vn-trangxa-bangtin-01" and local_day == DARK_DAY
        fields = {
            **_envelope(seq),
            "power": not dark,
            "brightness": 0 if dark else 70,
            "content_id": None if dark else "thong-bao-0301",
            "blank": False,
            "frozen": False,
            "failed_modules": 0,
            "temp_c": 40.0,
            "source_sync_age_s": 600.0 if device == "vn-huyen-led-01" else None,
        }
        yield line("display", tags, fields, ts)


class _Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path.startswith("/dinhca") else 503
        body = "Trang thông tin điện tử".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def commune_site() -> Iterator[str]:
    """A local HTTP server standing in for the commune websites: /dinhca answers 200, the rest 503."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def registry(commune_site: str) -> Registry:
    """The small district, its websites on the local server."""
    return parse_registry(
        REGISTRY_YAML.format(good_url=f"{commune_site}/dinhca", bad_url=f"{commune_site}/trangxa")
    )


async def build_history(base_url: str, database: str, registry: Registry) -> None:
    """Write the scripted history and one website check per day at 09:00 local."""
    async with InfluxClient(base_url, database) as influx:
        batch: list[str] = []
        for point in history(registry):
            batch.append(point)
            if len(batch) >= 5000:
                await influx.write(batch)
                batch = []
        await influx.write(batch)
        for offset in range(PERIOD.days):
            at = local_ms(PERIOD.first_day + timedelta(days=offset), 9, 0) / 1000
            await probe_websites(registry, influx, clock=lambda at=at: at, timeout_s=5)


@pytest.fixture
async def report(influx_db: Any, registry: Registry) -> KpiReport:
    """The report of the scripted period, computed from the real database."""
    await build_history(influx_db.base_url, influx_db.name, registry)
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        measurements = await fetch_measurements(influx, PERIOD, Definitions())
    return compute_report(registry, measurements, PERIOD, Definitions(), now_ms=NOW_MS)


def _unit(report: KpiReport, indicator: str, commune: str) -> Any:
    return next(u for u in report.indicator(indicator).units if u.commune == commune)


async def test_radio_to_every_hamlet_fails_on_the_silent_hamlet_and_names_its_bulletins(
    report: KpiReport,
) -> None:
    ind = report.indicator("1.1")
    assert (ind.target_pct, ind.target_year) == (100.0, 2025)
    assert _unit(report, "1.1", "dinh-ca").verdict == MET
    tx = _unit(report, "1.1", "trang-xa")
    assert (tx.verdict, tx.reason, tx.detail) == (NOT_MET, "failed_hamlets", "Xóm Cây Thị")
    assert (_unit(report, "1.1", "than-sa").verdict, _unit(report, "1.1", "than-sa").reason) == (
        UNKNOWN,
        "no_devices",
    )
    assert (ind.met_units, ind.unknown_units, ind.verdict) == (1, 1, NOT_MET)
    assert ind.value_pct == pytest.approx(100 / 3)
    clusters = {c.device: c for c in report.clusters}
    assert (clusters["vn-trangxa-loa-02"].sounded, clusters["vn-trangxa-loa-02"].silent) == (5, 3)
    assert clusters["vn-trangxa-loa-02"].verdict == NOT_MET
    assert (clusters["vn-dinhca-loa-01"].sounded, clusters["vn-dinhca-loa-01"].scheduled) == (8, 8)
    nodata = clusters["vn-trangxa-loa-03"]
    assert (nodata.no_data, nodata.silent, nodata.verdict) == (8, 0, UNKNOWN)
    silent = [(b.device, b.day, b.name) for b in failed_bulletins(report.bulletins) if b.status == "silent"]
    assert silent == [("vn-trangxa-loa-02", day, "Bản tin chiều 17:00–18:00") for day in SILENT_EVENINGS]


async def test_morning_bulletin_at_0530_local_is_2230_utc_the_day_before(report: KpiReport) -> None:
    first = min((b for b in report.bulletins if b.device == "vn-dinhca-loa-01"), key=lambda b: b.start_ms)
    assert first.day == date(2025, 3, 1)
    assert datetime.fromtimestamp(first.start_ms / 1000, LOCAL_TZ).utctimetuple()[:5] == (2025, 2, 28, 22, 30)
    assert (first.status, first.sounded_pct) == ("sounded", pytest.approx(100.0))


async def test_ip_radio_counts_communes_that_sounded_and_not_the_wired_one(report: KpiReport) -> None:
    ind = report.indicator("1.2")
    assert [(u.commune, u.verdict, u.reason) for u in ind.units] == [
        ("dinh-ca", MET, "sounded"),
        ("trang-xa", MET, "sounded"),
        ("than-sa", NOT_MET, "not_ip"),
    ]
    assert (ind.value_pct, ind.target_pct, ind.verdict) == (pytest.approx(200 / 3), 100.0, NOT_MET)


async def test_websites_from_probes_of_a_local_server(report: KpiReport) -> None:
    ind = report.indicator("1.3")
    assert [(u.commune, u.verdict, u.reason, u.detail) for u in ind.units] == [
        ("dinh-ca", MET, "ok", "4/4"),
        ("trang-xa", NOT_MET, "unreachable", "0/4"),
        ("than-sa", NOT_MET, "no_website", ""),
    ]
    failures = next(w for w in report.websites if w.commune == "trang-xa").failures
    assert [f.status for f in failures] == [503] * 4
    assert failures[0].error == "HTTP 503"


async def test_dark_board_day_fails_the_commune_with_its_dark_interval(report: KpiReport) -> None:
    town = report.indicator("1.4")
    assert [(u.commune, u.verdict, u.value_pct) for u in town.units] == [
        ("dinh-ca", MET, pytest.approx(100.0))
    ]
    assert (town.target_pct, town.verdict) == (100.0, MET)
    communes = report.indicator("1.5")
    tx = _unit(report, "1.5", "trang-xa")
    assert (tx.verdict, tx.value_pct, tx.coverage_pct) == (NOT_MET, pytest.approx(75.0), pytest.approx(100.0))
    assert (_unit(report, "1.5", "than-sa").verdict, _unit(report, "1.5", "than-sa").reason) == (
        NOT_MET,
        "no_board",
    )
    assert (communes.value_pct, communes.target_pct, communes.verdict) == (0.0, 70.0, NOT_MET)
    board = next(b for b in report.boards if b.device == "vn-trangxa-bangtin-01")
    assert board.operating_s == 4 * 16 * 3600
    assert board.bad_intervals == ((local_ms(DARK_DAY, 6, 0), local_ms(DARK_DAY, 22, 0), "power_off"),)


async def test_district_board_in_sync_meets_2_2(report: KpiReport) -> None:
    ind = report.indicator("2.2")
    assert [(u.device, u.verdict) for u in ind.units] == [("vn-huyen-led-01", MET)]
    assert (ind.value_pct, ind.verdict) == (100.0, MET)
    led = next(b for b in report.boards if b.device == "vn-huyen-led-01")
    assert led.operating_s == 4 * 17.5 * 3600


async def test_coverage_lists_the_device_that_never_reported(report: KpiReport) -> None:
    coverage = {c.device: c for c in report.coverage}
    silent = coverage["vn-trangxa-loa-03"]
    assert silent.coverage_pct == 0.0
    assert silent.gaps == ((PERIOD.start_ms, PERIOD.end_ms),)
    assert len(silent.down) == 1
    assert all(
        c.coverage_pct == 100.0 and not c.gaps for d, c in coverage.items() if d != "vn-trangxa-loa-03"
    )


async def test_stored_kpi_points_read_back_per_indicator(influx_db: Any, report: KpiReport) -> None:
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        await store_report(influx, report)
        rows = await influx.query(
            'SELECT last("value") AS "value", last("met") AS "met" FROM "kpi" '
            'WHERE "commune" = \'_district\' GROUP BY "indicator"'
        )
    got = {s["tags"]["indicator"]: s["values"][0][1:] for s in rows}
    assert got["1.1"] == [pytest.approx(100 / 3), False]
    assert got["2.2"] == [100.0, True]
    assert set(got) == {"1.1", "1.2", "1.3", "1.4", "1.5", "2.2"}


def pdf_text(path: Path) -> str:
    """Text of a PDF with pdftotext (poppler-utils)."""
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_cli_writes_html_pdf_csv_json_and_the_pdf_shows_the_indicator_table(
    influx_db: Any, registry: Registry, tmp_path: Path
) -> None:
    asyncio.run(build_history(influx_db.base_url, influx_db.name, registry))
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(
        REGISTRY_YAML.format(
            good_url=registry.communes["dinh-ca"].website, bad_url=registry.communes["trang-xa"].website
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "backend.cli", "report", "kpi", "--from", "2025-03-01", "--to", "2025-03-04",
        "--influx-url", influx_db.base_url, "--database", influx_db.name, "--registry", str(registry_file),
        "--out", str(out), "--store",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "kpi: printing the PDF" in done.stderr
    stem = out / "kpi-2025-03-01_2025-03-04-vi"
    assert done.stdout.split() == [str(stem) + ext for ext in (".html", ".pdf", ".csv", ".json")]
    text = pdf_text(stem.with_suffix(".pdf"))
    summary = text[text.index("Tổng hợp chỉ tiêu") :]
    rows = {line.split()[0]: " ".join(line.split()) for line in summary.splitlines() if line.strip()[:3] in
            ("1.1", "1.2", "1.3", "1.4", "1.5", "2.2")}  # fmt: skip
    assert rows["1.1"].endswith("100% 33,3% 1 / 1 / 3 Không đạt")
    assert rows["1.2"].endswith("100% 66,7% 2 / 0 / 3 Không đạt")
    assert rows["1.3"].endswith("100% 33,3% 1 / 0 / 3 Không đạt")
    assert "100% 100% 1 / 0 / 1 Đạt" in rows["1.4"]
    assert "70% 0% 0 / 0 / 2 Không đạt" in " ".join(summary.split())
    assert "Có Có 1 / 0 / 1 Đạt" in " ".join(summary.split())
    assert "Chỉ tiêu áp dụng: năm 2025" in text
    flat = " ".join(text.split())
    assert "Xóm Cây Thị 01/03/2025 Bản tin chiều 17:00–18:00 im lặng" in flat
    assert "02/03/2025 06:00–22:00 (tắt nguồn)" in flat
    csv_rows = list(csv.DictReader(stem.with_suffix(".csv").read_text(encoding="utf-8").splitlines()))
    tx = next(r for r in csv_rows if r["indicator"] == "1.5" and r["commune"] == "trang-xa")
    assert (tx["verdict"], tx["value_pct"], tx["coverage_pct"]) == ("not_met", "75.00", "100.00")
    body = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    assert body["target_year"] == 2025
    assert sum(b["status"] == "silent" for b in body["bulletins"]) == 3
    stored = LocalQuery(influx_db).kpi_rows()
    assert stored == 6 + 3 + 3 + 3 + 1 + 2 + 1


class LocalQuery:
    """Synchronous read of the stored ``kpi`` points (the CLI test runs outside an event loop)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def kpi_rows(self) -> int:
        async def count() -> int:
            async with InfluxClient(self.db.base_url, self.db.name) as influx:
                return len(rows(await influx.query('SELECT "value", "status" FROM "kpi"')))

        return asyncio.run(count())


async def test_monitor_probe_loop_stores_checks_until_stopped(influx_db: Any, registry: Registry) -> None:
    stop = asyncio.Event()
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        ticks = iter(range(1_700_000_000, 1_700_000_100))
        loop = asyncio.create_task(
            run_website_probes(registry, influx, 0.05, stop, clock=lambda: next(ticks))
        )
        for _ in range(200):
            checks = rows(
                await influx.query('SELECT "ok", "status", "error" FROM "website_check" GROUP BY "commune"')
            )
            if len({r["time"] for r in checks}) >= 2:
                break
            await asyncio.sleep(0.02)
        stop.set()
        assert await asyncio.wait_for(loop, 5) == 0
    by_commune = {(r["commune"], r["ok"], r["status"], r["error"]) for r in checks}
    assert by_commune == {("dinh-ca", True, 200, None), ("trang-xa", False, 503, "HTTP 503")}
