"""Notices a technician can act on: words not codes, a short id, a link, two SMS at most; the SMS channel."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.alerts.channels import DeliveryError
from backend.alerts.channels.sms import SmsChannel, SmsGateway, phone_number
from backend.alerts.channels.telegram import chat_text
from backend.alerts.evidence import EVIDENCE, describe, duration_text
from backend.alerts.messages import DEVICE_DASHBOARD_UID, Notice, render
from backend.alerts.model import ALERT_ID, Alert, new_alert_id
from backend.alerts.short import SHORT_LIMIT, sms_parts, ucs2_units
from backend.alerts.telegram_replies import alert_id_of
from backend.config import ConfigError, load_config
from backend.monitor.config import MonitorConfig
from backend.monitor.rules import FAULTS
from backend.monitor.service import build_channels, sms_gateway
from backend.registry import Registry, Technician, parse_registry
from dashboards.device import UID
from tests.alert_receivers import SmsGatewayReceiver
from tests.monitor_support import local_ts

# The rules' detail strings, one per fault, in the shapes backend/monitor/rules.py writes.
DETAILS = {
    "offline": "Nghi mất điện lưới: điện áp nguồn về 0 V lúc 17:02 (reason: lwt)",
    "dead_air": "Bản tin chiều 17:00–18:00, 30 s",
    "playing_off_schedule": "BANTIN-SANG",
    "amp_idle": "3.1 W",
    "board_dark": "",
    "board_blank": "BANTIN-SANG",
    "board_frozen": "BANTIN-SANG",
    "source_sync_stale": "90000 s",
    "weak_signal": "-111 dBm",
    "overheating": "78.5 °C",
    "storage_readonly": "",
    "reboot_loop": "4 reboots in 600 s",
    "data_loss": "37 messages in 900 s",
    "link_flapping": "6 drops in 3600 s",
}
# Raw codes and English a Vietnamese notice must not show.
RAW = re.compile(
    r"\b(reason|lwt|clean|timeout|agent|reboots?|messages?|min|sec|speaker_cluster|eboard|district_led|None)\b"
    r"|\b\d+(\.\d+)? ?[smh]\b|\b\d+\.\d+\b|" + "|".join(rf"\b{fault}\b" for fault in FAULTS)
)
GRAFANA = "https://grafana.vonhai.example.invalid"
# The longest names in the seed: a notice must still fit for them.
LONG = parse_registry("""\
district: Võ Nhai
communes:
  - id: nghinh-tuong
    name: Nghinh Tường
    radio_system: ip
    schedule: [{name: Bản tin chiều, start: "17:00", end: "18:00"}]
devices:
  - {id: vn-nghinhtuong-loa-12, kind: speaker_cluster, commune: nghinh-tuong, hamlet: Xóm Khuổi Nọi Thượng}
  - {id: vn-nghinhtuong-eboard-01, kind: eboard, commune: nghinh-tuong, hamlet: UBND xã Nghinh Tường}
""")


def _notice(fault: str, event: str = "open", language: str = "vi", registry: Registry = LONG) -> Notice:
    device = "vn-nghinhtuong-eboard-01" if fault.startswith(("board", "source")) else "vn-nghinhtuong-loa-12"
    alert = Alert(device, fault, local_ts(17, 3), local_ts(17, 4), DETAILS[fault], id=new_alert_id())
    return render(alert, registry, event, local_ts(18, 38), language, grafana_url=GRAFANA)


def test_every_rule_has_its_evidence_in_words() -> None:
    assert set(DETAILS) == set(FAULTS)
    assert set(EVIDENCE) >= set(FAULTS)
    for fault, detail in DETAILS.items():
        for language in ("vi", "en"):
            assert describe(fault, detail, language) != detail or not detail, (fault, language)


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("event", ["open", "reminder", "recovery"])
def test_vietnamese_notice_has_no_english_or_raw_code(fault: str, event: str) -> None:
    notice = _notice(fault, event)
    for text in (notice.text, notice.subject, notice.short):
        words = text.replace(notice.device, "").replace(notice.link, "").replace("tincoso alerts ack", "")
        assert not RAW.search(words), (fault, RAW.search(words), text)


def test_evidence_reads_as_the_field_says_it() -> None:
    assert describe("offline", "reason: lwt") == "mất điện hoặc mất mạng đột ngột (thiết bị không kịp báo)"
    cause = "Nghi mất điện lưới: điện áp nguồn về 0 V lúc 17:02, thiết bị chạy pin dự phòng 40 s rồi tắt"
    assert describe("offline", f"{cause} (reason: lwt)") == (
        f"{cause}; mất điện hoặc mất mạng đột ngột (thiết bị không kịp báo)"
    )
    assert describe("reboot_loop", "4 reboots in 600 s") == "khởi động lại 4 lần trong 10 phút"
    assert (
        describe("source_sync_stale", "90000 s")
        == "lần đồng bộ cuối với hệ thống nguồn tỉnh cách đây 25 giờ 00 phút"
    )
    assert describe("amp_idle", "3.1 W") == "bộ khuếch đại chỉ tiêu thụ 3,1 W khi đang có tín hiệu âm thanh"
    assert (
        describe("dead_air", "Bản tin chiều 17:00–18:00, 30 s")
        == "im lặng 30 giây trong Bản tin chiều 17:00–18:00"
    )
    assert describe("reboot_loop", "4 reboots in 600 s", "en") == "4 restarts within 10 min"
    assert describe("flapping", "7 changes") == "7 changes"  # a rule without a describer keeps its detail
    assert [duration_text(s) for s in (0, 45, 150, 3000, 5400, 90000, 200000)] == [
        "0 giây",
        "45 giây",
        "2 phút 30 giây",
        "50 phút",
        "1 giờ 30 phút",
        "25 giờ 00 phút",
        "2 ngày 7 giờ",
    ]


@pytest.mark.parametrize("language", ["vi", "en"])
@pytest.mark.parametrize("event", ["open", "recovery"])
def test_short_form_fits_two_concatenated_ucs2_sms_and_carries_the_id(language: str, event: str) -> None:
    for fault in FAULTS:
        notice = _notice(fault, event, language)
        assert ucs2_units(notice.short) <= SHORT_LIMIT == 134, notice.short
        assert sms_parts(notice.short) <= 2
        assert f"#{notice.alert_id}" in notice.short
        assert "Nghinh Tường" in notice.short
        assert notice.device in notice.short


def test_short_form_keeps_the_likely_cause_of_an_outage() -> None:
    cause = "Nghi mất điện lưới: điện áp nguồn về 0 V lúc 17:02, thiết bị chạy pin dự phòng 40 s rồi tắt"
    alert = Alert(
        "vn-nghinhtuong-loa-12", "offline", local_ts(17, 3), local_ts(17, 4), f"{cause} (reason: lwt)"
    )
    short = render(alert, LONG, "open", local_ts(17, 5), "vi").short
    assert ucs2_units(short) <= SHORT_LIMIT, short
    assert short.endswith(": Nghi mất điện lưới"), short  # the technician knows whom to call


def test_sms_parts_count_ucs2_units() -> None:
    assert sms_parts("Mất kết nối" * 6) == 1  # 66 units
    assert sms_parts("ạ" * 70) == 1
    assert sms_parts("ạ" * 71) == 2
    assert sms_parts("ạ" * 134) == 2
    assert sms_parts("ạ" * 135) == 3


def test_full_notice_has_id_link_and_how_to_acknowledge() -> None:
    notice = _notice("offline")
    assert ALERT_ID.fullmatch(notice.alert_id)
    assert notice.subject.endswith(f"#{notice.alert_id}")
    assert f"Mã cảnh báo: #{notice.alert_id}" in notice.text
    assert notice.link == f"{GRAFANA}/d/tincoso-device?var-device=vn-nghinhtuong-loa-12"
    assert f"Xem thiết bị: {notice.link}" in notice.text
    assert f"tincoso alerts ack {notice.alert_id}" in notice.text
    assert "Kéo dài: 1 giờ 35 phút" in _notice("offline", "recovery").text
    chat = chat_text(notice)
    assert chat.splitlines()[:2] == [notice.short, notice.link]
    assert "Trả lời tin này" in chat
    assert "Trả lời" not in chat_text(_notice("offline", "recovery"))


def test_device_link_uses_the_device_dashboards_uid() -> None:
    assert DEVICE_DASHBOARD_UID == UID


def test_telegram_reply_names_the_alert() -> None:
    sent = {"message_id": 3, "text": "SỰ CỐ #K7Q2M Mất kết nối - Tràng Xá"}
    assert alert_id_of({"text": "ok", "reply_to_message": sent}) == "K7Q2M"
    assert alert_id_of({"text": "Đã xử lý xong", "reply_to_message": sent}) == "K7Q2M"
    assert alert_id_of({"text": "ok k7q2m"}) == "K7Q2M"
    assert alert_id_of({"text": "xác nhận #K7Q2M"}) == "K7Q2M"
    assert alert_id_of({"text": "chào bạn"}) is None
    assert alert_id_of({"text": "ok", "reply_to_message": {"text": "no id here"}}) is None


def test_phone_numbers_in_the_gateways_style() -> None:
    assert phone_number("0912 345 678") == "84912345678"
    assert phone_number("+84 912.345.678", "0") == "0912345678"
    assert phone_number("84912345678", "+84") == "+84912345678"
    assert phone_number("0208 3800 100") == "842083800100"
    with pytest.raises(ValueError, match="must start with 0, 84 or"):
        phone_number("912345678")
    with pytest.raises(ValueError, match="not a Vietnamese number"):
        phone_number("09x2345678")


@pytest.fixture
def gateway() -> Iterator[SmsGatewayReceiver]:
    receiver = SmsGatewayReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


async def test_sms_goes_to_an_esms_shaped_gateway_as_json(gateway: SmsGatewayReceiver) -> None:
    channel = SmsChannel(
        SmsGateway(
            f"{gateway.url}/sms",
            params={
                "ApiKey": "k",
                "SecretKey": "s",
                "Brandname": "TINCOSO",
                "SmsType": "2",
                "IsUnicode": "1",
            },
            ok_field="CodeResult",
            ok_value="100",
        )
    )
    technician = Technician("Hoàng Thị Bích", phone="0912 345 678")
    notice = _notice("offline")
    await channel.send(technician, notice)
    [body] = gateway.received()
    assert body == {
        "ApiKey": "k",
        "SecretKey": "s",
        "Brandname": "TINCOSO",
        "SmsType": "2",
        "IsUnicode": "1",
        "Phone": "84912345678",
        "Content": notice.short,
    }
    gateway.refuse = 1
    with pytest.raises(DeliveryError, match="refused: CodeResult='99'") as info:
        await channel.send(technician, notice)
    assert "SecretKey" not in str(info.value)
    assert "'s'" not in str(info.value)
    with pytest.raises(DeliveryError, match="not a Vietnamese number"):
        await channel.send(Technician("x", phone="09x"), notice)
    assert channel.reaches(technician)
    assert not channel.reaches(Technician("y"))
    await channel.aclose()


async def test_sms_as_a_form_with_basic_auth_and_other_field_names(gateway: SmsGatewayReceiver) -> None:
    channel = SmsChannel(
        SmsGateway(
            f"{gateway.url}/sms",
            body="form",
            phone_field="to",
            text_field="content",
            phone_style="0",
            params={"sender": "TINCOSO"},
            username="token123",
        )
    )
    await channel.send(Technician("Bích", phone="+84912345678"), _notice("dead_air"))
    [body] = gateway.received()
    assert (body["to"], body["sender"]) == ("0912345678", "TINCOSO")
    assert body["content"].startswith("SỰ CỐ #")
    assert gateway.auth == ["Basic dG9rZW4xMjM6"]  # token123: with an empty password
    await channel.aclose()
    plain = SmsChannel(SmsGateway(f"{gateway.url}/sms", unaccented=True))
    notice = _notice("offline")
    await plain.send(Technician("Bích", phone="0912345678"), notice)
    sent = gateway.received()[-1]["Content"]
    assert sent.startswith(f"SU CO #{notice.alert_id} Mat ket noi - Nghinh Tuong, Xom Khuoi Noi Thuong")
    assert sent.isascii()
    assert len(sent) == len(notice.short)
    await plain.aclose()
    with pytest.raises(ValueError, match="sms_phone_as_list needs"):
        SmsGateway("http://127.0.0.1:9/sms", body="form", phone_as_list=True)


def test_sms_gateway_settings_from_backend_toml(tmp_path: Path) -> None:
    path = tmp_path / "backend.toml"
    path.write_text(
        '[alerts]\nsms_url = "http://127.0.0.1:9/sms"\nsms_ok_field = "CodeResult"\nsms_ok_value = "100"\n'
        'sms_params = { ApiKey = "k", SmsType = 2, IsUnicode = true }\ngrafana_url = "http://127.0.0.1:3000"\n',
        encoding="utf-8",
    )
    alerts = MonitorConfig.from_backend(load_config(path)).alerts
    assert sms_gateway(alerts).params == {"ApiKey": "k", "SmsType": 2, "IsUnicode": True}
    assert "sms" in build_channels(alerts)
    path.write_text('[alerts]\nsms_body = "xml"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"alerts\.sms_body must be json or form"):
        MonitorConfig.from_backend(load_config(path))
    path.write_text("[alerts]\nsms_params = { ApiKey = [1] }\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"alerts\.sms_params must be dict"):
        MonitorConfig.from_backend(load_config(path))


def test_the_rules_details_are_the_shapes_the_describers_read() -> None:
    from collections import deque

    from backend.monitor.rules import RuleContext
    from backend.monitor.state import DeviceState

    now = local_ts(12, 0)
    ctx = RuleContext(now, "speaker_cluster", LONG)
    state = DeviceState(
        "vn-nghinhtuong-loa-12",
        online=False,
        offline_reason="lwt",
        down_since=now - 3600,
        link_drops=deque([now - 600 * i for i in range(6)]),
        heartbeat={"signal_dbm": -111, "net_type": "4g", "temp_c": 80.5, "disk_ro": True},
        display={"source_sync_age_s": 90000.0, "temp_c": None},
        boots=deque([now - 60, now - 120, now - 180, now - 240]),
        gaps=deque([(now - 30, 37)]),
    )
    for fault in (
        "offline",
        "reboot_loop",
        "data_loss",
        "weak_signal",
        "overheating",
        "source_sync_stale",
        "link_flapping",
    ):
        rule = FAULTS[fault]
        result = rule.condition(state, ctx, rule.defaults)
        assert result is not None, fault
        active, detail = result
        assert active, fault
        words = describe(fault, detail, "vi")
        assert words != detail, (fault, detail)
        assert not RAW.search(words), (fault, words)
    rule = FAULTS["reboot_loop"]
    assert describe("reboot_loop", rule.condition(state, ctx, rule.defaults)[1]) == (  # type: ignore[index]
        "khởi động lại 4 lần trong 30 phút"
    )
