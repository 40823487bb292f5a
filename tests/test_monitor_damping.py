"""Shipped defaults against false notices: flap damping, reboot loops, the server's own outages.

Every test here runs the monitor with the code's default rule settings (no ``[rules]``), a
scripted device on a 60 s heartbeat and the injected clock; each has a twin with the
damping or the infrastructure check switched off that shows the notice storm it prevents.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from backend.config import MqttSettings
from backend.monitor.clock import ManualClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.outages import EPISODES_FILE
from backend.monitor.rules import RulesConfig
from backend.monitor.service import Monitor
from backend.registry import load_registry
from tests.monitor_support import RecordingChannel, ScriptedDevice, local_ts, wire
from tests.test_registry import EXAMPLE

REGISTRY = load_registry(EXAMPLE)
LOA = "vn-trangxa-loa-01"
LOA2 = "vn-trangxa-loa-02"
HEARTBEAT_S = 60.0


def _monitor(
    tmp_path: Path, clock: ManualClock, rules: dict[str, Any] | None = None, *, hold: bool = True
) -> tuple[Monitor, RecordingChannel]:
    config = MonitorConfig(
        mqtt=MqttSettings(client_id="test"),
        monitor=MonitorSettings(
            client_id="test-monitor", state_dir=str(tmp_path / "state"), hold_on_broker_loss=hold
        ),
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


def _flap(monitor: Monitor, dev: ScriptedDevice, clock: ManualClock, down_s: float) -> None:
    """The link drops (the broker publishes the Will) and the agent is back ``down_s`` later."""
    _send(monitor, dev.death())
    clock.advance(down_s)
    monitor.tick()
    dev.bdseq += 1
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat())
    clock.advance(30)
    monitor.tick()


def _ten_flaps_then_a_long_drop(tmp_path: Path, rules: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    clock = ManualClock(local_ts(14, 0))
    monitor, channel = _monitor(tmp_path, clock, rules)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    for _ in range(9):
        _flap(monitor, dev, clock, down_s=45)
    _flap(monitor, dev, clock, down_s=20 * 60)
    return asyncio.run(_delivered(monitor, channel))


def test_flapping_link_gets_one_flapping_notice_and_one_offline_pair_with_defaults(tmp_path: Path) -> None:
    notices = _ten_flaps_then_a_long_drop(tmp_path)
    # The last drop's cause is refined once it is back on the same boot: the link, not the device.
    assert notices == [
        ("open", "link_flapping"),
        ("open", "offline"),
        ("recovery", "offline"),
        ("update", "offline"),
    ]


def test_without_damping_the_same_link_sends_a_pair_per_drop(tmp_path: Path) -> None:
    notices = _ten_flaps_then_a_long_drop(tmp_path, {"offline": {"grace_heartbeats": 0}})
    assert notices.count(("open", "offline")) == 10
    assert notices.count(("recovery", "offline")) == 10


def test_flapping_notice_names_the_count_in_vietnamese(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(14, 0))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    for _ in range(5):
        _flap(monitor, dev, clock, down_s=10)
    assert asyncio.run(_delivered(monitor, channel)) == [("open", "link_flapping")]
    text = channel.sent[0][1].text
    assert "Kết nối chập chờn" in text
    assert "mất kết nối ngắn 5 lần trong 1 giờ 00 phút" in text


def test_drop_longer_than_the_grace_alerts_from_when_the_device_was_last_heard(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(14, 0))
    monitor, _ = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    heard = clock.now()
    _send(monitor, dev.death())
    clock.advance(5 * HEARTBEAT_S - 1)
    monitor.tick()
    assert monitor.store.open == {}
    clock.advance(1)
    monitor.tick()
    assert monitor.store.open[(LOA, "offline")].since == heard


def _stalled_monitor(tmp_path: Path, *, guard: bool) -> list[tuple[str, str]]:
    """The monitor's loop is blocked (or its machine starved) for six minutes while the
    device keeps reporting: its heartbeats wait in the socket. The first tick after the stall
    runs before they are handled; it reports how late it is unless ``guard`` is off."""
    clock = ManualClock(local_ts(14, 0))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    monitor.tick()
    stall_s = 6 * 60.0
    clock.advance(stall_s)
    monitor.tick(late_s=stall_s if guard else 0.0)
    _send(monitor, dev.heartbeat())  # the queued messages, handled after the tick
    clock.advance(2)
    monitor.tick()
    assert monitor.counts["stalls"] == (1 if guard else 0)
    return asyncio.run(_delivered(monitor, channel))


def test_a_monitor_stall_is_not_a_device_outage(tmp_path: Path) -> None:
    assert _stalled_monitor(tmp_path, guard=True) == []


def test_an_always_late_monitor_still_judges_silence_one_tick_behind(tmp_path: Path) -> None:
    """Overloaded, every tick is late: the guard skips one, never two in a row."""
    clock = ManualClock(local_ts(14, 0))
    monitor, _ = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    _send(monitor, dev.death())
    clock.advance(6 * 60)
    monitor.tick(late_s=5)
    assert monitor.store.open == {}
    monitor.tick(late_s=5)
    assert (LOA, "offline") in monitor.store.open
    assert monitor.counts["stalls"] == 1


def test_without_the_stall_guard_the_monitor_blames_the_device_for_its_own_pause(tmp_path: Path) -> None:
    assert _stalled_monitor(tmp_path, guard=False) == [("open", "offline"), ("recovery", "offline")]


def test_reboot_loop_gets_its_notice_without_offline_pairs_or_flapping(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(14, 0))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    for _ in range(6):
        _send(monitor, dev.death())
        clock.advance(90)  # the controller reboots: a minute and a half
        monitor.tick()
        dev.reboot()
        _send(monitor, dev.birth())
        _send(monitor, dev.heartbeat(reboot_reason="watchdog"))
        clock.advance(120)
        monitor.tick()
    assert asyncio.run(_delivered(monitor, channel)) == [("open", "reboot_loop")]


def _broker_restart(tmp_path: Path, *, hold: bool) -> tuple[Monitor, RecordingChannel, ManualClock]:
    """Two clusters; the broker goes away for 4 minutes (publishing both Wills as it shuts
    down), comes back; one agent is back at once, the other 2 minutes later."""
    clock = ManualClock(local_ts(14, 0))
    monitor, channel = _monitor(tmp_path, clock, hold=hold)
    devs = [ScriptedDevice(d, clock, heartbeat_s=HEARTBEAT_S) for d in (LOA, LOA2)]
    monitor.server.connecting()
    monitor.server.regained(clock.now())
    for dev in devs:
        _send(monitor, dev.birth())
    clock.advance(30)
    for dev in devs:
        _send(monitor, dev.death())
    monitor.server.lost(clock.now())
    for _ in range(8):
        clock.advance(30)
        monitor.tick()
    monitor.server.regained(clock.now())
    for dev in devs:
        dev.bdseq += 1
    _send(monitor, devs[0].birth())
    for _ in range(4):
        clock.advance(30)
        monitor.tick()
    _send(monitor, devs[1].birth())
    for _ in range(20):
        clock.advance(30)
        for dev in devs:
            _send(monitor, dev.heartbeat())
        monitor.tick()
    return monitor, channel, clock


def test_broker_restart_sends_no_device_notice_and_one_server_notice_to_the_district(tmp_path: Path) -> None:
    monitor, channel, _ = _broker_restart(tmp_path, hold=True)
    assert asyncio.run(_delivered(monitor, channel)) == [("recovery", "server_health")]
    technician, notice = channel.sent[0]
    assert technician.email == "vhtt.vonhai@example.invalid"
    assert "mất kết nối MQTT broker" in notice.subject
    assert "(4 min 00 s)" in notice.text
    assert not monitor.fleet.get(LOA).link_drops
    assert not monitor.fleet.get(LOA2).link_drops


def test_without_the_infrastructure_check_a_broker_restart_alerts_every_device(tmp_path: Path) -> None:
    monitor, channel, _ = _broker_restart(tmp_path, hold=False)
    notices = asyncio.run(_delivered(monitor, channel))
    assert ("open", "offline") in notices
    assert ("recovery", "server_health") not in notices


def test_long_broker_outage_is_told_while_it_lasts_and_after(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(14, 0))
    monitor, channel = _monitor(tmp_path, clock)
    monitor.server.lost(clock.now())
    for _ in range(12):
        clock.advance(30)
        monitor.tick()
    monitor.server.regained(clock.now())
    notices = asyncio.run(_delivered(monitor, channel))
    assert notices == [("open", "server_health"), ("recovery", "server_health")]


def test_device_still_silent_after_the_broker_is_back_alerts_after_its_grace(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(14, 0))
    monitor, _ = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    monitor.server.lost(clock.now())
    clock.advance(600)
    monitor.tick()
    monitor.server.regained(clock.now())
    back = clock.now()
    _send(monitor, dev.death())  # queued in the monitor's session: the broker's own Will
    clock.advance(5 * HEARTBEAT_S - 30)
    monitor.tick()
    assert monitor.store.open == {}
    clock.advance(60)
    monitor.tick()
    assert (LOA, "offline") in monitor.store.open
    assert back - 600 <= monitor.store.open[(LOA, "offline")].since <= back


def _cause_of_drop(tmp_path: Path, **last: Any) -> str:
    clock = ManualClock(local_ts(17, 2))
    monitor, _ = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    audio = last.pop("audio", None)
    for before in last.pop("before", ()):
        _send(monitor, dev.heartbeat(**before))
    _send(monitor, dev.heartbeat(**last))
    if audio is not None:
        _send(monitor, dev.audio(**audio))
    _send(monitor, dev.death())
    clock.advance(6 * HEARTBEAT_S)
    monitor.tick()
    return monitor.store.open[(LOA, "offline")].detail


def test_offline_alert_says_the_likely_cause_and_its_evidence(tmp_path: Path) -> None:
    assert _cause_of_drop(tmp_path / "ups", mains=False).startswith(
        "Nghi mất điện lưới: thiết bị báo mất điện lưới lúc 17:02"
    )
    assert _cause_of_drop(tmp_path / "pzem", audio={"amp_voltage_v": 0.0}).startswith(
        "Nghi mất điện lưới: điện áp nguồn về 0 V lúc 17:02"
    )
    assert _cause_of_drop(tmp_path / "cell", signal_dbm=-112).startswith(
        "Nghi mất sóng di động: sóng yếu -112 dBm lúc 17:02"
    )
    on_4g = ({"net_type": "4g", "signal_dbm": -95},)
    assert _cause_of_drop(tmp_path / "modem", net_type="unknown", signal_dbm=None, before=on_4g).startswith(
        "Nghi mất sóng di động: modem mất đăng ký mạng"
    )
    # A device without a modem reports net_type "unknown" too: that is no evidence.
    assert _cause_of_drop(tmp_path / "lan", net_type="unknown", signal_dbm=None).startswith("Chưa rõ")
    assert _cause_of_drop(tmp_path / "disk", disk_ro=True).startswith("Nghi lỗi thiết bị: bộ nhớ")
    assert _cause_of_drop(tmp_path / "none").startswith("Chưa rõ nguyên nhân")
    assert _cause_of_drop(tmp_path / "none2").endswith("(reason: lwt)")


def _outage_then_return(tmp_path: Path, *, reboot: bool, reason: str, **last: Any) -> list[tuple[str, str]]:
    clock = ManualClock(local_ts(17, 2))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat(**last))
    _send(monitor, dev.death())
    clock.advance(10 * HEARTBEAT_S)
    monitor.tick()
    if reboot:
        dev.reboot()
    else:
        dev.bdseq += 1
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat(reboot_reason=reason))
    _send(monitor, dev.heartbeat(reboot_reason=reason))
    return asyncio.run(_delivered(monitor, channel))


def test_cause_refined_once_when_the_device_returns_without_rebooting(tmp_path: Path) -> None:
    notices = _outage_then_return(tmp_path, reboot=False, reason="clean")
    assert notices == [("open", "offline"), ("recovery", "offline"), ("update", "offline")]


def test_cause_refined_by_the_reboot_reason_and_not_repeated_when_it_agrees(tmp_path: Path) -> None:
    crashed = _outage_then_return(tmp_path / "a", reboot=True, reason="watchdog")
    assert crashed == [("open", "offline"), ("recovery", "offline"), ("update", "offline")]
    grid = _outage_then_return(tmp_path / "b", reboot=True, reason="power_loss", mains=False)
    assert grid == [("open", "offline"), ("recovery", "offline")]


def test_ups_outage_says_when_the_mains_went_and_how_long_the_battery_lasted(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 2))
    monitor, _ = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat(mains=True))
    clock.advance(10)
    _send(monitor, dev.heartbeat(mains=False))  # the dying gasp
    _send(monitor, dev.audio(amp_voltage_v=0.0))
    clock.advance(40)
    _send(monitor, dev.heartbeat(mains=False))
    _send(monitor, dev.death())
    clock.advance(6 * HEARTBEAT_S)
    monitor.tick()
    detail = monitor.store.open[(LOA, "offline")].detail
    assert detail.startswith(
        "Nghi mất điện lưới: điện áp nguồn về 0 V lúc 17:02, thiết bị chạy pin dự phòng 40 s rồi tắt"
    ), detail


def test_cellular_outage_confirmed_by_the_replayed_queue_without_a_second_notice(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 2))
    monitor, channel = _monitor(tmp_path, clock)
    points: list[tuple[str, dict[str, Any], dict[str, Any], float]] = []
    monitor.causes.points.add = lambda m, tags, fields, at, **_: points.append(
        (m, dict(tags), dict(fields), at)
    )  # type: ignore[method-assign]
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat(net_type="4g", signal_dbm=-111))
    _send(monitor, dev.death())
    queued = []
    for _ in range(10):
        clock.advance(HEARTBEAT_S)
        queued.append(dev.heartbeat(net_type="unknown", signal_dbm=None))
    clock.advance(5)
    monitor.tick()
    dev.bdseq += 1
    _send(monitor, dev.birth())
    for msg in queued:
        _send(monitor, msg)
    clock.advance(1)
    _send(monitor, dev.heartbeat(reboot_reason="power_loss"))  # the reason of its last start, long ago
    assert asyncio.run(_delivered(monitor, channel)) == [("open", "offline"), ("recovery", "offline")]
    outages = [(tags["cause"], tags["evidence"], fields) for m, tags, fields, _ in points if m == "outage"]
    # The settling point completes the opening one (same series, same time): one outage.
    assert [o[:2] for o in outages] == [("cellular", "signal"), ("cellular", "signal")]
    opened_at, settled_at = (t for m, _, _, t in points if m == "outage")
    assert opened_at == settled_at
    assert outages[1][2]["returned"] == "no_reboot"
    assert "10 bản tin trong hàng đợi được gửi lại" in outages[1][2]["text"]
    assert outages[1][2]["duration_s"] > 0


def test_a_device_clock_behind_the_monitor_still_settles_its_outage(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 2))
    monitor, channel = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat())
    _send(monitor, dev.death())
    clock.advance(10 * HEARTBEAT_S)
    monitor.tick()
    dev.reboot()
    _send(monitor, dev.birth())
    behind = ScriptedDevice(LOA, ManualClock(clock.now() - 300), boot_id=dev.boot_id, seq=dev.seq)
    for _ in range(3):  # "synchronised" but five minutes behind: every reading looks replayed
        clock.advance(HEARTBEAT_S)
        _send(monitor, behind.heartbeat(reboot_reason="watchdog"))
    assert asyncio.run(_delivered(monitor, channel)) == [
        ("open", "offline"),
        ("recovery", "offline"),
        ("update", "offline"),
    ]


def _outage_across_a_monitor_restart(
    tmp_path: Path, *, keep_episodes: bool
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    clock = ManualClock(local_ts(17, 2))
    before, _ = _monitor(tmp_path, clock)
    dev = ScriptedDevice(LOA, clock, heartbeat_s=HEARTBEAT_S)
    _send(before, dev.birth())
    _send(before, dev.heartbeat(net_type="4g", signal_dbm=-95))
    _send(before, dev.death())
    clock.advance(10 * HEARTBEAT_S)
    before.tick()
    assert (LOA, "offline") in before.store.open
    if not keep_episodes:
        (tmp_path / "state" / EPISODES_FILE).unlink()
    clock.advance(30 * 60)  # the monitor is restarted (an upgrade) while the hamlet is dark
    after, channel = _monitor(tmp_path, clock)
    points: list[dict[str, Any]] = []
    after.causes.points.add = lambda m, tags, fields, at, **_: points.append(  # type: ignore[method-assign]
        {"measurement": m, **tags, **fields}
    )
    clock.advance(HEARTBEAT_S)
    dev.bdseq += 1  # the link is back: the same boot
    _send(after, dev.birth())
    _send(after, dev.heartbeat(reboot_reason="clean"))
    clock.advance(HEARTBEAT_S)
    _send(after, dev.heartbeat(reboot_reason="clean"))
    return asyncio.run(_delivered(after, channel)), [p for p in points if p["measurement"] == "outage"]


def test_an_outage_that_outlives_a_monitor_restart_is_settled_with_its_duration(tmp_path: Path) -> None:
    notices, outages = _outage_across_a_monitor_restart(tmp_path, keep_episodes=True)
    # The same boot came back: the link, not the device; the technician hears it once.
    assert notices == [("recovery", "offline"), ("update", "offline")]
    assert [(o["cause"], o["refined"]) for o in outages] == [("cellular", True)]
    assert outages[0]["duration_s"] == 10 * HEARTBEAT_S + 30 * 60 + HEARTBEAT_S  # dark to back


def test_without_the_kept_episodes_the_restart_loses_the_outage_duration(tmp_path: Path) -> None:
    notices, outages = _outage_across_a_monitor_restart(tmp_path, keep_episodes=False)
    assert notices == [("recovery", "offline")]
    assert outages == []


def test_an_unreadable_episodes_file_is_set_aside_and_the_monitor_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / EPISODES_FILE).write_text('{"vn-trangxa-loa-01": {"since": "yesterday"', encoding="utf-8")
    monitor, _ = _monitor(tmp_path, ManualClock(local_ts(17, 2)))
    assert monitor.causes.episodes == {}
    assert (state / EPISODES_FILE).with_suffix(".corrupt").exists()
