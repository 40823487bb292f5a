"""One catalogue of words: each term once, in Vietnamese and English.

Alerts, the KPI report, the dashboards, the acceptance report and the ``tincoso`` command
all name the same things (a commune, a hamlet, a speaker cluster, a fault, "offline",
"met"). Each of those terms is written here once, so it reads the same in an SMS, on a
Grafana panel and in a signed report. The modules keep their own phrases (a report title, a
panel description) and take every shared term from `term`.

A pure module: it imports nothing of tincoso's, so every room may import it (dashboards/
included, see its README).
"""

from __future__ import annotations

__all__ = ["LANGUAGES", "TERMS", "fault_title", "kind_name", "term"]

LANGUAGES = ("vi", "en")

# key -> (Vietnamese, English)
TERMS: dict[str, tuple[str, str]] = {
    # places and things
    "district": ("Huyện", "District"),
    "commune": ("Xã/thị trấn", "Commune"),
    "hamlet": ("Thôn/xóm", "Hamlet"),
    "device": ("Thiết bị", "Device"),
    "kind": ("Loại thiết bị", "Device kind"),
    "kind.speaker_cluster": ("cụm loa", "speaker cluster"),
    "kind.eboard": ("bảng tin điện tử", "e-board"),
    "kind.district_led": ("màn hình LED cỡ lớn", "district LED board"),
    "technician": ("Kỹ thuật viên", "Technician"),
    "radio": ("Đài truyền thanh", "Radio"),
    # device states
    "state": ("Trạng thái", "State"),
    "state.online": ("Trực tuyến", "Online"),
    "state.offline": ("Mất kết nối", "Offline"),
    "state.never_seen": ("Chưa từng kết nối", "Never seen"),
    "state.muted": ("Đang bảo trì", "In maintenance"),
    # alerts
    "alert": ("Cảnh báo", "Alert"),
    "alert.id": ("Mã cảnh báo", "Alert id"),
    "alert.open": ("Đang mở", "Open"),
    "alert.link": ("Xem thiết bị", "Device dashboard"),
    "alert.how_to_ack": (
        "Nhận xử lý: trả lời tin Telegram này, hoặc chạy",
        "To take it: reply to this Telegram message, or run",
    ),
    "alert.closed": ("Đã khắc phục", "Closed"),
    "alert.acked": ("Đã nhận xử lý", "Acknowledged"),
    "alert.muted": ("Tắt báo (bảo trì)", "Muted (maintenance)"),
    "alert.unconfirmed": ("Chưa xác nhận khắc phục", "Recovery unconfirmed"),
    "event.open": ("SỰ CỐ", "FAULT"),
    "event.reminder": ("NHẮC LẠI", "REMINDER"),
    "event.recovery": ("ĐÃ KHẮC PHỤC", "RECOVERED"),
    "event.unconfirmed": ("CHƯA XÁC NHẬN", "UNCONFIRMED"),
    "event.update": ("CẬP NHẬT NGUYÊN NHÂN", "CAUSE UPDATE"),
    "alert.unconfirmed.note": (
        "Chưa khắc phục: không còn dữ liệu để kiểm tra (hết bản tin, hết giờ hoạt động hoặc thiết bị "
        "mất kết nối). Sự cố vẫn mở và sẽ được kiểm tra lại ở lần tới.",
        "Not fixed: nothing left to check it on (bulletin over, operating hours over or device "
        "offline). The alert stays open and is re-checked at the next chance.",
    ),
    "fault": ("Sự cố", "Fault"),
    "faults.open": ("Sự cố đang mở", "Open faults"),
    "since": ("Từ lúc", "Since"),
    "from": ("từ", "since"),
    "lasted": ("kéo dài", "lasted"),
    "opened": ("Mở lúc", "Opened"),
    "closed": ("Đóng lúc", "Closed"),
    "duration": ("Kéo dài", "Lasted"),
    "detail": ("Chi tiết", "Detail"),
    "what_to_check": ("Cần kiểm tra", "What to check"),
    "local_time": ("giờ VN", "Vietnam time"),
    "maintenance": ("Bảo trì", "Maintenance"),
    "until": ("đến", "until"),
    # verdicts (KPI, acceptance, dashboards)
    "verdict.met": ("Đạt", "Met"),
    "verdict.not_met": ("Không đạt", "Not met"),
    "verdict.unknown": ("Không có dữ liệu", "No data"),
    "verdict.pass": ("ĐẠT", "PASS"),
    "verdict.fail": ("KHÔNG ĐẠT", "FAIL"),
    # fault titles (what a technician reads first)
    "fault.offline": ("Mất kết nối", "Offline"),
    "fault.dead_air": ("Mất tiếng trong giờ phát bản tin", "Dead air during a scheduled bulletin"),
    "fault.playing_off_schedule": ("Phát ngoài lịch", "Playing outside the schedule"),
    "fault.amp_idle": (
        "Bộ khuếch đại không hoạt động khi có tín hiệu",
        "Amplifier idle while audio is present",
    ),
    "fault.board_dark": ("Bảng tin tắt trong giờ hoạt động", "Board dark during operating hours"),
    "fault.board_blank": ("Bảng tin không có nội dung", "Board blank"),
    "fault.board_frozen": ("Bảng tin bị treo hình", "Board frozen"),
    "fault.source_sync_stale": (
        "Mất đồng bộ với Hệ thống thông tin nguồn cấp tỉnh",
        "Provincial source sync stale",
    ),
    "fault.weak_signal": ("Sóng 4G yếu", "Weak 4G signal"),
    "fault.overheating": ("Quá nhiệt", "Overheating"),
    "fault.storage_readonly": ("Bộ nhớ chỉ đọc", "Storage read-only"),
    "fault.reboot_loop": ("Khởi động lại liên tục", "Reboot loop"),
    "fault.data_loss": ("Mất dữ liệu giám sát kéo dài", "Sustained data loss"),
    "fault.link_flapping": ("Kết nối chập chờn", "Flapping connection"),
    # what to check on site, per fault
    "fault.offline.check": (
        "Kiểm tra nguồn điện, bộ thu IP và SIM 4G (sóng, cước); khởi động lại nếu cần.",
        "Check mains power, the IP receiver and the 4G SIM (signal, credit); power-cycle if needed.",
    ),
    "fault.dead_air.check": (
        "Kiểm tra nguồn phát bản tin, bộ thu IP và dây tín hiệu âm thanh vào bộ khuếch đại.",
        "Check the bulletin source, the IP receiver and the audio cable.",
    ),
    "fault.playing_off_schedule.check": (
        "Kiểm tra lịch phát trên phần mềm quản lý và nguồn đang phát; dừng nếu không được phép.",
        "Check the schedule and what is playing; stop it if not authorised.",
    ),
    "fault.amp_idle.check": (
        "Kiểm tra nguồn và cầu chì bộ khuếch đại, dây loa",
        "Check the amplifier's supply and fuse, and the speaker lines.",
    ),
    "fault.board_dark.check": (
        "Kiểm tra nguồn điện, aptomat và bộ điều khiển của bảng tin.",
        "Check mains, the breaker and the board's controller.",
    ),
    "fault.board_blank.check": (
        "Kiểm tra nội dung đã lập lịch và kết nối tới máy chủ nội dung.",
        "Check the scheduled content and the link to the content server.",
    ),
    "fault.board_frozen.check": (
        "Khởi động lại máy phát nội dung (player) và kiểm tra kết nối.",
        "Restart the content player and check its connection.",
    ),
    "fault.source_sync_stale.check": (
        "Kiểm tra Internet và tài khoản kết nối Hệ thống thông tin nguồn cấp tỉnh.",
        "Check the Internet link and the provincial source system account.",
    ),
    "fault.weak_signal.check": (
        "Kiểm tra ăng-ten, vị trí modem; cân nhắc ăng-ten ngoài hoặc đổi nhà mạng.",
        "Check the antenna and modem placement; consider an external antenna or operator.",
    ),
    "fault.overheating.check": (
        "Kiểm tra quạt, thông gió tủ thiết bị và che nắng.",
        "Check the fans, cabinet ventilation and sun shading.",
    ),
    "fault.storage_readonly.check": (
        "Thay thẻ nhớ/ổ lưu trữ của bộ điều khiển (sao lưu cấu hình trước).",
        "Replace the controller's SD card or disk (back up the config first).",
    ),
    "fault.reboot_loop.check": (
        "Kiểm tra điện áp nguồn, bộ nguồn (adapter) và nhiệt độ bộ điều khiển.",
        "Check the supply voltage, the power adapter and the controller's temperature.",
    ),
    "fault.data_loss.check": (
        "Kiểm tra đường truyền 4G/Internet và hàng đợi của phần mềm giám sát trên bộ điều khiển.",
        "Check the 4G/Internet link and the agent's queue.",
    ),
    "fault.link_flapping.check": (
        "Kiểm tra ăng-ten và vị trí modem 4G, SIM (cước, tiếp xúc) và nguồn cấp cho modem.",
        "Check the 4G antenna and modem placement, the SIM (credit, contacts) and the modem's supply.",
    ),
    # fault titles short enough for an SMS (the full title otherwise)
    "fault.dead_air.short": ("Mất tiếng giờ bản tin", "Dead air in bulletin"),
    "fault.playing_off_schedule.short": ("Phát ngoài lịch", "Playing off schedule"),
    "fault.amp_idle.short": ("Bộ khuếch đại không chạy", "Amplifier idle"),
    "fault.board_dark.short": ("Bảng tin tắt", "Board dark"),
    "fault.board_blank.short": ("Bảng tin trống", "Board blank"),
    "fault.source_sync_stale.short": ("Mất đồng bộ nguồn tỉnh", "Provincial sync stale"),
    "fault.data_loss.short": ("Mất dữ liệu giám sát", "Data loss"),
    # area outages: several devices of one commune (or the district) offline together
    "unit.commune": ("xã", "commune"),
    "unit.town": ("thị trấn", "town"),
    "area.devices": ("thiết bị", "devices"),
    "area.offline": (
        "Mất kết nối {down}/{total} {kind} {unit} {name} từ {since}",
        "{down} of {total} {kind} offline in {unit} {name} since {since}",
    ),
    "area.offline.district": (
        "Mất kết nối {down}/{total} thiết bị ở {communes} xã/thị trấn huyện {name} từ {since}",
        "{down} of {total} devices offline in {communes} communes of {name} district since {since}",
    ),
    "area.offline.operator": (
        "Mất kết nối {down}/{total} thiết bị dùng mạng {operator} ở {communes} xã/thị trấn từ {since}",
        "{down} of {total} devices on {operator} offline in {communes} communes since {since}",
    ),
    "area.cause.mains": ("nghi mất điện khu vực", "likely an area power cut"),
    "area.cause.cellular": (
        "nghi mất sóng di động khu vực (trạm phát sóng hoặc nhà mạng)",
        "likely the cell site or the operator",
    ),
    "area.cause.device": ("nhiều bộ điều khiển cùng lỗi", "several controllers failing together"),
    "area.cause.unknown": (
        "nhiều thiết bị mất kết nối cùng lúc: nghi mất điện hoặc mất sóng khu vực",
        "several devices dark at once: likely an area power cut or the cell site",
    ),
    "area.district_cause.mains": ("nghi mất điện diện rộng", "likely a wide power cut"),
    "area.district_cause.cellular": (
        "nghi sự cố nhà mạng diện rộng",
        "likely an operator-wide outage",
    ),
    "area.district_cause.device": ("nhiều bộ điều khiển cùng lỗi", "several controllers failing together"),
    "area.district_cause.unknown": (
        "nghi mất điện diện rộng hoặc sự cố nhà mạng",
        "likely a wide power cut or an operator outage",
    ),
    "area.list": ("Thiết bị mất kết nối", "Devices offline"),
    "area.communes": ("Các xã/thị trấn", "Communes"),
    "area.more": ("và {n} thiết bị khác", "and {n} more"),
    "area.one_notice": (
        "Một thông báo cho cả khu vực thay cho từng thiết bị; thiết bị có nguyên nhân khác hoặc "
        "vẫn mất kết nối sau khi các thiết bị lân cận đã kết nối lại sẽ được báo riêng.",
        "One notice for the whole area instead of one per device; a device with a different cause, "
        "or still offline after its neighbours are back, is alerted on its own.",
    ),
    "area.check": (
        "Hỏi điện lực (lịch cắt điện) hoặc nhà mạng về khu vực; chưa cần đi kiểm tra từng cụm.",
        "Ask the power company (planned cuts) or the operator about the area before visiting each site.",
    ),
    "area.back": ("{back}/{members} thiết bị đã kết nối lại", "{back} of {members} devices back"),
    "area.stragglers": (
        "Vẫn mất kết nối sau khi các thiết bị lân cận đã kết nối lại (đã báo riêng)",
        "Still offline after the neighbours returned (alerted on its own)",
    ),
    # the weekly device-health digest (district contacts)
    "digest.title": (
        "Tình trạng thiết bị hằng tuần — huyện {district}",
        "Weekly device health — {district} district",
    ),
    "digest.period": ("Từ {first} đến {last} (giờ VN)", "From {first} to {last} (Vietnam time)"),
    "digest.district": (
        "Toàn huyện: {devices} thiết bị, {outages} lần mất kết nối ({causes}), tổng {down} giờ; "
        "MTBF {mtbf}; MTTR {mttr}; giờ hoạt động không lỗi {free}/{operating}.",
        "District: {devices} devices, {outages} outages ({causes}), {down} h down in all; "
        "MTBF {mtbf}; MTTR {mttr}; crash-free hours {free}/{operating}.",
    ),
    "digest.worst": ("Năm thiết bị cần chú ý nhất", "The five devices that need attention most"),
    "digest.none_bad": (
        "Không thiết bị nào mất kết nối hay khởi động lại do lỗi trong tuần.",
        "No device went offline or crashed this week.",
    ),
    "digest.device": (
        "{n}. {commune}, {hamlet} ({device}): {outages} lần mất kết nối, {down} giờ ({causes}); "
        "khởi động lại do lỗi {crashes} lần; giờ không lỗi {free}/{operating}",
        "{n}. {commune}, {hamlet} ({device}): {outages} outages, {down} h ({causes}); "
        "{crashes} crash reboots; crash-free hours {free}/{operating}",
    ),
    "digest.todo": ("Cần làm", "To do"),
    "digest.communes": ("Theo xã/thị trấn", "By commune"),
    "digest.commune": (
        "- {commune}: {devices} thiết bị, {outages} lần ({causes}), {down} giờ; MTBF {mtbf}; "
        "MTTR {mttr}; giờ không lỗi {free}/{operating}",
        "- {commune}: {devices} devices, {outages} outages ({causes}), {down} h; MTBF {mtbf}; "
        "MTTR {mttr}; crash-free hours {free}/{operating}",
    ),
    "digest.hours": ("{h} giờ", "{h} h"),
    "digest.no_failure": ("không có sự cố", "no failure"),
    "digest.definitions": (
        "Mất kết nối: quá thời gian chờ (5 nhịp tim) mới có cảnh báo. MTBF: thời gian hoạt động chia số lần "
        "mất kết nối; MTTR: thời gian mất kết nối trung bình. Giờ không lỗi: giờ có nhịp tim, trừ giờ "
        "thiết bị khởi động lại do lỗi (như báo cáo KPI).",
        "Outage: offline past the grace (5 heartbeats), as alerted. MTBF: time up divided by the number of "
        "outages; MTTR: mean outage length. Crash-free hours: hours with a heartbeat less those with a "
        "crash reboot (as in the KPI report).",
    ),
    "cause.short.mains": ("điện lưới", "grid"),
    "cause.short.cellular": ("mất sóng", "cellular"),
    "cause.short.device": ("lỗi thiết bị", "device"),
    "cause.short.unknown": ("chưa rõ", "unknown"),
    "digest.todo.mains": (
        "Mất điện lưới: kiểm tra bộ lưu điện (UPS) và aptomat; hỏi điện lực lịch cắt điện khu vực.",
        "Grid power: check the UPS and breaker; ask the power company about planned cuts.",
    ),
    "digest.todo.cellular": (
        "Mất sóng: kiểm tra ăng-ten, vị trí modem và SIM; cân nhắc ăng-ten ngoài hoặc đổi nhà mạng.",
        "Cellular: check the antenna, modem placement and SIM; consider an external antenna or operator.",
    ),
    "digest.todo.device": (
        "Lỗi thiết bị: kiểm tra bộ nguồn, thẻ nhớ và nhiệt độ bộ điều khiển; thay nếu còn lặp lại.",
        "Device: check the controller's power adapter, SD card and temperature; replace it if it recurs.",
    ),
    "digest.todo.unknown": (
        "Chưa rõ nguyên nhân: đến kiểm tra tại chỗ nguồn điện, modem và bộ điều khiển.",
        "Unknown cause: visit the site and check power, modem and controller.",
    ),
    "digest.sent": ("Đã gửi bản tin tuần tới {n} người nhận.", "Weekly digest sent to {n} recipients."),
    # the command line
    "cli.none_match": ("Không có thiết bị nào khớp.", "No device matches."),
    "cli.radio_system": ("đài {system}", "radio {system}"),
    "alerts.open": ("Cảnh báo đang mở", "Open alerts"),
    "cli.recent_alerts": (
        "Cảnh báo gần đây (mở, đóng, thời lượng)",
        "Recent alerts (opened, closed, duration)",
    ),
    "cli.no_alerts": ("Không có cảnh báo.", "No alerts."),
    "cli.still_open": ("chưa đóng", "still open"),
    "cli.ack_queued": (
        "Đã ghi nhận: {by} nhận xử lý cảnh báo #{id} ({fault}, {device}). "
        "Bộ giám sát ngừng nhắc lại trong vài giây.",
        "Noted: {by} takes alert #{id} ({fault}, {device}). The monitor stops reminders within seconds.",
    ),
    "cli.status": ("Tình trạng", "Status"),
    "cli.maintenance_windows": ("Lịch bảo trì (giờ VN)", "Maintenance windows (Vietnam time)"),
    "cli.maintenance_added": (
        "Đã thêm {id}: tắt báo {target} {name} từ {start} đến {end}",
        "Added {id}: {target} {name} muted {start} – {end}",
    ),
    "cli.maintenance_removed": ("Đã xoá {id}", "Removed {id}"),
    "cli.window_id": ("Mã", "Id"),
    "cli.target": ("Áp dụng cho", "Target"),
    "cli.name": ("Tên", "Name"),
    "cli.from": ("Từ", "From"),
    "cli.to": ("Đến", "To"),
    "cli.reason": ("Lý do", "Reason"),
    "cli.active": ("đang áp dụng", "active"),
    "cli.ended": ("đã hết", "ended"),
    "cli.planned": ("sắp tới", "planned"),
    # the likely cause of an outage (backend.monitor.causes), in alerts, dashboards and reports
    "cause.mains": ("Mất điện lưới", "Mains power lost"),
    "cause.device": ("Lỗi thiết bị", "Device failure"),
    "cause.cellular": ("Mất sóng di động", "Cellular link lost"),
    "cause.unknown": ("Chưa rõ nguyên nhân", "Unknown cause"),
}


def term(key: str, language: str = "vi") -> str:
    """The term ``key`` in ``language`` (Vietnamese for an unknown language).

    Raises:
        KeyError: the catalogue has no such term (a typo shows at once in tests).
    """
    vi, en = TERMS[key]
    return en if language == "en" else vi


def kind_name(kind: str, language: str = "vi") -> str:
    """``speaker_cluster`` -> ``cụm loa``; an unknown kind as it is."""
    key = f"kind.{kind}"
    return term(key, language) if key in TERMS else kind


def fault_title(fault: str, language: str = "vi") -> str:
    """``offline`` -> ``Mất kết nối``; an unknown fault as it is."""
    key = f"fault.{fault}"
    return term(key, language) if key in TERMS else fault
