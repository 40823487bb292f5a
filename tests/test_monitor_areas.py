"""Correlated outages are one notice (backend/monitor/areas.py), with the shipped defaults.

The monitor runs with the code's defaults, scripted devices on a 60 s heartbeat and the
injected clock: offline grace 5 min, area window 2 min. Each test's twin with
``area_grouping = false`` shows the storm it prevents.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from backend.config import ConfigError, MqttSettings
from backend.maintenance import MaintenanceStore
from backend.monitor.clock import ManualClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.rules import RulesConfig
from backend.monitor.service import Monitor
from backend.registry import Technician, load_registry
from tests.monitor_support import RecordingChannel, ScriptedDevice, local_ts, wire
from tests.test_registry import EXAMPLE

REGISTRY = load_registry(EXAMPLE)
HEARTBEAT_S = 60.0
TRANG_XA = ["vn-trangxa-loa-01", "vn-trangxa-loa-02", "vn-trangxa-loa-03", "vn-trangxa-bangtin-01"]
TECHNICIAN = "ktv.trangxa@example.invalid"
DISTRICT = "vhtt.vonhai@example.invalid"


def _monitor(tmp_path: Path, clock: ManualClock, **monitor: Any) -> tuple[Monitor, RecordingChannel]:
    config = MonitorConfig(
        mqtt=MqttSettings(client_id="test"),
        monitor=MonitorSettings(client_id="test-monitor", state_dir=str(tmp_path / "state"), **monitor),
        rules=RulesConfig.from_dict({}),
        alerts=AlertSettings(attempts=3, backoff_s=0.01),
    )
    channel = RecordingChannel()
    return Monitor(config, REGISTRY, None, clock=clock, channels={"email": channel}), channel


def _send(monitor: Monitor, msg: dict[str, Any]) -> None:
    topic, payload = wire(msg)
    monitor.handle(topic, payload)


def _run(
    monitor: Monitor,
    clock: ManualClock,
    seconds: float,
    alive: tuple[ScriptedDevice, ...] = (),
    beat: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Tick every 2 s for ``seconds``; the ``alive`` devices keep their heartbeat (``beat``:
    device -> heartbeat fields)."""
    for step in range(1, int(seconds // 2) + 1):
        clock.advance(2)
        if step % int(HEARTBEAT_S // 2) == 0:
            for dev in alive:
                _send(monitor, dev.heartbeat(**(beat or {}).get(dev.device, {})))
        monitor.tick()


async def _drain(monitor: Monitor) -> None:
    monitor.dispatcher.start()
    async with asyncio.timeout(5):
        await monitor.dispatcher.wait_idle()
    await monitor.dispatcher.aclose()


def _to(channel: RecordingChannel, email: str) -> list[tuple[str, str, str]]:
    return [
        (n.event, n.fault, n.device)
        for t, n in channel.sent
        if isinstance(t, Technician) and t.email == email
    ]


def _fleet(monitor: Monitor, clock: ManualClock, ids: list[str]) -> dict[str, ScriptedDevice]:
    devices = {i: ScriptedDevice(i, clock, heartbeat_s=HEARTBEAT_S) for i in ids}
    for dev in devices.values():
        _send(monitor, dev.birth())
        _send(monitor, dev.heartbeat())
    return devices


def _power_cut(monitor: Monitor, clock: ManualClock, devices: list[ScriptedDevice]) -> None:
    """Each controller reports "mains lost" on its UPS, then dies a few seconds apart."""
    for dev in devices:
        _send(monitor, dev.heartbeat(mains=False))
    for dev in devices:
        clock.advance(3)
        _send(monitor, dev.death())


def _back(monitor: Monitor, dev: ScriptedDevice) -> None:
    dev.reboot()
    _send(monitor, dev.birth())
    _send(monitor, dev.heartbeat(reboot_reason="power_loss"))


def test_commune_power_cut_is_one_area_notice_and_the_straggler_gets_its_own(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 0))
    monitor, channel = _monitor(tmp_path, clock)
    fleet = _fleet(monitor, clock, TRANG_XA)
    cut = [fleet[i] for i in TRANG_XA[:3]]
    _power_cut(monitor, clock, cut)
    board = (fleet[TRANG_XA[3]],)
    _run(monitor, clock, 5 * HEARTBEAT_S + 2 * HEARTBEAT_S + 10, board)
    asyncio.run(_drain(monitor))
    assert _to(channel, TECHNICIAN) == [("open", "area_offline", "")]
    assert _to(channel, DISTRICT) == [("open", "area_offline", "")]
    notice = channel.sent[0][1]
    assert notice.subject.startswith("[tincoso] SỰ CỐ: Mất kết nối 3/4 thiết bị xã Tràng Xá từ 17:00")
    assert "nghi mất điện khu vực" in notice.subject
    for dev in cut:
        assert dev.device in notice.text
    # The device alerts exist (history, KPI) though no notice of their own went out.
    assert {d for d, f in monitor.store.open if f == "offline"} == set(TRANG_XA[:3])

    channel.sent.clear()
    _back(monitor, fleet[TRANG_XA[0]])
    _back(monitor, fleet[TRANG_XA[1]])
    alive = (*board, fleet[TRANG_XA[0]], fleet[TRANG_XA[1]])
    _run(monitor, clock, 5 * HEARTBEAT_S + 10, alive)  # the third stays down past the grace
    asyncio.run(_drain(monitor))
    straggler = TRANG_XA[2]
    assert _to(channel, TECHNICIAN) == [("open", "offline", straggler), ("recovery", "area_offline", "")]
    recovery = next(n for _, n in channel.sent if n.fault == "area_offline")
    assert "2/3 thiết bị đã kết nối lại" in recovery.text
    assert straggler in recovery.text

    channel.sent.clear()
    _back(monitor, fleet[straggler])
    monitor.tick()
    asyncio.run(_drain(monitor))
    assert _to(channel, TECHNICIAN) == [("recovery", "offline", straggler)]


def test_without_grouping_the_same_power_cut_sends_one_notice_per_device(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 0))
    monitor, channel = _monitor(tmp_path, clock, area_grouping=False)
    fleet = _fleet(monitor, clock, TRANG_XA)
    _power_cut(monitor, clock, [fleet[i] for i in TRANG_XA[:3]])
    _run(monitor, clock, 7 * HEARTBEAT_S + 10, (fleet[TRANG_XA[3]],))
    asyncio.run(_drain(monitor))
    assert sorted(_to(channel, TECHNICIAN)) == [("open", "offline", d) for d in TRANG_XA[:3]]


def test_a_device_whose_cause_differs_is_told_on_its_own(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 0))
    monitor, channel = _monitor(tmp_path, clock)
    fleet = _fleet(monitor, clock, TRANG_XA)
    board = fleet["vn-trangxa-bangtin-01"]
    _send(monitor, board.heartbeat(disk_ro=True))  # its disk failed: the device, not the grid
    _power_cut(monitor, clock, [fleet[i] for i in TRANG_XA[:3]])
    clock.advance(2)
    _send(monitor, board.death())
    _run(monitor, clock, 7 * HEARTBEAT_S + 10)
    asyncio.run(_drain(monitor))
    told = _to(channel, TECHNICIAN)
    assert told.count(("open", "area_offline", "")) == 1
    assert ("open", "offline", "vn-trangxa-bangtin-01") in told
    assert [t for t in told if t[1] == "offline"] == [("open", "offline", "vn-trangxa-bangtin-01")]


def test_one_device_alone_is_told_without_waiting_for_the_window(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 0))
    monitor, channel = _monitor(tmp_path, clock)
    fleet = _fleet(monitor, clock, TRANG_XA)
    _send(monitor, fleet[TRANG_XA[0]].death())
    _run(monitor, clock, 5 * HEARTBEAT_S + 2, tuple(fleet[i] for i in TRANG_XA[1:]))
    asyncio.run(_drain(monitor))
    assert _to(channel, TECHNICIAN) == [("open", "offline", TRANG_XA[0])]


def test_district_wide_outage_is_one_notice_to_the_district_and_one_per_commune(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 0))
    monitor, channel = _monitor(tmp_path, clock)
    ids = sorted(REGISTRY.devices)
    fleet = _fleet(monitor, clock, ids)
    for dev in fleet.values():
        clock.advance(0.5)
        _send(monitor, dev.death())
    _run(monitor, clock, 7 * HEARTBEAT_S + 20)
    asyncio.run(_drain(monitor))
    district = [(t.email, n.event) for t, n in channel.sent if n.fault == "district_offline"]
    assert district == [(DISTRICT, "open")], district
    # Commune notices go to each commune's technicians only (the district heard it once).
    for technician, notice in channel.sent:
        if notice.fault == "area_offline":
            commune = REGISTRY.communes[notice.commune]
            assert technician in commune.technicians
            assert technician not in REGISTRY.district_contacts or technician in commune.technicians
    assert not [n for _, n in channel.sent if n.fault == "offline"]
    communes = {n.commune for _, n in channel.sent if n.fault == "area_offline"}
    assert communes == {d.commune for d in REGISTRY.devices.values()}
    per_technician = [(t.email, n.commune) for t, n in channel.sent if n.fault == "area_offline"]
    assert len(per_technician) == len(set(per_technician))  # one per commune and technician
    text = next(n for _, n in channel.sent if n.fault == "district_offline").subject
    assert f"Mất kết nối {len(ids)}/{len(ids)} thiết bị ở {len(communes)} xã/thị trấn" in text


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("area_fraction", 0.0, "monitor.area_fraction must be above 0"),
        ("area_fraction", 1.5, "at most 1"),
        ("area_min_devices", 0, "monitor.area_min_devices must be at least 1"),
        ("area_window_heartbeats", -1.0, "must not be negative"),
    ],
)
def test_area_settings_are_checked(key: str, value: float, words: str) -> None:
    settings: dict[str, Any] = {key: value}
    with pytest.raises(ConfigError, match=words):
        MonitorSettings(**settings)


@pytest.mark.parametrize("grouping", [True, False], ids=["grouping", "grouping-off"])
def test_an_operator_outage_across_communes_is_one_notice(tmp_path: Path, grouping: bool) -> None:
    """One cluster in each of four communes, all on Viettel, lose the network (signal fading
    first): no commune reaches its own threshold, the operator does."""
    clock = ManualClock(local_ts(9, 0))
    monitor, channel = _monitor(tmp_path, clock, area_grouping=grouping)
    communes = ("trang-xa", "la-hien", "lau-thuong", "phu-thuong")
    ids = [d.id for c in communes for d in REGISTRY.devices_in(c)]
    fleet = _fleet(monitor, clock, ids)
    dark = [REGISTRY.devices_in(c)[0].id for c in communes]
    viettel = [*dark, REGISTRY.devices_in("trang-xa")[1].id]
    beat = {device: {"operator": "Viettel" if device in viettel else "VNPT"} for device in fleet}
    for device, dev in fleet.items():
        _send(monitor, dev.heartbeat(**beat[device]))
    for device in dark:
        _send(monitor, fleet[device].heartbeat(operator="Viettel", signal_dbm=-117))
        clock.advance(2)
        _send(monitor, fleet[device].death())
    alive = tuple(dev for device, dev in fleet.items() if device not in dark)
    _run(monitor, clock, 7 * HEARTBEAT_S + 10, alive, beat)
    asyncio.run(_drain(monitor))
    if not grouping:
        assert sorted(n.device for _, n in channel.sent if n.fault == "offline") == sorted(dark)
        return
    assert not [n for _, n in channel.sent if n.fault == "offline"], [n.subject for _, n in channel.sent]
    notices = [(t.email, n) for t, n in channel.sent if n.fault == "area_offline"]
    emails = {email for email, _ in notices}
    assert {f"ktv.{c.replace('-', '')}@example.invalid" for c in communes} | {DISTRICT} <= emails
    subject = notices[0][1].subject
    assert "Mất kết nối 4/5 thiết bị dùng mạng Viettel ở 4 xã/thị trấn" in subject
    assert "nghi mất sóng di động khu vực" in subject


def test_a_commune_in_maintenance_gets_no_area_notice(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 0))
    monitor, channel = _monitor(tmp_path, clock)
    MaintenanceStore(tmp_path / "state" / "maintenance.json").add(
        "commune", "trang-xa", clock.now() - 60, clock.now() + 3600, "thay tủ điện"
    )
    fleet = _fleet(monitor, clock, TRANG_XA)
    _power_cut(monitor, clock, [fleet[i] for i in TRANG_XA[:3]])
    _run(monitor, clock, 7 * HEARTBEAT_S + 10, (fleet[TRANG_XA[3]],))
    asyncio.run(_drain(monitor))
    assert channel.sent == []
    assert {d for d, f in monitor.store.open if f == "offline"} == set(TRANG_XA[:3])


def test_after_a_restart_an_alert_told_by_its_area_is_on_its_own(tmp_path: Path) -> None:
    clock = ManualClock(local_ts(17, 0))
    monitor, _ = _monitor(tmp_path, clock)
    fleet = _fleet(monitor, clock, TRANG_XA)
    _power_cut(monitor, clock, [fleet[i] for i in TRANG_XA[:3]])
    _run(monitor, clock, 7 * HEARTBEAT_S + 10, (fleet[TRANG_XA[3]],))
    assert all(a.area for a in monitor.store.open.values())
    monitor.store.save()
    again, channel = _monitor(tmp_path, clock)
    _back(again, fleet[TRANG_XA[0]])
    asyncio.run(_drain(again))
    assert _to(channel, TECHNICIAN) == [("recovery", "offline", TRANG_XA[0])]
