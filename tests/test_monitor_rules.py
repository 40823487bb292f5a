"""Fault rules through the monitor with an injected clock and a recording channel (no I/O)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from backend.config import MqttSettings
from backend.maintenance import MaintenanceStore
from backend.monitor.clock import ManualClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.rules import RuleError, RulesConfig
from backend.monitor.service import Monitor
from backend.registry import load_registry
from tests.monitor_support import RecordingChannel, ScriptedDevice, local_ts, wire
from tests.test_registry import EXAMPLE

REGISTRY = load_registry(EXAMPLE)
LOA = "vn-trangxa-loa-01"


def _monitor(
    tmp_path: Path, clock: ManualClock, rules: dict[str, Any] | None = None
) -> tuple[Monitor, RecordingChannel]:
    config = MonitorConfig(
        mqtt=MqttSettings(client_id="test"),
        monitor=MonitorSettings(client_id="test-monitor", state_dir=str(tmp_path / "state"), gap_grace_s=5),
        rules=RulesConfig.from_dict(rules or {}),
        alerts=AlertSettings(attempts=3, backoff_s=0.01),
    )
    channel = RecordingChannel()
    return Monitor(config, REGISTRY, None, clock=clock, channels={"email": channel}), channel


def _send(monitor: Monitor, msg: dict[str, Any]) -> None:
    topic, payload = wire(msg)
    monitor.handle(topic, payload)


async def _delivered(monitor: Monitor, channel: RecordingChannel) -> list[tuple[str, str]]:
    monitor.dispatcher.start()
    async with asyncio.timeout(5):
        await monitor.dispatcher.wait_idle()
    await monitor.dispatcher.aclose()
    return [(notice.event, notice.fault) for _, notice in channel.sent]


async def test_dead_air_during_evening_bulletin_alerts_commune_technician(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 10))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.audio(dead_air=True, dead_air_s=20, playing=False))
    clock.advance(10)
    _send(monitor, dev.audio(dead_air=True, dead_air_s=30, playing=False))  # still silent: no second alert
    clock.advance(10)
    _send(monitor, dev.audio())
    assert await _delivered(monitor, channel) == [("open", "dead_air"), ("recovery", "dead_air")]
    technician, notice = channel.sent[0]
    assert technician.email == "ktv.trangxa@example.invalid"
    assert "Tràng Xá" in notice.text
    assert "Xóm Trung Thành" in notice.text
    assert "17:10 26/11/2025" in notice.text
    assert "Bản tin chiều 17:00–18:00" in notice.text


async def test_dead_air_notice_says_how_long_it_has_been_silent_not_the_last_windows_quiet_seconds(
    tmp_path: Path,
) -> None:
    """As in the demo: the stream stalls near the end of a 2 s report window (1 s quiet), and
    the agent's dead-air event follows 5 s later, before its next reading. The notice says
    about 6 s of silence, not "1 s"."""
    clock = ManualClock(local_ts(17, 10))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.audio(window_s=2))
    clock.advance(2)
    _send(monitor, dev.audio(window_s=2, dead_air_s=1))  # sound, then the stall
    clock.advance(2)
    _send(monitor, dev.audio(window_s=2, dead_air_s=2, rms_dbfs=-80.0, playing=False))
    clock.advance(3)
    _send(monitor, dev.event("fault_start", "dead_air"))
    assert await _delivered(monitor, channel) == [("open", "dead_air")]
    assert "im lặng 6 giây trong Bản tin chiều 17:00–18:00" in channel.sent[0][1].text


async def test_silence_before_the_bulletin_does_not_alert_as_it_starts_but_a_silent_bulletin_does(
    tmp_path: Path,
) -> None:
    clock = ManualClock(local_ts(16, 59))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.audio(dead_air=True, dead_air_s=600, playing=False))  # quiet afternoon
    clock.advance(70)  # 17:00:10, bulletin on, the agent has not yet cleared its dead air
    monitor.tick()
    assert monitor.store.open == {}
    clock.advance(25)  # 17:00:35: past the grace, still silent -> the bulletin is not sounding
    monitor.tick()
    assert await _delivered(monitor, channel) == [("open", "dead_air")]


async def test_same_silence_outside_the_bulletin_does_not_alert(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(14, 0))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.audio(dead_air=True, dead_air_s=600, playing=False))
    clock.advance(60)
    monitor.tick()
    assert await _delivered(monitor, channel) == []


async def test_amp_idle_needs_its_for_delay_and_honours_the_threshold(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 5))
    monitor, channel = _monitor(tmp_path, clock, {"amp_idle": {"for_s": 30, "threshold": 5}})
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.audio(amp_power_w=6.0))
    _send(monitor, dev.audio(amp_power_w=1.2))
    clock.advance(29)
    monitor.tick()
    assert monitor.store.open == {}
    clock.advance(1)
    monitor.tick()
    assert list(monitor.store.open) == [(LOA, "amp_idle")]
    notices = await _delivered(monitor, channel)
    assert notices == [("open", "amp_idle")]
    assert "Kiểm tra nguồn và cầu chì bộ khuếch đại, dây loa" in channel.sent[0][1].text


async def test_amp_idle_event_from_the_agent_opens_and_clears(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 5))
    monitor, channel = _monitor(tmp_path, clock, {"amp_idle": {"for_s": 0}})
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.event("fault_start", "amp_idle"))
    _send(monitor, dev.event("fault_end", "amp_idle"))
    assert await _delivered(monitor, channel) == [("open", "amp_idle"), ("recovery", "amp_idle")]


async def test_board_dark_only_within_operating_hours(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(23, 0))
    monitor, _ = _monitor(tmp_path, clock, {"board_dark": {"for_s": 60}})
    board = ScriptedDevice("vn-trangxa-bangtin-01", clock, kind="eboard")
    _send(monitor, board.birth())
    _send(monitor, board.display(power=False))
    clock.advance(3600)
    monitor.tick()
    assert monitor.store.open == {}
    clock.set(local_ts(6, 0))
    _send(monitor, board.heartbeat())
    clock.advance(61)
    monitor.tick()
    assert list(monitor.store.open) == [("vn-trangxa-bangtin-01", "board_dark")]


def test_district_led_source_sync_stale_and_per_kind_override(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(12, 0))
    rules = {"overheating": {"threshold": 75, "district_led": {"threshold": 60, "for_s": 0}}}
    monitor, _ = _monitor(tmp_path, clock, rules)
    led = ScriptedDevice("vn-huyen-led-01", clock, kind="district_led")
    _send(monitor, led.birth())
    _send(monitor, led.display(source_sync_age_s=7200, temp_c=65.0))
    assert set(monitor.store.open) == {
        ("vn-huyen-led-01", "source_sync_stale"),
        ("vn-huyen-led-01", "overheating"),
    }


def test_reboot_loop_and_sustained_data_loss(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(12, 0))
    monitor, _ = _monitor(tmp_path, clock, {"data_loss": {"count": 10, "window_s": 600}})
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    for _ in range(3):
        clock.advance(60)
        dev.reboot()
        _send(monitor, dev.birth())
    assert (LOA, "reboot_loop") in monitor.store.open
    dev.seq += 30  # 30 messages lost
    _send(monitor, dev.heartbeat())
    clock.advance(5)
    monitor.tick()
    assert (LOA, "data_loss") in monitor.store.open


def test_weak_signal_and_readonly_storage(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(12, 0))
    monitor, _ = _monitor(tmp_path, clock, {"weak_signal": {"for_s": 300}})
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat(signal_dbm=-112, disk_ro=True))
    assert set(monitor.store.open) == {(LOA, "storage_readonly")}
    clock.advance(300)
    monitor.tick()
    assert (LOA, "weak_signal") in monitor.store.open


async def test_restart_keeps_open_alerts_without_resending_and_still_recovers(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 10))
    first, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock)
    _send(first, dev.birth())
    _send(first, dev.audio(dead_air=True, playing=False))
    assert await _delivered(first, channel) == [("open", "dead_air")]
    second, channel2 = _monitor(tmp_path, clock)
    _send(second, dev.heartbeat())  # no audio yet: the alert stays open
    _send(second, dev.audio(dead_air=True, playing=False))
    assert list(second.store.open) == [(LOA, "dead_air")]
    _send(second, dev.audio())
    assert await _delivered(second, channel2) == [("recovery", "dead_air")]


async def test_maintenance_mutes_then_sends_when_it_ends(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 10))
    monitor, channel = _monitor(tmp_path, clock)
    store = MaintenanceStore(tmp_path / "state" / "maintenance.json")
    store.add("commune", "trang-xa", clock.now() - 60, clock.now() + 600, "thay bộ khuếch đại")
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.audio(dead_air=True, playing=False))
    monitor.tick()
    assert list(monitor.store.open) == [(LOA, "dead_air")]
    assert await _delivered(monitor, channel) == []
    clock.advance(601)
    _send(monitor, dev.heartbeat())  # later in the bulletin, still silent
    monitor.tick()
    assert await _delivered(monitor, channel) == [("open", "dead_air")]


async def test_reminder_every_n_seconds(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(12, 0))
    monitor, channel = _monitor(tmp_path, clock)
    monitor.alerts.remind_s = 600
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat(disk_ro=True))
    clock.advance(599)
    monitor.tick()
    clock.advance(1)
    monitor.tick()
    monitor.tick()
    assert await _delivered(monitor, channel) == [
        ("open", "storage_readonly"),
        ("reminder", "storage_readonly"),
    ]


def test_invalid_messages_are_counted_not_raised(tmp_path: Path) -> None:
    monitor, _ = _monitor(tmp_path, ManualClock(local_ts(12, 0)))
    monitor.handle("tincoso/v1/vn-trangxa-loa-01/telemetry/audio", b"{not json")
    monitor.handle("tincoso/v1/BAD/state", b"{}")
    monitor.handle("tincoso/v1/vn-trangxa-loa-02/event", wire(ScriptedDevice(LOA, ManualClock(0)).birth())[1])
    assert monitor.counts["invalid"] == 3


def test_rule_config_errors_name_the_setting() -> None:
    with pytest.raises(RuleError, match=r"rules\.amp_idl is not a rule"):
        RulesConfig.from_dict({"amp_idl": {}})
    with pytest.raises(RuleError, match=r"rules\.amp_idle\.eboard\.for is not a rule setting"):
        RulesConfig.from_dict({"amp_idle": {"eboard": {"for": 3}}})
    with pytest.raises(RuleError, match=r"rules\.offline\.for_s must be float"):
        RulesConfig.from_dict({"offline": {"for_s": "soon"}})
