"""A fault's evidence in words: the rule's measured detail, read back for a technician.

The rules write a terse detail beside each transition (``reason: lwt``, ``4 reboots in
1800 s``, ``3.1 W``): it is what InfluxDB keeps and what dashboards show. A notice says the
same thing as a sentence, in the technician's language, with durations in hours and minutes
and Vietnamese decimal commas. A detail no describer recognises is shown as it came, so a
new rule's evidence is never lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["EVIDENCE", "describe", "duration_text", "number_text"]

_SECONDS = re.compile(r"^(-?\d+(?:\.\d+)?)\s*s$")
_COUNT_IN = re.compile(r"^(\d+)\s+(\w+)(?:\s+in\s+(\d+(?:\.\d+)?)\s*s)?$")
_NUMBER_UNIT = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(\S+)$")

Describer = Callable[[str, str], str]


def number_text(value: float, language: str) -> str:
    """``3.5`` -> ``3,5`` in Vietnamese (decimal comma), ``3.5`` in English; integers bare."""
    text = f"{value:g}"
    return text.replace(".", ",") if language == "vi" else text


def duration_text(seconds: float, language: str = "vi") -> str:
    """``5400`` -> ``1 giờ 30 phút`` (``1 h 30 min``); under a minute in seconds.

    Args:
        seconds: A duration.
        language: ``vi`` or ``en``.
    """
    vi = language == "vi"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} giây" if vi else f"{whole} s"
    minutes = whole // 60
    if minutes < 60:
        rest = whole % 60
        if rest and minutes < 5:
            return f"{minutes} phút {rest} giây" if vi else f"{minutes} min {rest} s"
        return f"{minutes} phút" if vi else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} giờ {minutes:02d} phút" if vi else f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} ngày {hours} giờ" if vi else f"{days} d {hours} h"


def _offline(detail: str, lang: str) -> str:
    # The monitor's detail: "<likely cause, Vietnamese> (reason: lwt)" (backend.monitor.causes),
    # or "reason: lwt" alone; the cause leads, the way the device went follows.
    cause, marker, tail = detail.rpartition("(reason:")
    if marker:
        how = _offline_reason(tail.rstrip(")").strip(), lang)
        # The cause is written in Vietnamese only; an English notice says how the device went.
        return f"{cause.strip()}; {how}" if cause.strip() and lang == "vi" else how
    if not detail.startswith("reason:") and detail.startswith(tuple(_CAUSE_TITLES)):
        return detail  # a refined cause alone (the "update" notice)
    return _offline_reason(detail.removeprefix("reason:").strip(), lang)


# The titles backend.monitor.causes opens its texts with.
_CAUSE_TITLES = ("Nghi mất điện lưới", "Nghi lỗi thiết bị", "Nghi mất sóng di động", "Chưa rõ nguyên nhân")


def _offline_reason(reason: str, lang: str) -> str:
    vi = {
        "lwt": "mất điện hoặc mất mạng đột ngột (thiết bị không kịp báo)",
        "clean": "thiết bị báo tắt trước khi ngắt (tắt máy hoặc khởi động lại phần mềm)",
        "timeout": "quá thời gian chờ mà không nhận được bản tin định kỳ của thiết bị",
        "server": "mất kết nối ngay sau khi máy chủ khởi động lại, thiết bị chưa kết nối lại",
    }
    en = {
        "lwt": "sudden loss of power or network (the device could not say goodbye)",
        "clean": "the device announced it was shutting down (power-off or software restart)",
        "timeout": "no periodic report from the device within the timeout",
        "server": "lost right after the server restarted; the device has not reconnected",
    }
    generic = "không còn nhận được tín hiệu từ thiết bị" if lang == "vi" else "the device is no longer heard"
    return (vi if lang == "vi" else en).get(reason, generic)


def _dead_air(detail: str, lang: str) -> str:
    bulletin, _, seconds = detail.rpartition(",")
    match = _SECONDS.match(seconds.strip())
    if match is None:
        return detail
    silent = float(match.group(1))
    bulletin = bulletin.strip()
    if lang == "vi":
        text = f"im lặng {duration_text(silent, lang)}" if silent > 0 else "không có tiếng"
        return f"{text} trong {bulletin}" if bulletin else f"{text} trong giờ phát bản tin"
    text = f"silent for {duration_text(silent, lang)}" if silent > 0 else "no sound"
    return f"{text} during {bulletin}" if bulletin else f"{text} during a scheduled bulletin"


def _off_schedule(detail: str, lang: str) -> str:
    if lang == "vi":
        return f"đang phát “{detail}” ngoài lịch" if detail else "đang phát ngoài lịch"
    return f"playing “{detail}” outside the schedule" if detail else "playing outside the schedule"


def _amp_idle(detail: str, lang: str) -> str:
    if detail == "agent":
        if lang == "vi":
            return "bộ điều khiển báo bộ khuếch đại không lấy điện khi đang có tín hiệu"
        return "the controller reports the amplifier draws no power while audio is present"
    match = _NUMBER_UNIT.match(detail)
    if match is None or match.group(2) != "W":
        return detail
    watts = number_text(float(match.group(1)), lang)
    if lang == "vi":
        return f"bộ khuếch đại chỉ tiêu thụ {watts} W khi đang có tín hiệu âm thanh"
    return f"the amplifier draws only {watts} W while audio is present"


def _board(state_vi: str, state_en: str) -> Describer:
    def describe_board(detail: str, lang: str) -> str:
        state = state_vi if lang == "vi" else state_en
        if not detail:
            return state
        return f"{state} (nội dung: {detail})" if lang == "vi" else f"{state} (content: {detail})"

    return describe_board


def _source_sync(detail: str, lang: str) -> str:
    match = _SECONDS.match(detail)
    if match is None:
        return detail
    age = duration_text(float(match.group(1)), lang)
    if lang == "vi":
        return f"lần đồng bộ cuối với hệ thống nguồn tỉnh cách đây {age}"
    return f"last sync with the provincial source system {age} ago"


def _measured(vi: str, en: str, unit: str) -> Describer:
    def describe_measured(detail: str, lang: str) -> str:
        match = _NUMBER_UNIT.match(detail)
        if match is None or match.group(2) != unit:
            return detail
        value = number_text(float(match.group(1)), lang)
        return (vi if lang == "vi" else en).format(value=value)

    return describe_measured


def _storage(detail: str, lang: str) -> str:
    if lang == "vi":
        return "thẻ nhớ/ổ lưu trữ đã chuyển sang chế độ chỉ đọc"
    return "the SD card or disk has turned read-only"


def _counted(noun: str, vi: str, en: str) -> Describer:
    def describe_counted(detail: str, lang: str) -> str:
        match = _COUNT_IN.match(detail)
        if match is None or match.group(2) != noun:
            return detail
        count = int(match.group(1))
        window = match.group(3)
        text = (vi if lang == "vi" else en).format(count=count)
        if window is None:
            return text
        within = duration_text(float(window), lang)
        return f"{text} trong {within}" if lang == "vi" else f"{text} within {within}"

    return describe_counted


# fault -> (detail, language) -> sentence. A rule added elsewhere may add its own here.
EVIDENCE: dict[str, Describer] = {
    "offline": _offline,
    "dead_air": _dead_air,
    "playing_off_schedule": _off_schedule,
    "amp_idle": _amp_idle,
    "board_dark": _board("màn hình tắt trong giờ hoạt động", "the screen is off during operating hours"),
    "board_blank": _board("màn hình trống, không có nội dung", "the screen shows nothing"),
    "board_frozen": _board("hình ảnh đứng yên, không đổi", "the picture does not change"),
    "source_sync_stale": _source_sync,
    "weak_signal": _measured("cường độ sóng chỉ {value} dBm", "signal only {value} dBm", "dBm"),
    "overheating": _measured("nhiệt độ lên tới {value} °C", "temperature reached {value} °C", "°C"),
    "storage_readonly": _storage,
    "reboot_loop": _counted("reboots", "khởi động lại {count} lần", "{count} restarts"),
    "data_loss": _counted("messages", "mất {count} bản tin giám sát", "{count} monitoring messages lost"),
    "link_flapping": _counted("drops", "mất kết nối ngắn {count} lần", "{count} short link drops"),
}


def describe(fault: str, detail: str, language: str = "vi") -> str:
    """The evidence of ``fault`` as a sentence; ``detail`` unchanged when it is not recognised.

    Args:
        fault: Rule name.
        detail: The rule's detail string.
        language: ``vi`` or ``en``.
    """
    describer = EVIDENCE.get(fault)
    if describer is None:
        return detail
    return describer(detail.strip(), language)
