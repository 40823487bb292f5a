"""Words of the acceptance report: Vietnamese by default, English with ``--lang en``.

Check details are written through :func:`tr` at the moment a check is judged, so the
JSON report carries the same sentence the HTML shows and a signed copy reads alone.
"""

from __future__ import annotations

from typing import Any

LANGS = ("vi", "en")

_TEXT: dict[str, str] = {
    # check titles
    "check.online": ("Thiết bị trực tuyến, bản tin khởi động mới|Device online with a fresh birth"),
    "check.telemetry": "Dữ liệu giám sát đủ trường, giá trị hợp lý|Telemetry complete and plausible",
    "check.report_now": "Thời gian khứ hồi lệnh report_now|report_now round trip",
    "check.test_tone": "Âm thử đo được trên đầu ra âm thanh|Test tone measured on the audio output",
    "check.amplifier": "Công suất ampli tăng khi phát âm thử|Amplifier power rises with the test tone",
    "check.test_pattern": "Bảng hiển thị hình mẫu thử|Test pattern shown on the board",
    "check.reconnect": "Tự kết nối lại, không mất số thứ tự|Forced reconnect recovered, no sequence gap",
    "check.clock": "Đồng hồ thiết bị đồng bộ|Device clock synchronised",
    # verdicts and headings
    "pass": "ĐẠT|PASS",
    "fail": "KHÔNG ĐẠT|FAIL",
    "title": "Biên bản nghiệm thu từ xa|Remote acceptance report",
    "device": "Thiết bị|Device",
    "kind": "Loại|Kind",
    "commune": "Xã|Commune",
    "hamlet": "Thôn/xóm|Hamlet",
    "agent_version": "Phiên bản agent|Agent version",
    "platform": "Nền tảng|Platform",
    "boot_id": "Mã phiên khởi động|Boot id",
    "profile": "Hồ sơ nghiệm thu|Acceptance profile",
    "started": "Bắt đầu|Started",
    "ended": "Kết thúc|Ended",
    "verdict": "Kết luận|Verdict",
    "check": "Hạng mục|Check",
    "result": "Kết quả|Result",
    "measured": "Giá trị đo|Measured",
    "limit": "Ngưỡng|Limit",
    "detail": "Ghi chú|Detail",
    "sha256": "SHA-256 của report.json|SHA-256 of report.json",
    "sha256_note": (
        "Mã băm của tệp report.json; chạy `tincoso acceptance verify report.json` để kiểm tra bản đã ký."
        "|Hash of report.json; run `tincoso acceptance verify report.json` to check a signed copy."
    ),
    "sign_vendor": "Đại diện nhà cung cấp (ký, ghi rõ họ tên)|Vendor representative (signature, name)",
    "sign_office": "Đại diện đơn vị tiếp nhận (ký, ghi rõ họ tên)|Receiving office (signature, name)",
    # details
    "ok": "đạt|within limits",
    "not_run_offline": "không chạy: thiết bị không trực tuyến|not run: the device is not online",
    "not_run_kind": "không áp dụng cho loại thiết bị này|does not apply to this kind of device",
    "no_state": "không có bản tin trạng thái lưu giữ|no retained state message",
    "death": "trạng thái cuối là death ({reason})|last state is a death ({reason})",
    "birth_old": (
        "bản tin khởi động cũ {age_s:.0f} s > {limit_s:.0f} s|birth is {age_s:.0f} s old > {limit_s:.0f} s"
    ),
    "birth_age_unknown": (
        "không xác định được tuổi bản tin khởi động (đồng hồ chưa đồng bộ)"
        "|birth age unknown (clock not synchronised, no later message of the same boot)"
    ),
    "missing_kind": "không nhận được bản tin {kind}|no {kind} message received",
    "bad_fields": "trường sai: {fields}|out of limits: {fields}",
    "no_result": "không có kết quả trong {timeout_s:.0f} s|no result within {timeout_s:.0f} s",
    "command_failed": "lệnh lỗi: {error}|command failed: {error}",
    "too_slow": "{value:.2f} s > {limit:.2f} s|{value:.2f} s > {limit:.2f} s",
    "no_level": "không có mức âm đo được ({why})|no measured level ({why})",
    "level_off": "mức {value:.1f} dBFS, lệch {delta:+.1f} dB|level {value:.1f} dBFS, off by {delta:+.1f} dB",
    "freq_off": "tần số đo {value:.0f} Hz|measured frequency {value:.0f} Hz",
    "no_power": "không có số đo công suất ampli ({why})|no amplifier power reading ({why})",
    "power_flat": "công suất tăng {rise:.1f} W < {limit:.1f} W|power rose {rise:.1f} W < {limit:.1f} W",
    "pattern_not_reported": (
        "bảng không báo nội dung {expected} (báo {got})|board did not report {expected} (reported {got})"
    ),
    "no_birth_after": (
        "không có bản tin khởi động mới trong {timeout_s:.0f} s|no new birth within {timeout_s:.0f} s"
    ),
    "seq_gap": "thiếu {missing} số thứ tự: {ranges}|{missing} sequence numbers missing: {ranges}",
    "clock_not_ok": "thiết bị báo đồng hồ chưa đồng bộ (clock_ok=false)|device reports clock_ok=false",
    "clock_skew": "lệch đồng hồ {skew_s:+.1f} s|clock off by {skew_s:+.1f} s",
    "no_fresh_message": "không có bản tin mới để so đồng hồ|no fresh message to compare clocks",
}


def tr(lang: str, key: str, **params: Any) -> str:
    """The text ``key`` in ``lang`` (``vi`` or ``en``), formatted with ``params``.

    Unknown keys come back as the key itself, so a missing translation shows, not crashes.
    """
    pair = _TEXT.get(key)
    if pair is None:
        return key
    vi, _, en = pair.partition("|")
    template = en if lang == "en" else vi
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError, TypeError):
        return template


def check_title(lang: str, name: str) -> str:
    """The heading of a check (its name if it has none)."""
    return tr(lang, "check." + name) if "check." + name in _TEXT else name
