"""Words of the acceptance report: Vietnamese by default, English with ``--lang en``.

Check details are written through :func:`tr` at the moment a check is judged, so the
JSON report carries the same sentence the HTML shows and a signed copy reads alone.
"""

from __future__ import annotations

from typing import Any

from backend.catalogue import TERMS

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
    "imei": "IMEI modem|Modem IMEI",
    "iccid": "ICCID (SIM)|SIM ICCID",
    "serial": "Số sê-ri bộ điều khiển|Controller serial",
    "modem": "Lỗi đọc định danh|Identity read error",
    "todo": "Cần làm|What to do",
    "signed_by": (
        "Ký số Ed25519, dấu vân tay khóa của bên ký|Ed25519 signature, fingerprint of the signer's key"
    ),
    "signed_note": (
        "Kiểm tra: `tincoso acceptance verify report.json --fingerprint <dấu vân tay trên bản giấy>`; "
        "sửa bất kỳ byte nào của report.json thì chữ ký không còn hợp lệ."
        "|Check: `tincoso acceptance verify report.json --fingerprint <fingerprint on the paper copy>`; "
        "changing any byte of report.json invalidates the signature."
    ),
    "unsigned": (
        "Biên bản CHƯA được ký số (chạy lại với --signing-key)."
        "|The report is NOT signed (run with --signing-key)."
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
    "command_failed": "thiết bị báo lỗi khi chạy lệnh: {error}|command failed: {error}",
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

# Terms every room shares come from the one catalogue, so the signed report, the alerts and
# the dashboards name a thing the same way (report key -> catalogue key).
_SHARED = {
    "pass": "verdict.pass",
    "fail": "verdict.fail",
    "device": "device",
    "kind": "kind",
    "commune": "commune",
    "hamlet": "hamlet",
}
_TEXT.update({key: "|".join(TERMS[shared]) for key, shared in _SHARED.items()})


# What the technician or vendor should do when a check fails, by the first problem's key
# (``todo.<key>``) or else by the check (``todo.<check>``).
_TEXT.update(
    {
        "todo.not_run_offline": (
            "Kiểm tra nguồn điện, cáp mạng/SIM 4G và dịch vụ tincoso-agent trên thiết bị; khi thiết bị "
            "trực tuyến lại (xem `tincoso status`), chạy lại nghiệm thu."
            "|Check the power, network cable or 4G SIM and the tincoso-agent service; once the device is "
            "online again (see `tincoso status`), run the acceptance test again."
        ),
        "todo.not_run_kind": (
            "Không cần làm gì: hạng mục này không áp dụng cho loại thiết bị này; nếu sai loại, sửa "
            "device_kind trong cấu hình agent.|Nothing: this check does not apply to this device kind; if "
            "the kind is wrong, fix device_kind in the agent's configuration."
        ),
        "todo.online": (
            "Kiểm tra nguồn điện, mạng và dịch vụ tincoso-agent; khởi động lại agent rồi chạy lại nghiệm thu."
            "|Check the power, network and the tincoso-agent service; restart the agent and run again."
        ),
        "todo.telemetry": (
            "Xem trường ghi trong 'Giá trị đo' bị sai hoặc thiếu; kiểm tra cảm biến/cáp tương ứng "
            "(đồng hồ điện ampli, card âm thanh, modem 4G, bảng hiển thị) rồi chạy lại."
            "|See which measured field is wrong or missing; check that sensor or cable (amplifier power "
            "meter, sound card, 4G modem, display) and run again."
        ),
        "todo.report_now": (
            "Đường truyền chậm hoặc agent quá tải: kiểm tra tín hiệu 4G/mạng, rồi chạy lại."
            "|Slow link or busy agent: check the 4G signal or network, then run again."
        ),
        "todo.test_tone": (
            "Kiểm tra lệnh phát (player) trong cấu hình agent, dây tín hiệu từ bộ thu tới card âm thanh "
            "đo, âm lượng; rồi chạy lại.|Check the agent's player command, the cable from the receiver to "
            "the measuring sound card and the volume; then run again."
        ),
        "todo.amplifier": (
            "Ampli không tăng công suất khi phát: kiểm tra nguồn ampli, cầu chì, dây loa và đồng hồ điện "
            "PZEM.|The amplifier drew no more power while playing: check its supply, fuse, speaker line "
            "and the PZEM power meter."
        ),
        "todo.test_pattern": (
            "Kiểm tra nguồn và cáp tín hiệu (RS-232/HDMI) của bảng, bật bảng lên, rồi chạy lại."
            "|Check the board's power and its RS-232/HDMI cable, switch it on, and run again."
        ),
        "todo.reconnect": (
            "Kiểm tra cấu hình kết nối lại và hàng đợi của agent (thư mục spool còn chỗ, không chỉ đọc)."
            "|Check the agent's reconnect settings and its queue (spool directory has room, not read-only)."
        ),
        "todo.clock": (
            "Bật đồng bộ giờ (NTP/chrony) trên bộ điều khiển và kiểm tra múi giờ, rồi chạy lại."
            "|Enable time synchronisation (NTP/chrony) on the controller, check its time zone, run again."
        ),
        "todo.identity": (
            "Kiểm tra modem 4G (cắm chắc, có SIM) và phiên bản agent có lệnh identify."
            "|Check the 4G modem (seated, SIM inserted) and that the agent version has the identify command."
        ),
        # device errors (the agent's English error text) in plain words
        "err.powered_off": "màn hình đang tắt nguồn|the display is powered off",
        "err.not_configured": "chức năng này chưa được cấu hình trên thiết bị|not configured on this device",
        "err.did_not_finish": "lệnh không chạy xong trong thời gian cho phép|did not finish in time",
        "err.exited": "lệnh phát trên thiết bị trả về lỗi|the device's command exited with an error",
        "err.no_answer": "thiết bị đo không trả lời|the measuring device did not answer",
        "err.refused": "thiết bị từ chối lệnh|the device refused the command",
        "err.unknown_command": (
            "agent không biết lệnh này (phiên bản cũ)|the agent does not know this command"
        ),
        "err.other": "lỗi chưa phân loại|unclassified error",
        "device_error": "{reason} (mã lỗi: {error})|{reason} ({error})",
        "no_agent_birth": (
            "{device} chưa từng gửi bản tin khởi động và không rõ loại thiết bị: kiểm tra thiết bị có "
            "trực tuyến không (`tincoso status`); để vẫn lập biên bản cho thiết bị đang tắt, cho --registry "
            "(để biết loại) hoặc --profile."
            "|{device} sent no birth and its kind is unknown: check whether it is online (`tincoso status`); "
            "to write a report for a device that is down, give --registry (for its kind) or --profile."
        ),
    }
)

# Substrings of the agent's error messages -> the plain-words key (first match wins).
_ERRORS = (
    ("powered_off", "err.powered_off"),
    ("not configured", "err.not_configured"),
    ("no player command", "err.not_configured"),
    ("no display probe", "err.not_configured"),
    ("did not finish", "err.did_not_finish"),
    ("exited with", "err.exited"),
    ("invalid command", "err.unknown_command"),
    ("timed out", "err.no_answer"),
    ("no answer", "err.no_answer"),
    ("refused", "err.refused"),
)


def explain_error(lang: str, error: str) -> str:
    """A device's error text in plain words, the original kept in brackets as the code."""
    lowered = error.lower()
    key = next((k for needle, k in _ERRORS if needle in lowered), "err.other")
    if key == "err.other" and lang == "en":
        return error
    return tr(lang, "device_error", reason=tr(lang, key), error=error)


def advice(lang: str, check: str, problem_key: str | None) -> str:
    """What to do about a failed check (empty when there is no advice)."""
    for key in (f"todo.{problem_key}", f"todo.{check}"):
        if key in _TEXT:
            return tr(lang, key)
    return ""


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
