"""Report text in Vietnamese (the default) and English, and number/time formatting per language."""

from __future__ import annotations

from datetime import date, datetime

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
        """Đạt / Không đạt / Chưa xác định."""
        return self(f"verdict.{verdict}")
