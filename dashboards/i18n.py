"""Dashboard text in Vietnamese (the default) and English.

Every title, label and description a dashboard shows comes from `STRINGS` through a
`Strings` object, so the same generator renders both languages and a missing translation
fails at build time, not on a district screen.
"""

from __future__ import annotations

from backend.catalogue import TERMS

LANGUAGES = ("vi", "en")

# key -> (Vietnamese, English)
STRINGS: dict[str, tuple[str, str]] = {
    # template variables
    "var.rp": ("Độ phân giải dữ liệu", "Data resolution"),
    "var.rp.help": (
        "raw: dữ liệu gốc (400 ngày); rollup_1m: tổng hợp theo phút (3 năm), chọn khi xem trên 7 ngày; "
        "rollup_1h: tổng hợp theo giờ (lâu dài), chọn khi xem trên 1 năm; "
        "rollup_1d: tổng hợp theo ngày giờ Việt Nam (lâu dài), một điểm mỗi ngày.",
        "raw: raw readings (400 days); rollup_1m: 1-minute summaries (3 years), pick for ranges over 7 days; "
        "rollup_1h: 1-hour summaries (kept), pick for ranges over a year; "
        "rollup_1d: daily summaries in Vietnam days (kept), one point a day.",
    ),
    # fleet overview
    "fleet.title": ("Tổng quan thiết bị", "Fleet overview"),
    "fleet.online": ("Đang trực tuyến", "Online"),
    "fleet.faults": ("Thiết bị đang lỗi", "Devices in fault"),
    "fleet.playing": ("Đang phát", "Playing now"),
    "fleet.per_commune": ("Theo xã: cụm loa và bảng tin", "Per commune: speaker clusters and boards"),
    "fleet.per_commune.help": (
        "Số thiết bị đã đăng ký, đang trực tuyến (trạng thái mới nhất), đang có cảnh báo mở và đang phát "
        "(5 phút gần nhất), theo xã và loại thiết bị.",
        "Registered devices, online (latest state), with an open alert, and playing (last 5 minutes), "
        "per commune and device kind.",
    ),
    "fleet.map": ("Bản đồ thiết bị theo trạng thái", "Map of devices by status"),
    "fleet.alerts": ("Cảnh báo đang mở", "Open alerts"),
    "col.devices": ("Thiết bị", "Devices"),
    "col.online": ("Trực tuyến", "Online"),
    "col.in_fault": ("Đang lỗi", "In fault"),
    "col.playing": ("Đang phát", "Playing"),
    "col.message": ("Nội dung", "Message"),
    "col.since": ("Từ lúc", "Since"),
    "state.online": ("Trực tuyến", "Online"),
    "state.offline": ("Mất kết nối", "Offline"),
    "state.yes": ("Có", "Yes"),
    "state.no": ("Không", "No"),
    # device detail
    "device.title": ("Chi tiết thiết bị", "Device detail"),
    "device.crash_free": ("Giờ hoạt động không lỗi (báo cáo KPI)", "Crash-free hours (KPI report)"),
    "device.crash_free.help": (
        "Từ báo cáo KPI gần nhất trong khoảng thời gian đã chọn ('tincoso report kpi --store'): số giờ có "
        "dữ liệu, số giờ không có lần khởi động lại do lỗi, số lần lỗi.",
        "From the latest KPI report in the chosen range ('tincoso report kpi --store'): hours reported, "
        "hours without a crash reboot, crashes.",
    ),
    "device.uptime": ("Thời gian hoạt động liên tục", "Uptime"),
    "device.boots": ("Số lần khởi động", "Boots seen"),
    "device.reboot_reason": ("Lý do khởi động gần nhất", "Last reboot reason"),
    "device.audio": ("Âm thanh: RMS và đỉnh (dBFS)", "Audio: RMS and peak (dBFS)"),
    "device.dead_air": ("Mất tiếng (giây)", "Dead air (seconds)"),
    "device.amp": ("Công suất ampli (W)", "Amplifier power (W)"),
    "device.display": ("Trạng thái màn hình", "Display state"),
    "device.signal": ("Tín hiệu di động (dBm)", "Mobile signal (dBm)"),
    "device.temperature": ("Nhiệt độ (°C)", "Temperature (°C)"),
    "device.queue": ("Hàng đợi: độ sâu và số tin bị bỏ", "Queue: depth and drops"),
    "device.gaps": ("Mất dữ liệu (số tin thiếu)", "Sequence gaps (missing messages)"),
    "device.down": ("Các lần mất kết nối", "Offline periods"),
    # bulletins
    "bulletins.title": ("Bản tin phát thanh", "Bulletins"),
    "bulletins.sounded": (
        "Số phút thực sự có tiếng theo thôn (mỗi 30 phút)",
        "Minutes that really sounded, per hamlet (per 30 min)",
    ),
    "bulletins.sounded.help": (
        "Đo bằng âm thanh đầu ra (RMS trên ngưỡng, không mất tiếng), không chỉ dựa vào báo cáo 'đang phát'.",
        "Measured on the audio output (RMS above the threshold, no dead air), not just the 'playing' report.",
    ),
    "bulletins.silent": (
        "Báo đang phát nhưng không có tiếng (phút)",
        "Reported playing but silent (minutes)",
    ),
    "bulletins.per_hamlet": ("Tổng hợp theo thôn", "Per hamlet"),
    "bulletins.per_day": ("Số phút phát thanh mỗi ngày theo xã", "Minutes broadcast per day, per commune"),
    "bulletins.per_day.help": (
        "Từ dữ liệu tổng hợp theo ngày (rollup_1d), ngày theo giờ Việt Nam (UTC+7); "
        "ngày hôm nay được cập nhật mỗi giờ.",
        "From the daily rollups (rollup_1d), days in Vietnam time (UTC+7); today's bar is updated "
        "every hour.",
    ),
    "bulletins.events": ("Sự kiện bắt đầu/kết thúc phát", "Playback start/end events"),
    "col.played_min": ("Phút báo phát", "Minutes reported playing"),
    "col.sounded_min": ("Phút có tiếng", "Minutes sounded"),
    "col.silent_min": ("Phút im lặng khi phát", "Minutes silent while playing"),
    # boards
    "boards.title": ("Bảng tin điện tử và màn hình LED", "E-boards and LED boards"),
    "boards.unlit": ("Tỉ lệ không hiển thị (%)", "Share of readings not showing (%)"),
    "boards.unlit.help": (
        "Tỉ lệ bản tin trạng thái báo màn hình tắt, trắng hoặc đứng hình. Tính cả ngoài giờ hoạt động; "
        "báo cáo KPI tính theo giờ hoạt động của từng bảng.",
        "Share of display readings that were dark, blank or frozen. Counts all hours; the KPI report "
        "uses each board's operating hours.",
    ),
    "boards.unlit_counts": ("Số lần tắt / trắng / đứng hình", "Dark / blank / frozen readings"),
    "boards.offline": ("Thời gian mất kết nối (phút)", "Offline time (minutes)"),
    "boards.sync_age": ("Tuổi dữ liệu từ hệ thống nguồn (giây)", "Source-sync age (seconds)"),
    "boards.modules": ("Số module LED hỏng", "Failed LED modules"),
    # backend health
    "backend.title": ("Tình trạng máy chủ tincoso", "tincoso backend health"),
    "backend.ingest_rate": ("Tốc độ ghi (điểm/giây)", "Ingest rate (points/s)"),
    "backend.messages_rate": ("Tin MQTT nhận (tin/giây)", "MQTT messages in (messages/s)"),
    "backend.spool": ("Hàng đợi trên đĩa (spool)", "Spool depth"),
    "backend.invalid": ("Tin không hợp lệ", "Invalid messages"),
    "backend.quarantine": ("Tin bị cách ly theo lý do", "Quarantined messages by reason"),
    "backend.deliveries": ("Gửi cảnh báo theo kênh và kết quả", "Alert deliveries by channel and outcome"),
    # shared
    "tag.tincoso": ("tincoso", "tincoso"),
    # device kinds, as the kind filter shows them
    "kind.speaker_cluster": ("Cụm loa", "Speaker cluster"),
    "kind.eboard": ("Bảng tin điện tử", "E-board"),
    "kind.district_led": ("Màn hình LED huyện", "District LED board"),
    # at-a-glance presentation
    "fleet.registered": ("Thiết bị đã đăng ký", "Registered devices"),
    "col.kind": ("Loại", "Kind"),
    "col.start": ("Bắt đầu", "Start"),
    "col.end": ("Kết thúc", "End"),
    "col.duration": ("Thời lượng", "Duration"),
    "col.reboot_reason": ("Lý do khởi động", "Reboot reason"),
    "col.uptime": ("Hoạt động liên tục", "Uptime"),
    "col.crash_free_h": ("Giờ không lỗi", "Crash-free hours"),
    "col.operating_h": ("Giờ hoạt động", "Operating hours"),
    "col.crashes": ("Số lần lỗi", "Crashes"),
    "col.crash_free_pct": ("Tỷ lệ không lỗi", "Crash-free share"),
    "col.event": ("Sự kiện", "Event"),
    "col.programme": ("Chương trình", "Programme"),
    "col.indicator": ("Chỉ tiêu", "Indicator"),
    "col.value": ("Giá trị (%)", "Value (%)"),
    "col.target": ("Kế hoạch (%)", "Target (%)"),
    "col.status": ("Kết quả", "Result"),
    "col.units_met": ("Số đơn vị đạt", "Units met"),
    "col.units": ("Tổng số đơn vị", "Units"),
    "col.coverage": ("Dữ liệu phủ (%)", "Data coverage (%)"),
    "device.outages": ("Nguyên nhân các lần mất kết nối", "Why each outage happened"),
    "device.outages.help": (
        "Mỗi lần mất kết nối có cảnh báo: nguyên nhân nghi ngờ và bằng chứng (điện áp, tín hiệu "
        "mất điện từ UPS, sóng 4G, bộ nhớ, lý do khởi động lại), cập nhật khi thiết bị trở lại.",
        "Each outage that was alerted: its likely cause and the evidence (supply voltage, the UPS's "
        "mains signal, 4G signal, storage, reboot reason), settled when the device came back.",
    ),
    "col.cause": ("Nguyên nhân", "Cause"),
    "col.evidence": ("Bằng chứng", "Evidence"),
}

# Terms every room shares come from the one catalogue, so a dashboard, an alert and a report
# name a thing the same way (dashboard key -> catalogue key).
_SHARED = {
    "no_data": "verdict.unknown",  # three-valued results: no data is shown as such, never as 0
    "kpi.met": "verdict.met",
    "kpi.not_met": "verdict.not_met",
    "kpi.unknown": "verdict.unknown",
    "col.commune": "commune",
    "col.hamlet": "hamlet",
    "col.device": "device",
    "col.fault": "fault",
    "var.commune": "commune",
    "var.hamlet": "hamlet",
    "var.kind": "kind",
    "var.device": "device",
    "fleet.alerts": "alerts.open",
    "col.since": "since",
    "col.online": "state.online",
    "state.online": "state.online",
    "state.offline": "state.offline",
    "cause.mains": "cause.mains",
    "cause.device": "cause.device",
    "cause.cellular": "cause.cellular",
    "cause.unknown": "cause.unknown",
}
STRINGS.update({key: TERMS[shared] for key, shared in _SHARED.items()})


class Strings:
    """Looks up dashboard text in one language.

    Args:
        lang: ``vi`` or ``en``.
        communes: commune id -> name (the registry's), for the commune filter.

    Raises:
        ValueError: The language is not one of `LANGUAGES`.
    """

    def __init__(self, lang: str = "vi", communes: dict[str, str] | None = None) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"dashboard language must be one of {', '.join(LANGUAGES)}, got {lang!r}")
        self.lang = lang
        # Commune id -> name from the registry: the commune filter shows names, queries get ids.
        self.communes = dict(communes or {})
        self._index = LANGUAGES.index(lang)

    def __call__(self, key: str) -> str:
        """The text for ``key``; raises KeyError naming the key if it has no entry."""
        try:
            return STRINGS[key][self._index]
        except KeyError:
            raise KeyError(f"dashboard text {key!r} has no entry in dashboards/i18n.py") from None
