"""Signed acceptance reports: keygen, sign, verify against a pinned key, and the printed PDF."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from backend.acceptance import checks as C
from backend.acceptance.profile import default_profile
from backend.acceptance.report import build_report, write_report
from backend.acceptance.runner import AcceptanceRun
from backend.acceptance.signing import SigningError, load_private_key
from backend.acceptance.text import explain_error
from backend.cli import main as tincoso

SPAN = (1_764_151_200_000, 1_764_151_260_000)
DEVICE = "vn-trangxa-bang-01"
# A device error with long unbroken tokens, as an agent reports it: the print layout must wrap it.
LONG_ERROR = "ProbeError: display at /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0 " + (
    "refused show_test_pattern: powered_off_" + "x" * 120
)


def _run() -> AcceptanceRun:
    birth = {
        "kind": "birth",
        "agent_version": "0.1.0",
        "platform": "linux-armv7l",
        "boot_id": "b",
        "bdseq": 4,
    }
    failed = C.check_test_pattern(
        {"ok": False, "error": LONG_ERROR, "measured": {}}, None, default_profile("eboard"), SPAN
    )
    checks = [
        C.CheckResult("online", True, {"birth_age_s": 3.0}, {"birth_max_age_s": 86400.0}, "đạt", *SPAN),
        failed,
    ]
    return AcceptanceRun(DEVICE, "eboard", birth, default_profile("eboard"), checks, *SPAN)


@pytest.fixture
def key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "keys" / "vendor.key"
    path.parent.mkdir()
    assert tincoso(["acceptance", "keygen", "--out", str(path)]) == 0
    assert "fingerprint:" in capsys.readouterr().out
    return path


def test_keygen_writes_a_private_key_only_its_owner_reads(key: Path) -> None:
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.with_suffix(".pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert tincoso(["acceptance", "keygen", "--out", str(key)]) == 1  # never overwritten
    key.chmod(0o644)
    with pytest.raises(SigningError, match="chmod 600"):
        load_private_key(key)


def test_signed_report_verifies_and_one_changed_byte_does_not(
    key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_report(build_report(_run()), tmp_path / "r", signing_key=load_private_key(key))
    assert files.sig_path is not None
    assert files.fingerprint is not None
    assert files.fingerprint in files.html_path.read_text(encoding="utf-8")
    report = str(files.json_path)
    public = str(key.with_suffix(".pub"))
    signed = files.json_path.read_bytes()
    capsys.readouterr()
    assert tincoso(["acceptance", "verify", report, "--key", public]) == 0
    assert "OK" in capsys.readouterr().out
    assert tincoso(["acceptance", "verify", report, "--fingerprint", files.fingerprint]) == 0
    # Without a pinned key the shipped key proves nothing: not verified.
    assert tincoso(["acceptance", "verify", report]) == 2
    assert "CHƯA ĐỐI CHIẾU" in capsys.readouterr().out

    for at in (files.json_path.read_bytes().index(b'"started_ms": ') + 14, 0):
        data = bytearray(signed)
        data[at] = ord("9") if data[at] != ord("9") else ord("8")  # one byte, still valid JSON or not
        files.json_path.write_bytes(bytes(data))
        assert tincoso(["acceptance", "verify", report, "--key", public]) == 2
        assert "KHÔNG HỢP LỆ" in capsys.readouterr().out


def test_report_re_signed_with_another_key_fails_against_the_pinned_key(
    key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.key"
    assert tincoso(["acceptance", "keygen", "--out", str(other)]) == 0
    files = write_report(build_report(_run()), tmp_path / "r", signing_key=load_private_key(other))
    capsys.readouterr()
    code = tincoso(["acceptance", "verify", str(files.json_path), "--key", str(key.with_suffix(".pub"))])
    assert code == 2
    assert "khóa khác" in capsys.readouterr().out


def test_failures_read_in_plain_vietnamese_with_what_to_do(tmp_path: Path) -> None:
    report = build_report(_run())
    pattern = next(c for c in report["checks"] if c["name"] == "test_pattern")
    assert pattern["detail"].startswith("thiết bị báo lỗi khi chạy lệnh: màn hình đang tắt nguồn")
    assert "bật bảng lên" in pattern["action"]
    assert next(c for c in report["checks"] if c["name"] == "online")["action"] == ""
    assert explain_error("vi", "no player command is configured on this device").startswith(
        "chức năng này chưa được cấu hình"
    )


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm)")
def test_pdf_pages_show_every_column_inside_the_page(tmp_path: Path) -> None:
    files = write_report(build_report(_run()), tmp_path / "r", pdf=True)
    assert files.pdf_path is not None
    subprocess.run(
        ["pdftoppm", "-r", "50", "-gray", str(files.pdf_path), str(tmp_path / "page")],
        check=True,
        timeout=120,
    )
    pages = sorted(tmp_path.glob("page*.pgm"))
    assert pages
    for page in pages:
        width, height, pixels = _read_pgm(page)
        # A4 at 50 dpi is 413 px wide; the right margin is 12 mm = 23 px. Nothing is drawn
        # there unless a column ran off the page's printable width.
        margin = 20
        ink = [
            (x, y) for y in range(height) for x in range(width - margin, width) if pixels[y * width + x] < 200
        ]
        assert not ink, f"{page.name}: ink in the right margin at {ink[:5]}"
    text = subprocess.run(
        ["pdftotext", str(files.pdf_path), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.replace("\n", "")
    assert "x" * 40 in text  # the long token is wrapped, not cut
    assert json.loads(files.json_path.read_text(encoding="utf-8"))["device"]["id"] in text


def _read_pgm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P5", fields[0]
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[pos + 1 : pos + 1 + width * height]
