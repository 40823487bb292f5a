"""An alert closes as fixed only when a measurement shows the fault gone (issue 14, item 4).

When the window in which a fault can be seen ends (bulletin over, board hours over, device
offline) the technician is told the fault is unconfirmed; the same alert stays open and is
re-checked at the next chance. Monitor with an injected clock and a recording channel.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from backend.config import MqttSettings
from backend.monitor.clock import ManualClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.rules import RulesConfig
from backend.monitor.service import Monitor
from backend.registry import load_registry
from tests.monitor_support import RecordingChannel, ScriptedDevice, local_ts, wire
from tests.test_registry import EXAMPLE

REGISTRY = load_registry(EXAMPLE)
LOA = "vn-trangxa-loa-01"
DAY_S = 86_400


def _monitor(
    tmp_path: Path, clock: ManualClock, rules: RulesConfig | None = None
) -> tuple[Monitor, RecordingChannel]:
    config = MonitorConfig(
        mqtt=MqttSettings(client_id="test"),
        monitor=MonitorSettings(client_id="test-monitor", state_dir=str(tmp_path / "state"), gap_grace_s=5),
        rules=rules or RulesConfig.from_dict({"amp_idle": {"for_s": 30}}),
        alerts=AlertSettings(attempts=3, backoff_s=0.01),
    )
    channel = RecordingChannel()
    return Monitor(config, REGISTRY, None, clock=clock, channels={"email": channel}), channel


def _send(monitor: Monitor, msg: dict[str, Any]) -> None:
    topic, payload = wire(msg)
    monitor.handle(topic, payload)


async def _delivered(monitor: Monitor, channel: RecordingChannel) -> list[tuple[str, str]]:
    monitor.dispatcher.start()
    async with asyncio.timeout(10):
        await monitor.dispatcher.wait_idle()
    await monitor.dispatcher.aclose()
    return [(notice.event, notice.fault) for _, notice in channel.sent]


def _minutes_of(
    monitor: Monitor, dev: ScriptedDevice, clock: ManualClock, minutes: int, **audio: Any
) -> None:
    for _ in range(minutes):
        clock.advance(60)
        _send(monitor, dev.heartbeat())
        _send(monitor, dev.audio(**audio))
        monitor.tick()


async def test_dead_amplifier_stays_open_unconfirmed_between_bulletins_until_repaired(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 5))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    # Evening bulletin: audio on the line, the amplifier draws nothing.
    _minutes_of(monitor, dev, clock, 2, amp_power_w=0.4)
    assert list(monitor.store.open) == [(LOA, "amp_idle")]
    opened = monitor.store.open[(LOA, "amp_idle")]

    # The bulletin ends without a repair: the line goes quiet, nothing was fixed.
    clock.set(local_ts(18, 2))
    _minutes_of(monitor, dev, clock, 3, playing=False, rms_dbfs=-90.0, amp_power_w=0.4)
    assert monitor.store.open[(LOA, "amp_idle")] is opened
    assert monitor.rules.unconfirmed_faults() == {(LOA, "amp_idle")}

    # Next morning's bulletin, still dead: the same alert, no new storm of notices.
    clock.set(local_ts(5, 35) + DAY_S)
    _minutes_of(monitor, dev, clock, 3, amp_power_w=0.4)
    assert monitor.store.open[(LOA, "amp_idle")] is opened
    assert monitor.rules.unconfirmed_faults() == set()

    # Repaired: the amplifier draws power while audio plays.
    _minutes_of(monitor, dev, clock, 1, amp_power_w=62.0)
    assert monitor.store.open == {}
    notices = await _delivered(monitor, channel)
    assert notices == [("open", "amp_idle"), ("unconfirmed", "amp_idle"), ("recovery", "amp_idle")]
    unconfirmed = channel.sent[1][1]
    assert "CHƯA XÁC NHẬN" in unconfirmed.text
    assert "ĐÃ KHẮC PHỤC" not in unconfirmed.text
    assert "kiểm tra lại" in unconfirmed.text


async def test_quiet_bulletin_is_dead_air_at_the_configured_threshold_only(tmp_path: Path) -> None:
    """A bulletin playing at -48 dBFS sounded at the default -50 threshold, not at -45."""
    for threshold, expected in ((-50.0, set()), (-45.0, {(LOA, "dead_air")})):
        clock = ManualClock(local_ts(17, 5))
        rules = RulesConfig(sound_threshold_dbfs=threshold)
        monitor, _ = _monitor(tmp_path / str(threshold), clock, rules)
        dev = ScriptedDevice(LOA, clock)
        _send(monitor, dev.birth())
        _minutes_of(monitor, dev, clock, 2, rms_dbfs=-48.0)
        assert set(monitor.store.open) == expected, threshold


async def test_dead_air_alert_is_not_closed_by_the_end_of_the_bulletin(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 10))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock)
    _send(monitor, dev.birth())
    _send(monitor, dev.audio(dead_air=True, dead_air_s=20, playing=False, rms_dbfs=-90.0))
    clock.set(local_ts(18, 1))
    _send(monitor, dev.heartbeat())
    monitor.tick()
    assert list(monitor.store.open) == [(LOA, "dead_air")]
    assert await _delivered(monitor, channel) == [("open", "dead_air"), ("unconfirmed", "dead_air")]


def test_the_threshold_is_set_once_in_backend_toml_and_reaches_monitor_and_rollups() -> None:
    import pytest

    from backend.config import ConfigError, config_from_dict

    config = config_from_dict({"definitions": {"sound_threshold_dbfs": -45}})
    assert MonitorConfig.from_backend(config).rules.sound_threshold_dbfs == -45.0
    retention = config.retention()
    assert retention is not None
    assert retention.sound_threshold_dbfs == -45.0
    with pytest.raises(ConfigError, match=r"definitions\.sound_threshold_dbfs must be between -120 and 0"):
        config_from_dict({"definitions": {"sound_threshold_dbfs": 3}})
    with pytest.raises(ConfigError, match=r"definitions\.sound_treshold_dbfs is not a known setting"):
        config_from_dict({"definitions": {"sound_treshold_dbfs": -45}})


def test_kpi_report_takes_the_threshold_from_backend_toml_and_refuses_a_second_one() -> None:
    import pytest

    from backend.cli.kpi import with_sound_threshold
    from backend.kpi.definitions import Definitions, DefinitionsError

    assert with_sound_threshold(Definitions(), -45.0).dead_air_threshold_dbfs == -45.0
    assert with_sound_threshold(Definitions(cluster_bulletins_pct=95), None).cluster_bulletins_pct == 95
    with pytest.raises(DefinitionsError, match=r"set it once, in backend\.toml"):
        with_sound_threshold(Definitions(dead_air_threshold_dbfs=-40.0), -45.0)
