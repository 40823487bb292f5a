"""Report text in Vietnamese (the default) and English, and number/time formatting per language."""

from __future__ import annotations

from datetime import date, datetime

from backend.catalogue import TERMS
from backend.registry import LOCAL_TZ

__all__ = ["LANGUAGES", "Text"]

LANGUAGES = ("vi", "en")

# key -> (Vietnamese, English)
_TEXT: dict[str, tuple[str, str]] = {
    "title": (
        "Báo cáo kiểm chứng chỉ tiêu thông tin cơ sở",
        "Grassroots information indicators: verification report",
    ),
    "district": ("Huyện", "District"),
    "period": ("Kỳ báo cáo", "Period"),
    "generated": ("Lập lúc", "Generated"),
    "target_year": (
        "Chỉ tiêu áp dụng: năm {year} (năm kết thúc kỳ báo cáo).",
        "Targets applied: year {year} (the year the period ends).",
    ),
    "spans_years": (
        "Kỳ báo cáo kéo dài qua năm mới ({first}–{last}): áp dụng chỉ tiêu của năm {year}.",
        "The period runs over a new year ({first}–{last}): the targets of {year} apply.",
    ),
    "plan_year": (
        "Kế hoạch không có chỉ tiêu năm {year}; dùng chỉ tiêu năm {plan}.",
        "The plan sets no target for {year}; the {plan} target is used.",
    ),
    "summary": ("Tổng hợp chỉ tiêu", "Indicators"),
    "col.id": ("TT", "Id"),
    "col.indicator": ("Chỉ tiêu", "Indicator"),
    "col.target": ("Kế hoạch", "Target"),
    "col.measured": ("Đo được", "Measured"),
    "col.units": ("Đạt / chưa rõ / tổng", "Met / unknown / total"),
    "col.result": ("Kết quả", "Result"),
    "col.commune": ("Xã, thị trấn", "Commune"),
    "col.value": ("Giá trị", "Value"),
    "col.coverage": ("Dữ liệu phủ", "Data coverage"),
    "col.evidence": ("Căn cứ", "Evidence"),
    "col.hamlet": ("Thôn, xóm, tổ dân phố", "Hamlet"),
    "col.device": ("Thiết bị", "Device"),
    "col.bulletins": (
        "Bản tin: phát / im lặng / không dữ liệu / theo lịch",
        "Bulletins: sounded / silent / no data / scheduled",
    ),
    "col.day": ("Ngày", "Day"),
    "col.bulletin": ("Bản tin", "Bulletin"),
    "col.status": ("Tình trạng", "Status"),
    "col.sounded_pct": ("Thời lượng có tiếng", "Time sounding"),
    "col.operating_h": ("Giờ hoạt động", "Operating hours"),
    "col.good_pct": ("Đạt yêu cầu", "Qualifying"),
    "col.intervals": ("Khoảng không đạt", "Failing intervals"),
    "col.checks": ("Số lần kiểm tra thành công", "Successful checks"),
    "col.latency": ("Độ trễ trung vị", "Median latency"),
    "col.tls": ("Chứng chỉ TLS còn", "TLS certificate left"),
    "col.failures": ("Lần lỗi", "Failures"),
    "col.gaps": ("Khoảng mất dữ liệu", "Telemetry gaps"),
    "col.down": ("Mất kết nối (máy chủ ghi nhận)", "Offline (monitor)"),
    "col.kind": ("Loại", "Kind"),
    "col.setting": ("Tham số", "Setting"),
    "definition": ("Định nghĩa", "Definition"),
    "evidence.bulletins": ("Bản tin không phát được", "Bulletins that did not sound"),
    "evidence.none": ("Không có.", "None."),
    "evidence.more": (
        "… và {n} dòng khác (đầy đủ trong tệp CSV/JSON).",
        "… and {n} more (all in the CSV/JSON files).",
    ),
    "chart.availability": ("Mức sẵn sàng theo xã", "Availability per commune"),
    "chart.heatmap": ("Bản tin theo ngày và thôn/xóm", "Bulletins by day and hamlet"),
    "chart.bulletins_pct": ("% bản tin đã phát", "% bulletins sounded"),
    "chart.board_pct": ("% giờ bảng tin hiển thị", "% hours board showing"),
    "hamlet_grid": ("Thôn, xóm theo kết quả 1.1", "Hamlets by 1.1 result"),
    "boards": ("Bảng tin điện tử", "Boards"),
    "websites": ("Trang thông tin điện tử", "Websites"),
    "coverage": ("Mức phủ dữ liệu", "Data coverage"),
    "coverage.help": (
        "Thời gian thiết bị không gửi dữ liệu không được tính là đạt hay không đạt (trừ chỉ tiêu 2.2): "
        "chỉ tiêu của xã là 'chưa xác định' khi phần dữ liệu thiếu quyết định kết quả.",
        "Time a device sent nothing counts neither as success nor as failure (except for 2.2): a "
        "commune's result is 'undetermined' when the missing data decides it.",
    ),
    "settings": ("Tham số định nghĩa", "Definition settings"),
    "verdict.met": ("Đạt", "met"),
    "verdict.not_met": ("Không đạt", "not met"),
    "verdict.unknown": ("Chưa xác định", "undetermined"),
    "verdict.no_data": ("Không có dữ liệu", "no data"),
    "verdict.not_measurable": ("Không đo được", "not measurable"),
    "provenance": ("Nguồn gốc số liệu", "Provenance"),
    "crash_free": ("Giờ hoạt động không lỗi", "Crash-free hours"),
    "crash_free.help": (
        "Số giờ thiết bị có gửi dữ liệu, và trong đó số giờ không có lần khởi động lại do lỗi "
        "(watchdog, agent lỗi, không rõ nguyên nhân). Mất điện và khởi động lại chủ động không tính là lỗi.",
        "Hours in which the device reported, and of those the hours without a crash reboot (watchdog, "
        "agent crash, unknown cause). Power cuts and clean restarts are not crashes.",
    ),
    "col.hours": ("Giờ có dữ liệu", "Hours reported"),
    "col.crash_free_h": ("Giờ không lỗi", "Crash-free hours"),
    "col.crashes": ("Số lần lỗi", "Crashes"),
    "outage_causes": ("Giờ mất kết nối theo nguyên nhân", "Outage hours by cause"),
    "outage_causes.help": (
        "Các lần mất kết nối đã cảnh báo, theo nguyên nhân nghi ngờ mà hệ thống giám sát xác định từ "
        "bằng chứng (điện áp nguồn, tín hiệu mất điện của UPS, sóng 4G, bộ nhớ, lý do khởi động lại). "
        "Mất điện lưới hay mất sóng của nhà mạng vẫn là mất kết nối và vẫn tính vào chỉ tiêu 1.1; "
        "bảng này cho biết thời gian đó thuộc trách nhiệm của ai.",
        "Alerted outages by the likely cause the monitor found from the evidence (supply voltage, the "
        "UPS's mains signal, 4G signal, storage, reboot reason). A grid or carrier outage is still an "
        "outage and still counts against indicator 1.1; this table says whose the hours were.",
    ),
    "col.total_h": ("Tổng (giờ)", "Total (h)"),
    "provenance.software": ("Phần mềm", "Software"),
    "provenance.source": ("Nguồn dữ liệu", "Data source"),
    "provenance.registry_sha256": ("Danh mục thiết bị (SHA-256)", "Registry (SHA-256)"),
    "provenance.definitions_sha256": ("Định nghĩa, ngưỡng (SHA-256)", "Definitions (SHA-256)"),
    "provenance.period": ("Kỳ báo cáo", "Period"),
    "provenance.data_coverage_pct": ("Mức phủ dữ liệu", "Data coverage"),
    "coverage.banner": (
        "Cảnh báo: dữ liệu đo chỉ phủ {pct} thời gian của kỳ (ngưỡng {warn}). Các chỉ tiêu chỉ được đánh "
        "giá trên những đơn vị có dữ liệu; đơn vị không có dữ liệu ghi 'Chưa xác định'.",
        "Warning: measurements cover only {pct} of the period (threshold {warn}). Indicators are judged "
        "only on units with data; units without data read 'undetermined'.",
    ),
    "coverage.none": (
        "Cảnh báo: không có dữ liệu đo nào trong kỳ. Không chỉ tiêu nào được đánh giá là Đạt.",
        "Warning: no measurements at all in the period. No indicator is judged met.",
    ),
    "status.sounded": ("đã phát", "sounded"),
    "status.silent": ("im lặng", "silent"),
    "status.no_data": ("không có dữ liệu", "no data"),
    "reason.ok": ("", ""),
    "reason.failed_hamlets": ("Thôn/xóm không đạt: {detail}", "Failing hamlets: {detail}"),
    "reason.no_devices": ("Không có cụm loa nào được giám sát", "No monitored speaker cluster"),
    "reason.no_data": ("Thiếu dữ liệu: {detail}", "Missing data: {detail}"),
    "reason.not_ip": ("Đài chưa chuyển đổi (loại {detail})", "Not converted (type {detail})"),
    "reason.sounded": ("{detail} lượt phát bản tin", "{detail} cluster-bulletins sounded"),
    "reason.never_sounded": ("Không cụm loa nào phát trong kỳ", "No cluster sounded in the period"),
    "reason.no_website": ("Không có địa chỉ trang trong danh mục", "No website in the registry"),
    "reason.not_probed": ("Chưa được kiểm tra trong kỳ: {detail}", "Not probed in the period: {detail}"),
    "reason.unreachable": ("Truy cập được {detail} lần", "Reachable {detail} checks"),
    "reason.no_board": ("Không có bảng tin được đăng ký", "No board registered"),
    "reason.board_dark": ("Bảng tin không hiển thị đủ giờ", "Board dark too long"),
    "reason.led_offline": ("{detail}: mất kết nối hoặc đồng bộ cũ", "{detail}: offline or stale sync"),
    "bad.power_off": ("tắt nguồn", "power off"),
    "bad.blank": ("màn hình trắng", "blank"),
    "bad.frozen": ("đứng hình", "frozen"),
    "bad.sync_stale": ("đồng bộ nguồn tỉnh quá cũ", "provincial sync stale"),
    "bad.no_sync": ("chưa đồng bộ nguồn tỉnh", "no provincial sync"),
    "bad.no_data": ("không có dữ liệu", "no data"),
    "no_led": ("Không có bảng LED cấp huyện trong danh mục.", "No district LED board in the registry."),
    "yes": ("Có", "Yes"),
    "no": ("Không", "No"),
}

# Terms every room shares come from the one catalogue, so the report, the dashboards and the
# alerts name a thing the same way (report key -> catalogue key).
_SHARED = {
    "district": "district",
    "col.commune": "commune",
    "col.hamlet": "hamlet",
    "col.device": "device",
    "verdict.met": "verdict.met",
    "verdict.not_met": "verdict.not_met",
    "verdict.unknown": "verdict.unknown",
    "cause.mains": "cause.mains",
    "cause.cellular": "cause.cellular",
    "cause.device": "cause.device",
    "cause.unknown": "cause.unknown",
}
_TEXT.update({key: TERMS[shared] for key, shared in _SHARED.items()})


class Text:
    """Looks up report text and formats numbers and times in one language.

    Args:
        lang: ``vi`` or ``en``.

    Raises:
        ValueError: unknown language.
    """

    def __init__(self, lang: str = "vi") -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"report language must be one of {', '.join(LANGUAGES)}, got {lang!r}")
        self.lang = lang
        self._index = LANGUAGES.index(lang)

    def __call__(self, key: str, **values: object) -> str:
        """The text for ``key`` with ``values`` filled in."""
        text = _TEXT[key][self._index]
        return text.format(**values) if values else text

    def pct(self, value: float | None, digits: int = 1) -> str:
        """``33,3%`` (vi) or ``33.3%`` (en); an em dash for no value."""
        if value is None:
            return "—"
        text = f"{value:.{digits}f}"
        if text.endswith("." + "0" * digits):
            text = text.split(".")[0]
        return (text.replace(".", ",") if self.lang == "vi" else text) + "%"

    def number(self, value: float | None, digits: int = 1) -> str:
        """A plain number with the language's decimal mark."""
        if value is None:
            return "—"
        text = f"{value:.{digits}f}"
        return text.replace(".", ",") if self.lang == "vi" else text

    def when(self, ts_ms: int) -> str:
        """Local date and time, ``02/03/2025 06:00`` (vi) or ``2025-03-02 06:00``."""
        local = datetime.fromtimestamp(ts_ms / 1000, LOCAL_TZ)
        return local.strftime("%d/%m/%Y %H:%M" if self.lang == "vi" else "%Y-%m-%d %H:%M")

    def day(self, value: date | int) -> str:
        """A local date (given as a date or epoch ms)."""
        if isinstance(value, int):
            value = datetime.fromtimestamp(value / 1000, LOCAL_TZ).date()
        return value.strftime("%d/%m/%Y" if self.lang == "vi" else "%Y-%m-%d")

    def span(self, start_ms: int, end_ms: int) -> str:
        """``02/03/2025 06:00–22:00`` or across days ``… – 03/03/2025 01:00``."""
        start, end = self.when(start_ms), self.when(end_ms)
        if start[:10] == end[:10]:
            return f"{start}–{end[11:]}"
        return f"{start} – {end}"

    def verdict(self, verdict: str) -> str:
        """Đạt / Không đạt / Không có dữ liệu (from the catalogue)."""
        return self(f"verdict.{verdict}")
