"""Cause classification and area grouping at district scale: every device dark within 30 s.

The monitor runs in this process (its synchronous ``handle``/``tick`` with an injected
clock, as in the unit tests) over a registry of 10,000 speaker clusters in the district's
15 communes, each with its technician, and the district contact. Every device sends its
birth and a heartbeat, then its Last Will arrives, spread over 30 s (a district-wide power
cut); the clock runs on in 2 s ticks (the monitor's ``tick_s``) until 60 s after the
offline grace and the area window. Measured for the same fleet twice in one run:

- baseline: ``[monitor] area_grouping = false`` (one notice per device, as before);
- grouping: the shipped defaults.

For each: notices sent (one rendered notice per recipient language), deliveries queued,
the time from the first device going dark to the first notice (simulated: the grace and
the window are the monitor's settings, not machine speed), and the monitor's CPU from the
first death to the end (``time.process_time``). The open-alert state file is rewritten on
every change (``AlertStore.save``); at 10,000 open alerts that alone is quadratic and would
swamp both runs, so the store is kept in memory here (noted in docs/benchmarks.md).

A second table: ``causes.classify`` per device against one round of every rule on the
same device (``RuleEngine.evaluate``), both over the whole dark fleet.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from backend.alerts.messages import Notice
from backend.config import MqttSettings
from backend.monitor.causes import classify
from backend.monitor.clock import ManualClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.rules import RulesConfig
from backend.monitor.service import Monitor
from backend.registry import Commune, Device, Registry, Technician
from bench.common import say, table, workdir, write_result
from protocols import payloads, topics

COMMUNES = (
    ("dinh-ca", "Đình Cả", "town"),
    ("binh-long", "Bình Long", "commune"),
    ("cuc-duong", "Cúc Đường", "commune"),
    ("dan-tien", "Dân Tiến", "commune"),
    ("la-hien", "La Hiên", "commune"),
    ("lau-thuong", "Lâu Thượng", "commune"),
    ("lien-minh", "Liên Minh", "commune"),
    ("nghinh-tuong", "Nghinh Tường", "commune"),
    ("phu-thuong", "Phú Thượng", "commune"),
    ("phuong-giao", "Phương Giao", "commune"),
    ("sang-moc", "Sảng Mộc", "commune"),
    ("than-sa", "Thần Sa", "commune"),
    ("thuong-nung", "Thượng Nung", "commune"),
    ("trang-xa", "Tràng Xá", "commune"),
    ("vu-chan", "Vũ Chấn", "commune"),
)
HEARTBEAT_S = 60.0
SPREAD_S = 30.0
TICK_S = 2.0
T0 = 1_764_140_400.0  # 26/11/2025 14:00 UTC+7
HEARTBEAT = {
    "uptime_s": 100,
    "reboot_reason": "clean",
    "temp_c": 45.0,
    "disk_free_mb": 900.0,
    "disk_ro": False,
    "net_type": "4g",
    "signal_dbm": -80,
    "queue_depth": 0,
    "queue_dropped": 0,
}


class _NullChannel:
    """Reaches everyone with an e-mail; sends nothing (deliveries are counted, not made)."""

    name = "email"

    def reaches(self, technician: Technician) -> bool:
        return technician.email is not None

    async def send(self, technician: Technician, notice: Notice) -> None:
        return None


def district(devices: int) -> Registry:
    """``devices`` speaker clusters spread over the 15 communes, one technician each."""
    communes = {
        cid: Commune(
            cid,
            name,
            kind,
            "ip",
            None,
            (),
            (),
            (Technician(f"KTV {name}", email=f"ktv.{cid}@example.invalid"),),
        )
        for cid, name, kind in COMMUNES
    }
    fleet = {}
    for n in range(devices):
        cid = COMMUNES[n % len(COMMUNES)][0]
        device_id = f"vn-{cid.replace('-', '')}-loa-{n:05d}"
        fleet[device_id] = Device(device_id, "speaker_cluster", cid, f"Xóm {n // len(COMMUNES) + 1}")
    contact = Technician("Phòng Văn hóa và Thông tin huyện", email="vhtt@example.invalid")
    return Registry("Võ Nhai", communes, fleet, district_contacts=(contact,))


def _message(kind: str, device: str, ts: float, seq: int, fields: dict[str, Any]) -> tuple[str, bytes]:
    env = payloads.envelope(device, int(ts * 1000), True, seq * 1000, "boot-1", seq)
    msg = payloads.build(kind, env, fields)
    return topics.topic_for(msg), payloads.encode(msg)


def _death(device: str, ts: float) -> tuple[str, bytes]:
    msg = payloads.death(device, int(ts * 1000), True, 1, "lwt")
    return topics.topic_for(msg), payloads.encode(msg)


def outage(registry: Registry, *, grouping: bool, state_dir: str) -> dict[str, Any]:
    """One district-wide outage through a fresh monitor; what it sent and what it cost."""
    clock = ManualClock(T0)
    config = MonitorConfig(
        mqtt=MqttSettings(client_id="bench"),
        monitor=MonitorSettings(client_id="bench-monitor", state_dir=state_dir, area_grouping=grouping),
        rules=RulesConfig.from_dict({}),
        alerts=AlertSettings(),
    )
    monitor = Monitor(config, registry, None, clock=clock, channels={"email": _NullChannel()})
    monitor.store.path = None  # see the module docstring
    sent: list[tuple[float, str]] = []
    deliveries = 0
    submit = monitor.dispatcher.submit

    def counting(notice: Notice, technicians: Any) -> int:
        nonlocal deliveries
        sent.append((clock.now(), notice.fault))
        queued = submit(notice, technicians)
        deliveries += queued
        return queued

    monitor.dispatcher.submit = counting  # type: ignore[method-assign]
    ids = list(registry.devices)
    for device in ids:
        monitor.handle(*_message("birth", device, clock.now(), 1, _birth()))
        monitor.handle(*_message("heartbeat", device, clock.now(), 2, HEARTBEAT))
    clock.advance(10)
    grace = 5 * HEARTBEAT_S
    end = clock.now() + SPREAD_S + grace + 2 * HEARTBEAT_S + 60
    first_dark = clock.now()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    next_tick = clock.now() + TICK_S
    for n, device in enumerate(ids):
        at = first_dark + SPREAD_S * n / len(ids)
        while next_tick <= at:
            clock.set(next_tick)
            monitor.tick()
            next_tick += TICK_S
        clock.set(at)
        monitor.handle(*_death(device, at))
    while next_tick <= end:
        clock.set(next_tick)
        monitor.tick()
        next_tick += TICK_S
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    faults: dict[str, int] = {}
    for _, fault in sent:
        faults[fault] = faults.get(fault, 0) + 1
    return {
        "grouping": grouping,
        "devices": len(ids),
        "notices": len(sent),
        "deliveries": deliveries,
        "by_fault": faults,
        "first_notice_s": round(sent[0][0] - first_dark, 1) if sent else None,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "open_alerts": len(monitor.store.open),
    }


def _birth() -> dict[str, Any]:
    return {
        "bdseq": 1,
        "device_kind": "speaker_cluster",
        "agent_version": "bench",
        "heartbeat_s": HEARTBEAT_S,
    }


def classification(registry: Registry, state_dir: str) -> dict[str, Any]:
    """``classify`` against one round of every rule, per dark device."""
    clock = ManualClock(T0)
    config = MonitorConfig(monitor=MonitorSettings(client_id="bench-classify", state_dir=state_dir))
    monitor = Monitor(config, registry, None, clock=clock, channels={"email": _NullChannel()})
    monitor.store.path = None
    for device in registry.devices:
        monitor.handle(*_message("birth", device, clock.now(), 1, _birth()))
        monitor.handle(*_message("heartbeat", device, clock.now(), 2, HEARTBEAT))
        monitor.handle(*_death(device, clock.now()))
    states = list(monitor.fleet.devices.values())
    began = time.process_time()
    for state in states:
        monitor.rules.evaluate(state)
    rules_s = time.process_time() - began
    began = time.process_time()
    for state in states:
        classify(state, clock.now())
    classify_s = time.process_time() - began
    return {
        "devices": len(states),
        "rules_us_per_device": round(1e6 * rules_s / len(states), 2),
        "classify_us_per_device": round(1e6 * classify_s / len(states), 2),
    }


def run(quick: bool) -> dict[str, Any]:
    """Both outages and the classification cost; print the tables; write bench/results/areas.json."""
    devices = 1_000 if quick else 10_000
    registry = district(devices)
    logging.getLogger("backend.monitor.areas").setLevel(logging.ERROR)  # one line per commune otherwise
    with workdir("areas") as root:
        say(f"district-wide outage, {devices:,} devices, grouping off (baseline)")
        base = outage(registry, grouping=False, state_dir=str(root / "off"))
        say(f"district-wide outage, {devices:,} devices, grouping on (shipped defaults)")
        grouped = outage(registry, grouping=True, state_dir=str(root / "on"))
        say("classification against one round of the rules")
        cost = classification(registry, str(root / "classify"))
    rows = []
    for r in (base, grouped):
        rows.append(
            [
                "on (defaults)" if r["grouping"] else "off (baseline)",
                r["devices"],
                r["notices"],
                r["deliveries"],
                r["first_notice_s"],
                r["cpu_s"],
                round(r["notices"] / base["notices"], 4) if base["notices"] else None,
                round(r["cpu_s"] / base["cpu_s"], 2) if base["cpu_s"] else None,
            ]
        )
    table(
        f"District-wide outage: {devices:,} devices dark within {SPREAD_S:g} s "
        "(monitor in-process, 2 s ticks)",
        [
            "area grouping",
            "devices",
            "notices",
            "deliveries",
            "first notice (s after first dark)",
            "monitor CPU (s)",
            "notices ratio",
            "CPU ratio",
        ],
        rows,
    )
    table(
        "Cause classification per dark device",
        ["devices", "all rules, one round (µs)", "classify (µs)", "ratio"],
        [
            [
                cost["devices"],
                cost["rules_us_per_device"],
                cost["classify_us_per_device"],
                round(cost["classify_us_per_device"] / cost["rules_us_per_device"], 3),
            ]
        ],
    )
    result = {"baseline": base, "grouping": grouped, "classification": cost}
    write_result("areas", quick, result)
    return result
