"""Alerts end to end: real Mosquitto, real InfluxDB, a real SMTP server and an HTTP receiver."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.config import MqttSettings
from backend.influx import InfluxClient, rows
from backend.localservices import LocalMosquitto
from backend.maintenance import MaintenanceStore
from backend.monitor.clock import Clock, ManualClock, SystemClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.rules import RulesConfig
from backend.monitor.service import Monitor, run_monitor
from backend.registry import Registry, parse_registry
from protocols import payloads, topics
from tests.alert_receivers import HttpReceiver, SmtpInbox, receivers
from tests.monitor_support import ScriptedDevice, local_ts
from tests.services_fixtures import InfluxDatabase

LOA = "vn-trangxa-loa-01"
LAHIEN = "vn-lahien-loa-01"


def _registry(hooks: str) -> Registry:
    return parse_registry(f"""\
district: Võ Nhai
communes:
  - id: trang-xa
    name: Tràng Xá
    radio_system: ip
    schedule: [{{name: Bản tin chiều, start: "17:00", end: "18:00"}}]
    technicians:
      - name: Hoàng Thị Bích
        email: ktv.trangxa@example.invalid
        webhook: {hooks}/hook/trang-xa
  - id: la-hien
    name: La Hiên
    radio_system: ip
    schedule: [{{name: Bản tin chiều, start: "17:00", end: "18:00"}}]
    technicians:
      - name: Lường Văn Cường
        webhook: {hooks}/hook/la-hien
devices:
  - {{id: {LOA}, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm Trung Thành}}
  - {{id: vn-trangxa-loa-02, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm Cây Thị}}
  - {{id: {LAHIEN}, kind: speaker_cluster, commune: la-hien, hamlet: Xóm Cậy}}
""")


@pytest.fixture
def alert_receivers() -> Iterator[tuple[SmtpInbox, HttpReceiver]]:
    yield from receivers()


@pytest.fixture
def broker(fresh_mosquitto: Callable[..., LocalMosquitto]) -> LocalMosquitto:
    # A broker of its own: retained births and deaths must not leak between tests.
    return fresh_mosquitto()


@pytest.fixture
async def influx(influx_db: InfluxDatabase) -> AsyncIterator[InfluxClient]:
    async with InfluxClient(influx_db.base_url, influx_db.name) as client:
        yield client


def _config(broker: LocalMosquitto, tmp_path: Path, smtp_port: int, **alerts: Any) -> MonitorConfig:
    return MonitorConfig(
        mqtt=MqttSettings(url=broker.url, client_id="unused-ingest-id"),
        monitor=MonitorSettings(
            client_id="tincoso-monitor-test",
            state_dir=str(tmp_path / "state"),
            tick_s=0.1,
            stats_interval_s=0.5,
        ),
        rules=RulesConfig.from_dict({}),
        alerts=AlertSettings(
            smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_starttls=False, backoff_s=0.2, **alerts
        ),
    )


class Agent:
    """A device's MQTT session as the agent runs it: retained birth, Last Will death."""

    def __init__(self, broker: LocalMosquitto, dev: ScriptedDevice) -> None:
        self.dev = dev
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{dev.device}-{dev.bdseq}")
        death = payloads.encode(dev.death())
        self.client.will_set(topics.state_topic(dev.device), death, qos=1, retain=True)
        self.client.connect("127.0.0.1", broker.port, keepalive=5)
        self.client.loop_start()
        self.publish(dev.birth(), retain=True)

    def publish(self, msg: dict[str, Any], *, retain: bool = False) -> None:
        self.client.publish(
            topics.topic_for(msg), payloads.encode(msg), qos=1, retain=retain
        ).wait_for_publish(5)

    def power_cut(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the Last Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _until(check: Callable[[], Any], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 - the condition lives in other threads and objects
            await asyncio.sleep(0.05)


async def _start(
    config: MonitorConfig, registry: Registry, influx: InfluxClient, clock: Clock
) -> tuple[Monitor, asyncio.Event, asyncio.Task[None]]:
    monitor = Monitor(config, registry, influx, clock=clock)
    stop = asyncio.Event()
    return monitor, stop, asyncio.create_task(monitor.run(stop))


async def test_power_cut_sends_one_offline_email_and_webhook_then_one_recovery(
    broker: LocalMosquitto,
    influx: InfluxClient,
    alert_receivers: tuple[SmtpInbox, HttpReceiver],
    tmp_path: Path,
) -> None:
    inbox, http = alert_receivers
    registry = _registry(http.url)
    monitor, stop, task = await _start(_config(broker, tmp_path, inbox.port), registry, influx, SystemClock())
    dev = ScriptedDevice(LOA, SystemClock(), heartbeat_s=1)
    agent = Agent(broker, dev)
    try:
        await _until(lambda: monitor.fleet.get(LOA).online is True)
        for _ in range(3):
            agent.publish(dev.heartbeat())
            await asyncio.sleep(0.3)
        agent.power_cut()
        await _until(lambda: inbox.messages and http.to("/hook/trang-xa"))
        dev.reboot()  # power is back: a new boot (the same boot would refine the cause to the link)
        agent = Agent(broker, dev)
        agent.publish(dev.heartbeat())
        await _until(lambda: len(inbox.messages) >= 2 and len(http.to("/hook/trang-xa")) >= 2)
        await asyncio.sleep(0.5)  # anything extra would show up now
    finally:
        agent.close()
        stop.set()
        await task
    subjects = [m["Subject"] for m in inbox.messages]
    assert len(subjects) == 2, subjects
    assert subjects[0].startswith("[tincoso] SỰ CỐ: Mất kết nối - Tràng Xá, Xóm Trung Thành")
    assert subjects[1].startswith("[tincoso] ĐÃ KHẮC PHỤC: Mất kết nối")
    assert inbox.messages[0]["To"] == "ktv.trangxa@example.invalid"
    assert [(b["event"], b["fault"]) for b in http.to("/hook/trang-xa")] == [
        ("open", "offline"),
        ("recovery", "offline"),
    ]
    assert http.to("/hook/la-hien") == []

    states = rows(await influx.query(f"SELECT online, reason FROM state WHERE device = '{LOA}'"))
    assert [(r["online"], r["reason"]) for r in states] == [
        (True, "first_seen"),
        (False, "lwt"),
        (True, "birth"),
    ] or [(r["online"], r["reason"]) for r in states] == [(True, "birth"), (False, "lwt"), (True, "birth")]
    [down] = rows(await influx.query(f"SELECT * FROM down_interval WHERE device = '{LOA}'"))
    assert down["commune"] == "trang-xa"
    assert down["duration_s"] > 0
    alerts = rows(await influx.query("SELECT * FROM alert"))
    assert [(a["fault"], a["status"]) for a in alerts] == [("offline", "open"), ("offline", "closed")]
    deliveries = rows(await influx.query("SELECT * FROM alert_delivery WHERE outcome = 'sent'"))
    assert sorted(d["channel"] for d in deliveries) == ["email", "email", "webhook", "webhook"]


async def test_dead_air_in_evening_bulletin_alerts_and_outside_it_does_not(
    broker: LocalMosquitto,
    influx: InfluxClient,
    alert_receivers: tuple[SmtpInbox, HttpReceiver],
    tmp_path: Path,
) -> None:
    inbox, http = alert_receivers
    clock = ManualClock(local_ts(14, 0))
    monitor, stop, task = await _start(
        _config(broker, tmp_path, inbox.port), _registry(http.url), influx, clock
    )
    dev = ScriptedDevice(LOA, clock, heartbeat_s=86400)  # the clock jumps hours
    agent = Agent(broker, dev)
    try:
        await _until(lambda: monitor.fleet.get(LOA).online is True)
        agent.publish(dev.audio(dead_air=True, dead_air_s=30, playing=False))
        await _until(lambda: monitor.fleet.get(LOA).audio is not None)
        await asyncio.sleep(0.5)
        assert inbox.messages == []
        assert monitor.store.open == {}
        agent.publish(dev.audio())
        await _until(lambda: not monitor.fleet.get(LOA).audio["dead_air"])  # type: ignore[index]
        clock.set(local_ts(17, 12))
        agent.publish(dev.audio(dead_air=True, dead_air_s=30, playing=False))
        await _until(lambda: inbox.messages)
    finally:
        agent.close()
        stop.set()
        await task
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    [message] = inbox.messages
    assert message["Subject"].startswith("[tincoso] SỰ CỐ: Mất tiếng trong giờ phát bản tin - Tràng Xá")
    body = message.get_content()
    assert "Từ lúc: 17:12 26/11/2025" in body


async def test_maintenance_window_mutes_the_device(
    broker: LocalMosquitto,
    influx: InfluxClient,
    alert_receivers: tuple[SmtpInbox, HttpReceiver],
    tmp_path: Path,
) -> None:
    inbox, http = alert_receivers
    clock = ManualClock(local_ts(17, 5))
    config = _config(broker, tmp_path, inbox.port)
    MaintenanceStore(tmp_path / "state" / "maintenance.json").add(
        "device", LOA, clock.now() - 60, clock.now() + 3600, "thay loa"
    )
    monitor, stop, task = await _start(config, _registry(http.url), influx, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=86400)  # the clock jumps hours
    agent = Agent(broker, dev)
    try:
        await _until(lambda: monitor.fleet.get(LOA).online is True)
        agent.publish(dev.audio(dead_air=True, playing=False))
        await _until(lambda: monitor.store.open)
        await asyncio.sleep(0.5)
    finally:
        agent.close()
        stop.set()
        await task
    assert inbox.messages == []
    assert http.requests == []
    [alert] = rows(await influx.query("SELECT * FROM alert"))
    assert (alert["fault"], alert["muted"]) == ("dead_air", True)


async def test_failing_webhook_is_retried_and_does_not_block_other_alerts(
    broker: LocalMosquitto,
    influx: InfluxClient,
    alert_receivers: tuple[SmtpInbox, HttpReceiver],
    tmp_path: Path,
) -> None:
    inbox, http = alert_receivers
    http.failures["/hook/la-hien"] = 2
    http.delay_s["/hook/la-hien"] = 1.0
    clock = ManualClock(local_ts(17, 5))
    config = _config(broker, tmp_path, inbox.port, workers=2)
    stop = asyncio.Event()
    task = asyncio.create_task(run_monitor(config, _registry(http.url), influx, stop, clock=clock))
    lahien = ScriptedDevice(LAHIEN, clock)
    trangxa = ScriptedDevice(LOA, clock)
    agents = [Agent(broker, lahien), Agent(broker, trangxa)]
    try:
        await asyncio.sleep(0.3)
        agents[0].publish(lahien.audio(dead_air=True, playing=False))
        await asyncio.sleep(0.2)
        agents[1].publish(trangxa.audio(dead_air=True, playing=False))
        await _until(lambda: http.to("/hook/trang-xa") and inbox.messages)
        assert http.to("/hook/la-hien") == []  # still failing slowly, yet Tràng Xá was served
        await _until(lambda: http.to("/hook/la-hien"), seconds=15)
    finally:
        for agent in agents:
            agent.close()
        stop.set()
        await task
    assert len(http.to("/hook/la-hien", status=500)) == 2
    outcomes = rows(await influx.query("SELECT * FROM alert_delivery WHERE commune = 'la-hien'"))
    # The injected clock stands still, so order by attempt, not by time.
    assert sorted((o["attempt"], o["outcome"]) for o in outcomes) == [(1, "retry"), (2, "retry"), (3, "sent")]
