"""Channels against a real local HTTP server, and message rendering per language."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.alerts.channels import DeliveryError
from backend.alerts.channels.telegram import TelegramChannel
from backend.alerts.channels.webhook import WebhookChannel
from backend.alerts.messages import FAULT_TEXT, Notice, render
from backend.alerts.model import Alert
from backend.monitor.rules import FAULTS
from backend.registry import Technician, load_registry
from tests.alert_receivers import HttpReceiver
from tests.monitor_support import local_ts
from tests.test_registry import EXAMPLE

REGISTRY = load_registry(EXAMPLE)


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def _notice(language: str = "vi", device: str = "vn-trangxa-loa-01", fault: str = "amp_idle") -> Notice:
    alert = Alert(device, fault, since=local_ts(17, 3), opened_at=local_ts(17, 4), detail="1.2 W")
    return render(alert, REGISTRY, "open", local_ts(17, 4), language)


def test_every_rule_has_vietnamese_and_english_text() -> None:
    assert set(FAULT_TEXT) == set(FAULTS)
    assert all(set(texts) == {"vi", "en"} for texts in FAULT_TEXT.values())


def test_vietnamese_message_names_commune_hamlet_device_time_and_what_to_check() -> None:
    notice = _notice()
    assert notice.subject == (
        "[tincoso] SỰ CỐ: Bộ khuếch đại không hoạt động khi có tín hiệu"
        " - Tràng Xá, Xóm Trung Thành (vn-trangxa-loa-01)"
    )
    assert "Từ lúc: 17:03 26/11/2025 (giờ VN, UTC+7)" in notice.text
    assert "Cần kiểm tra: Kiểm tra nguồn và cầu chì bộ khuếch đại, dây loa" in notice.text
    recovery = render(
        Alert("vn-trangxa-loa-01", "offline", local_ts(17, 0), local_ts(17, 0)),
        REGISTRY,
        "recovery",
        local_ts(18, 30),
    )
    assert "Kéo dài: 1 giờ 30 phút" in recovery.text
    assert "Cần kiểm tra" not in recovery.text


def test_english_for_a_technician_who_asked_for_it() -> None:
    notice = _notice("en", "vn-dinhca-loa-01", "offline")
    assert notice.subject.startswith("[tincoso] FAULT: Offline - Đình Cả")
    assert "What to check: Check mains power" in notice.text


async def test_telegram_style_send_message(http: HttpReceiver) -> None:
    channel = TelegramChannel("123:abc", base_url=http.url)
    technician = Technician("Hoàng Thị Bích", telegram_chat_id="700101")
    await channel.send(technician, _notice())
    [body] = http.to("/bot123:abc/sendMessage")
    assert body["chat_id"] == "700101"
    assert "Xóm Trung Thành" in body["text"]
    http.failures["/bot123:abc/sendMessage"] = 1
    with pytest.raises(DeliveryError, match="answered HTTP 500") as info:
        await channel.send(technician, _notice())
    assert "123:abc" not in str(info.value)  # the token stays out of logs
    await channel.aclose()


async def test_webhook_posts_json_and_refuses_non_2xx(http: HttpReceiver) -> None:
    channel = WebhookChannel(timeout=2)
    technician = Technician("Bích", webhook=f"{http.url}/hook")
    await channel.send(technician, _notice())
    [body] = http.to("/hook")
    assert (body["event"], body["fault"], body["commune"], body["hamlet"]) == (
        "open",
        "amp_idle",
        "trang-xa",
        "Xóm Trung Thành",
    )
    http.failures["/hook"] = 1
    with pytest.raises(DeliveryError, match="HTTP 500"):
        await channel.send(technician, _notice())
    with pytest.raises(DeliveryError):
        await channel.send(Technician("x", webhook="http://127.0.0.1:9/closed"), _notice())
    await channel.aclose()
