"""Alert texts: Vietnamese by default, English when a technician asks for it.

Each fault has a title and a hint saying what to check on site.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backend.alerts.model import Alert
from backend.registry import LOCAL_TZ, Registry

__all__ = ["FAULT_TEXT", "Notice", "render"]

# fault -> language -> (title, what to check)
FAULT_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "offline": {
        "vi": (
            "Mất kết nối",
            "Kiểm tra nguồn điện, bộ thu IP và SIM 4G (sóng, cước); khởi động lại nếu cần.",
        ),
        "en": (
            "Offline",
            "Check mains power, the IP receiver and the 4G SIM (signal, credit); power-cycle if needed.",
        ),
    },
    "dead_air": {
        "vi": (
            "Mất tiếng trong giờ phát bản tin",
            "Kiểm tra nguồn phát bản tin, bộ thu IP và dây tín hiệu âm thanh vào bộ khuếch đại.",
        ),
        "en": (
            "Dead air during a scheduled bulletin",
            "Check the bulletin source, the IP receiver and the audio cable.",
        ),
    },
    "playing_off_schedule": {
        "vi": (
            "Phát ngoài lịch",
            "Kiểm tra lịch phát trên phần mềm quản lý và nguồn đang phát; dừng nếu không được phép.",
        ),
        "en": (
            "Playing outside the schedule",
            "Check the schedule and what is playing; stop it if not authorised.",
        ),
    },
    "amp_idle": {
        "vi": (
            "Bộ khuếch đại không hoạt động khi có tín hiệu",
            "Kiểm tra nguồn và cầu chì bộ khuếch đại, dây loa",
        ),
        "en": (
            "Amplifier idle while audio is present",
            "Check the amplifier's supply and fuse, and the speaker lines.",
        ),
    },
    "board_dark": {
        "vi": (
            "Bảng tin tắt trong giờ hoạt động",
            "Kiểm tra nguồn điện, aptomat và bộ điều khiển của bảng tin.",
        ),
        "en": ("Board dark during operating hours", "Check mains, the breaker and the board's controller."),
    },
    "board_blank": {
        "vi": (
            "Bảng tin không có nội dung",
            "Kiểm tra nội dung đã lập lịch và kết nối tới máy chủ nội dung.",
        ),
        "en": ("Board blank", "Check the scheduled content and the link to the content server."),
    },
    "board_frozen": {
        "vi": ("Bảng tin bị treo hình", "Khởi động lại máy phát nội dung (player) và kiểm tra kết nối."),
        "en": ("Board frozen", "Restart the content player and check its connection."),
    },
    "source_sync_stale": {
        "vi": (
            "Mất đồng bộ với Hệ thống thông tin nguồn cấp tỉnh",
            "Kiểm tra Internet và tài khoản kết nối Hệ thống thông tin nguồn cấp tỉnh.",
        ),
        "en": (
            "Provincial source sync stale",
            "Check the Internet link and the provincial source system account.",
        ),
    },
    "weak_signal": {
        "vi": ("Sóng 4G yếu", "Kiểm tra ăng-ten, vị trí modem; cân nhắc ăng-ten ngoài hoặc đổi nhà mạng."),
        "en": (
            "Weak 4G signal",
            "Check the antenna and modem placement; consider an external antenna or operator.",
        ),
    },
    "overheating": {
        "vi": ("Quá nhiệt", "Kiểm tra quạt, thông gió tủ thiết bị và che nắng."),
        "en": ("Overheating", "Check the fans, cabinet ventilation and sun shading."),
    },
    "storage_readonly": {
        "vi": ("Bộ nhớ chỉ đọc", "Thay thẻ nhớ/ổ lưu trữ của bộ điều khiển (sao lưu cấu hình trước)."),
        "en": ("Storage read-only", "Replace the controller's SD card or disk (back up the config first)."),
    },
    "reboot_loop": {
        "vi": (
            "Khởi động lại liên tục",
            "Kiểm tra điện áp nguồn, bộ nguồn (adapter) và nhiệt độ bộ điều khiển.",
        ),
        "en": (
            "Reboot loop",
            "Check the supply voltage, the power adapter and the controller's temperature.",
        ),
    },
    "data_loss": {
        "vi": ("Mất dữ liệu giám sát kéo dài", "Kiểm tra đường truyền 4G/Internet và hàng đợi của agent."),
        "en": ("Sustained data loss", "Check the 4G/Internet link and the agent's queue."),
    },
}

_KIND = {
    "vi": {"speaker_cluster": "cụm loa", "eboard": "bảng tin điện tử", "district_led": "màn hình LED cỡ lớn"},
    "en": {"speaker_cluster": "speaker cluster", "eboard": "e-board", "district_led": "district LED board"},
}
_EVENT = {
    "vi": {"open": "SỰ CỐ", "reminder": "NHẮC LẠI", "recovery": "ĐÃ KHẮC PHỤC"},
    "en": {"open": "FAULT", "reminder": "REMINDER", "recovery": "RECOVERED"},
}
_LABELS = {
    "vi": ("Xã/thị trấn", "Thôn/xóm", "Thiết bị", "Từ lúc", "Chi tiết", "Cần kiểm tra", "Kéo dài", "giờ VN"),
    "en": ("Commune", "Hamlet", "Device", "Since", "Detail", "What to check", "Lasted", "Vietnam time"),
}


@dataclass(frozen=True)
class Notice:
    """One rendered message about one alert, for one language."""

    event: str
    device: str
    fault: str
    commune: str
    commune_name: str
    hamlet: str
    kind: str
    since: float
    at: float
    language: str
    subject: str
    text: str


def _local(ts: float) -> str:
    return datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%H:%M %d/%m/%Y")


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def render(alert: Alert, registry: Registry, event: str, at: float, language: str = "vi") -> Notice:
    """The notice for ``event`` (``open``, ``reminder`` or ``recovery``) of ``alert``.

    Args:
        alert: The alert.
        registry: Names of the device's commune and hamlet.
        event: Which notice.
        at: When it is sent (epoch s): a recovery states how long the fault lasted.
        language: ``vi`` or ``en``.
    """
    lang = language if language in _LABELS else "vi"
    device = registry.device(alert.device)
    commune = registry.commune(device.commune) if device else None
    commune_name = commune.name if commune else "?"
    hamlet = device.hamlet if device else "?"
    kind = device.kind if device else ""
    title, hint = FAULT_TEXT.get(alert.fault, {}).get(lang, (alert.fault, ""))
    l_commune, l_hamlet, l_device, l_since, l_detail, l_check, l_lasted, l_tz = _LABELS[lang]
    head = f"{_EVENT[lang][event]}: {title}"
    subject = f"[tincoso] {head} - {commune_name}, {hamlet} ({alert.device})"
    lines = [
        head,
        f"{l_commune}: {commune_name}",
        f"{l_hamlet}: {hamlet}",
        f"{l_device}: {alert.device} ({_KIND[lang].get(kind, kind)})",
        f"{l_since}: {_local(alert.since)} ({l_tz}, UTC+7)",
    ]
    if event == "recovery":
        lines.append(f"{l_lasted}: {_duration(at - alert.since)}")
    if alert.detail:
        lines.append(f"{l_detail}: {alert.detail}")
    if event != "recovery" and hint:
        lines.append(f"{l_check}: {hint}")
    return Notice(
        event=event,
        device=alert.device,
        fault=alert.fault,
        commune=device.commune if device else "",
        commune_name=commune_name,
        hamlet=hamlet,
        kind=kind,
        since=alert.since,
        at=at,
        language=lang,
        subject=subject,
        text="\n".join(lines),
    )
