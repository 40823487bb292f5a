"""Acting on alerts end to end: a real broker, InfluxDB, SMTP server, webhook, Telegram-shaped
Bot API and SMS-gateway-shaped receiver; acknowledgement by Telegram reply and by
``tincoso alerts ack`` stops the reminders and shows in ``tincoso status`` and ``alerts``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from backend.alerts.short import SHORT_LIMIT, ucs2_units
from backend.cli import main
from backend.config import MqttSettings
from backend.influx import InfluxClient
from backend.localservices import LocalMosquitto
from backend.monitor.clock import SystemClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.rules import RulesConfig
from backend.monitor.service import Monitor
from backend.registry import parse_registry
from tests.alert_receivers import HttpReceiver, SmsGatewayReceiver, SmtpInbox, TelegramBotApi, receivers
from tests.monitor_support import ScriptedDevice
from tests.services_fixtures import InfluxDatabase
from tests.test_alerts_integration import Agent
from tests.test_alerts_notices import RAW

LOA = "vn-trangxa-loa-01"
LAHIEN = "vn-lahien-loa-01"
TOKEN = "123:abc"
CHAT = 700101
REMIND_S = 1.0


def _registry_text(hooks: str) -> str:
    return f"""\
district: Võ Nhai
communes:
  - id: trang-xa
    name: Tràng Xá
    radio_system: ip
    technicians:
      - name: Hoàng Thị Bích
        email: ktv.trangxa@example.invalid
        phone: "0912 345 678"
        telegram_chat_id: "{CHAT}"
  - id: la-hien
    name: La Hiên
    radio_system: ip
    technicians:
      - name: Lường Văn Cường
        webhook: {hooks}/hook/la-hien
devices:
  - {{id: {LOA}, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm Trung Thành}}
  - {{id: {LAHIEN}, kind: speaker_cluster, commune: la-hien, hamlet: Xóm Cậy}}
"""


@pytest.fixture
def mail_and_hooks() -> Iterator[tuple[SmtpInbox, HttpReceiver]]:
    yield from receivers()


@pytest.fixture
def bot() -> Iterator[TelegramBotApi]:
    api = TelegramBotApi(TOKEN)
    api.start()
    yield api
    api.stop()


@pytest.fixture
def sms() -> Iterator[SmsGatewayReceiver]:
    gateway = SmsGatewayReceiver()
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture
async def influx(influx_db: InfluxDatabase) -> AsyncIterator[InfluxClient]:
    async with InfluxClient(influx_db.base_url, influx_db.name) as client:
        yield client


async def _until(check: Callable[[], object], seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 - the condition lives in other threads and objects
            await asyncio.sleep(0.05)


async def _cli(*args: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(args))
    return code, ""


def _reminders(texts: list[str]) -> int:
    return sum(1 for text in texts if text.startswith("NHẮC LẠI"))


async def test_telegram_reply_and_cli_ack_stop_reminders_and_show_in_status(
    fresh_mosquitto: Callable[..., LocalMosquitto],
    influx_db: InfluxDatabase,
    influx: InfluxClient,
    mail_and_hooks: tuple[SmtpInbox, HttpReceiver],
    bot: TelegramBotApi,
    sms: SmsGatewayReceiver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inbox, http = mail_and_hooks
    broker = fresh_mosquitto()
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(_registry_text(http.url), encoding="utf-8")
    cli_config = tmp_path / "backend.toml"
    cli_config.write_text(
        f'[influx]\nurl = "{influx_db.base_url}"\ndatabase = "{influx_db.name}"\n'
        f'[registry]\npath = "{registry_file}"\n[monitor]\nstate_dir = "state"\n',
        encoding="utf-8",
    )
    config = MonitorConfig(
        mqtt=MqttSettings(url=broker.url, client_id="unused-ingest-id"),
        monitor=MonitorSettings(
            client_id="tincoso-monitor-ack", state_dir=str(tmp_path / "state"), tick_s=0.1
        ),
        rules=RulesConfig.from_dict({}),
        alerts=AlertSettings(
            smtp_host="127.0.0.1",
            smtp_port=inbox.port,
            smtp_starttls=False,
            backoff_s=0.2,
            remind_s=REMIND_S,
            telegram_token=TOKEN,
            telegram_base_url=bot.url,
            telegram_poll_s=1.0,
            grafana_url="http://127.0.0.1:3000",
            sms_url=f"{sms.url}/sms",
            sms_params={"ApiKey": "k", "SecretKey": "s", "Brandname": "TINCOSO", "SmsType": "2"},
            sms_ok_field="CodeResult",
            sms_ok_value="100",
        ),
    )
    registry = parse_registry(registry_file.read_text(encoding="utf-8"))
    monitor = Monitor(config, registry, influx, clock=SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    devices = [
        ScriptedDevice(LOA, SystemClock(), heartbeat_s=1),
        ScriptedDevice(LAHIEN, SystemClock(), heartbeat_s=1),
    ]
    agents = [Agent(broker, dev) for dev in devices]
    try:
        await _until(lambda: all(monitor.fleet.get(d.device).online for d in devices))
        for agent in agents:
            agent.power_cut()
        chat = lambda: [m["text"] for m in bot.messages_to(CHAT)]  # noqa: E731
        hook = lambda: [b["text"] for b in http.to("/hook/la-hien")]  # noqa: E731
        await _until(lambda: _reminders(chat()) >= 1 and _reminders(hook()) >= 1 and inbox.messages)

        # Every channel carries the alert id; SMS and chat carry the short form.
        loa = monitor.store.open[(LOA, "offline")]
        lahien = monitor.store.open[(LAHIEN, "offline")]
        first = bot.messages_to(CHAT)[0]
        assert first["text"].startswith(f"SỰ CỐ #{loa.id} Mất kết nối - Tràng Xá, Xóm Trung Thành")
        assert f"http://127.0.0.1:3000/d/tincoso-device?var-device={LOA}" in first["text"]
        [message, *_] = inbox.messages
        assert message["Subject"].endswith(f"#{loa.id}")
        assert "mất điện hoặc mất mạng đột ngột" in message.get_content()
        texts = [m["Content"] for m in sms.received()]
        assert texts[0].startswith(f"SỰ CỐ #{loa.id}")
        assert {m["Phone"] for m in sms.received()} == {"84912345678"}
        assert all(ucs2_units(text) <= SHORT_LIMIT for text in texts)
        assert http.to("/hook/la-hien")[0]["alert_id"] == lahien.id
        received = [*texts, *chat(), *hook(), message.get_content(), str(message["Subject"])]
        for text in received:
            words = text.replace(LOA, "").replace(LAHIEN, "").replace("tincoso alerts ack", "")
            words = re.sub(r"https?://\S+", "", words)
            assert not RAW.search(words), (RAW.search(words), text)

        # The technician replies "ok" to the alert message in Telegram; the operator acks La Hiên.
        bot.reply(CHAT, "ok", to=first)
        code, _ = await _cli(
            "alerts", "ack", lahien.id.lower(), "--config", str(cli_config), "--by", "Lường Văn Cường"
        )
        assert code == 0
        await _until(lambda: loa.acked and lahien.acked)
        await _until(lambda: any(t.startswith("Đã ghi nhận: Hoàng Thị Bích") for t in chat()))
        seen_chat, seen_hook = _reminders(chat()), _reminders(hook())
        await asyncio.sleep(3 * REMIND_S)  # reminders would have gone out by now
        assert (_reminders(chat()), _reminders(hook())) == (seen_chat, seen_hook)
        assert (loa.acked_by, loa.acked_via) == ("Hoàng Thị Bích", "telegram")
        assert (lahien.acked_by, lahien.acked_via) == ("Lường Văn Cường", "cli")

        # A stranger's reply does not acknowledge anything.
        bot.reply(424242, f"ok {loa.id}")
        await _until(lambda: bot.messages_to(424242))
        assert "không phải kỹ thuật viên" in bot.messages_to(424242)[0]["text"]
    finally:
        for agent in agents:
            agent.close()
        stop.set()
        await task

    capsys.readouterr()
    code, _ = await _cli("status", "--config", str(cli_config))
    out = capsys.readouterr().out
    assert code == 0
    assert "Đã nhận xử lý: Hoàng Thị Bích" in next(line for line in out.splitlines() if LOA in line)
    assert "Đã nhận xử lý: Lường Văn Cường" in next(line for line in out.splitlines() if LAHIEN in line)
    code, _ = await _cli("alerts", "--config", str(cli_config), "--commune", "Xóm Trung Thành")
    out = capsys.readouterr().out
    assert f"#{loa.id}" in out
    assert LAHIEN not in out
    assert main(["alerts", "ack", "ZZZZZ", "--config", str(cli_config)]) == 1
    assert "no open alert #ZZZZZ" in capsys.readouterr().err
