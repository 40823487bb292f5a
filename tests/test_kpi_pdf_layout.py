"""The KPI report's PDF as an auditor prints it: nothing cut at the margins (issue 14, item 5).

The PDF is rendered to PNG pages by pdftoppm (as a reviewer sees them) and every word's box
from ``pdftotext -bbox`` must lie inside its page: WeasyPrint lets a too-wide table run off
the right edge, where the text is still in the file but never printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions
from backend.kpi.model import DownInterval, Measurements, Period
from backend.kpi.render_html import render_html
from backend.kpi.render_pdf import html_to_pdf
from backend.registry import parse_registry

HAMLETS = 24
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
REGISTRY = parse_registry(
    """
district: Võ Nhai
communes:
  - id: nghinh-tuong
    name: Nghinh Tường
    type: commune
    radio_system: ip
    schedule:
      - {name: Bản tin sáng, start: "05:30", end: "06:30"}
      - {name: Bản tin chiều, start: "17:00", end: "18:00"}
devices:
"""
    + "".join(
        f"  - {{id: vn-nghinhtuong-loa-{i:02d}, kind: speaker_cluster, commune: nghinh-tuong, "
        f"hamlet: Xóm Khuôn Mánh Thượng Nguồn {i}}}\n"
        for i in range(HAMLETS)
    )
)
PERIOD = Period(date(2025, 3, 1), date(2025, 3, 7))
WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>')
PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">')


def _patchy_month() -> Measurements:
    """Every cluster talks in bursts: many gaps and down intervals, the widest coverage rows."""
    m = Measurements()
    for i in range(HAMLETS):
        device = f"vn-nghinhtuong-loa-{i:02d}"
        buckets = {PERIOD.start_ms + b * 300_000 for b in range(7 * 288) if (b // (7 + i % 5)) % 3}
        m.heartbeat_buckets[device] = buckets
        # Outages across midnight print with both dates: the widest cells.
        m.down[device] = [
            DownInterval(
                PERIOD.start_ms + d * DAY_MS + 22 * HOUR_MS, PERIOD.start_ms + d * DAY_MS + 26 * HOUR_MS
            )
            for d in range(7)
        ]
    return m


def _words_outside_pages(pdf: Path) -> list[str]:
    bbox = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True)
    outside = []
    for page_no, page in enumerate(bbox.stdout.split("<page ")[1:], start=1):
        size = PAGE.match("<page " + page)
        assert size is not None
        width, height = float(size.group(1)), float(size.group(2))
        for x0, y0, x1, y1, text in WORD.findall(page):
            if float(x0) < 0 or float(y0) < 0 or float(x1) > width + 0.5 or float(y1) > height + 0.5:
                outside.append(f"page {page_no}: {text!r} at x {x0}..{x1} of {width}")
    return outside


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing: make system-deps")
def test_report_pdf_pages_keep_every_word_inside_the_page(tmp_path: Path) -> None:
    report = compute_report(REGISTRY, _patchy_month(), PERIOD, Definitions(), now_ms=PERIOD.end_ms)
    pdf = html_to_pdf(render_html(report, REGISTRY, Definitions(), "vi"), tmp_path / "kpi.pdf")
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    assert _words_outside_pages(pdf) == []


def write_page_image(out: Path) -> Path:
    """Render the coverage page of this test's report to ``out`` (the image in docs/kpi.md)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = compute_report(REGISTRY, _patchy_month(), PERIOD, Definitions(), now_ms=PERIOD.end_ms)
        pdf = html_to_pdf(render_html(report, REGISTRY, Definitions(), "vi"), Path(tmp) / "kpi.pdf")
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        page = next(n for n, body in enumerate(text.split("\f"), start=1) if "Mức phủ dữ liệu" in body)
        stem = Path(tmp) / "page"
        subprocess.run(
            ["pdftoppm", "-r", "60", "-png", "-f", str(page), "-l", str(page), str(pdf), str(stem)],
            check=True,
        )
        shutil.copy(next(Path(tmp).glob("page-*.png")), out)
    return out


if __name__ == "__main__":  # python -m tests.test_kpi_pdf_layout: refresh docs/img/kpi-coverage-page.png
    print(write_page_image(Path(__file__).resolve().parents[1] / "docs" / "img" / "kpi-coverage-page.png"))
