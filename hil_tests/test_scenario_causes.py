"""Why a device went dark, with the shipped defaults: a controller in a reboot loop gets its
``reboot_loop`` notice and nothing else (no offline/recovery pair per reboot, no "kết nối
chập chờn": a reboot is not a link drop).

Time is scaled as in the other scenarios: heartbeats every second, so the offline grace
(5 heartbeats) is 5 s and each reboot here (the agent killed, the board back with a new
boot id a second later) is well inside it, as a 60 s reboot is inside 5 min in the field.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from dashboards import querytools
from dashboards.build import render
from dashboards.i18n import Strings
from hil_tests.faults.disk import remount
from hil_tests.rig import RigDevice
from hil_tests.scenarios import (
    DetectionMissed,
    District,
    detection_switch,
    eventually,
    local_window,
    switched_off,
)
from hil_tests.simulators.ups import UpsSimulator

pytestmark = pytest.mark.hil

REBOOTS = 4
DOWN_S = 1.0


def _more_than(count: Callable[[], int], n: int) -> Callable[[], bool]:
    return lambda: count() > n


@pytest.mark.parametrize(
    "switch",
    [
        pytest.param("defaults", id="shipped-defaults"),
        switched_off(
            "no_damping",
            "damping-off",
            "[rules.offline] grace_heartbeats = 0: an offline alert and a recovery per reboot",
        ),
    ],
)
def test_reboot_loop_gets_its_notice_and_no_offline_pair_per_reboot(district: District, switch: str) -> None:
    """Vũ Chấn's controller has a failing power adapter: it reboots four times in a few
    seconds (scaled from minutes). The technician gets one "Khởi động lại liên tục" notice."""
    loa = district.rig.add_speaker_cluster("vn-vuchan-loa-02", commune="vu-chan", hamlet="Xóm Khuôn Mánh")
    rules = {"offline": {"grace_heartbeats": 0}} if switch == "no_damping" else None
    # No bulletin now (the simulated cluster is silent): only the reboots could alert.
    district.start_backend(rules=rules, schedule=(("Bản tin sáng", *local_window(360, 30)),))
    district.rig.start()

    def births() -> int:
        return sum(1 for m in district.capture.snapshot() if m.device == loa.id and m.kind == "birth")

    eventually(births, 30, "the agent's first birth", context=lambda: district.logs(loa))
    time.sleep(2.0)
    for n in range(1, REBOOTS + 1):
        loa.agent.power_cut()
        time.sleep(DOWN_S)
        loa.agent.restore()
        eventually(
            _more_than(births, n),
            20,
            f"the agent back after reboot {n}",
            context=lambda: district.logs(loa),
        )
        time.sleep(1.5)
    district.alerts.wait(loa.id, "reboot_loop", "open", 15, context=lambda: district.logs(loa))
    time.sleep(7.0)  # longer than the grace: an offline notice of the last reboot would be here
    offline = district.alerts.webhooks(loa.id, "offline", "open")
    if offline:
        raise DetectionMissed(f"{len(offline)} offline notices for reboots:\n{district.alerts.summary()}")
    assert not district.alerts.any_notice(loa.id, "link_flapping"), district.alerts.summary()
    assert len(district.alerts.webhooks(loa.id, "reboot_loop", "open")) == 1
    # Going dark at each reboot takes no evidence from a fault judged on the boots themselves.
    assert not district.alerts.webhooks(loa.id, "reboot_loop", "unconfirmed"), district.alerts.summary()


# -- a cause for every outage ----------------------------------------------------------------
#
# Four clusters of four communes go dark at once, each for its own reason; each technician's
# offline notice (and, for the cut without UPS, the update after the return) names the cause,
# and the device's outage history holds it. Scaled: 1 s heartbeats, a 3 s UPS battery.

BATTERY_S = 3.0
UPS_TEXT = re.compile(
    r"Nghi mất điện lưới: điện áp nguồn về 0 V lúc \d\d:\d\d, thiết bị chạy pin dự phòng (\d+) s rồi tắt"
)


@dataclass
class _Outages:
    district: District
    evidence: bool
    ups: RigDevice
    grid: RigDevice
    cell: RigDevice
    disk: RigDevice
    ups_unit: UpsSimulator
    card: Path
    watchdog: Path

    def heartbeats(self, device: RigDevice, check: Callable[[dict[str, Any]], bool]) -> bool:
        return any(
            m.device == device.id and m.kind == "heartbeat" and check(m.body)
            for m in self.district.capture.snapshot()
        )

    def opened(self, device: RigDevice) -> str:
        notices = self.district.alerts.webhooks(device.id, "offline", "open")
        return str(notices[0]["text"]) if notices else ""

    def settled(self, device: RigDevice) -> list[dict[str, Any]]:
        return [p for p in self.district.points("outage", device) if p.get("duration_s") is not None]


def _outage_district(district: District, tiny_disk: Callable[..., Path], *, evidence: bool) -> _Outages:
    rig = district.rig
    ups = rig.add_speaker_cluster("vn-thansa-loa-03", commune="than-sa", hamlet="Xóm Tân Thành")
    grid = rig.add_speaker_cluster("vn-trangxa-loa-03", commune="trang-xa", hamlet="Xóm Nà Kháo")
    cell = rig.add_speaker_cluster("vn-lahien-loa-02", commune="la-hien", hamlet="Xóm Khe Rạc")
    disk = rig.add_speaker_cluster("vn-vuchan-loa-03", commune="vu-chan", hamlet="Xóm Khuôn Mánh")
    for device in (ups, grid, cell, disk):
        district.simulated(device, "power_meter")
        district.simulated(device, "modem")
    ups_unit = UpsSimulator(ups.agent.workdir, battery_s=BATTERY_S)
    card = tiny_disk("1m")
    watchdog = disk.agent.workdir / "watchdog_bootstatus"
    watchdog.write_text("0\n", encoding="ascii")
    disk.agent.probes.setdefault("system", {})["watchdog_status_path"] = str(watchdog)
    if evidence:
        ups.agent.probes.setdefault("system", {})["mains_path"] = str(ups_unit.path)
        disk.agent.probes["system"]["disk_path"] = str(card)
    else:
        # No UPS status line and no power meter; no modem probe; the probe watches the
        # state dir instead of the data card. (The cut without UPS loses its reboot reason
        # at the return: see _return.)
        del ups.agent.probes["power_meter"]
        del cell.agent.probes["modem"]
    # No bulletin now (the simulated clusters are silent): only the outages could alert.
    # These four are the whole district and all go dark within seconds: at the shipped area
    # settings that is one district-wide notice (test_scenario_area.py); here each device's
    # own cause is the subject, so the grouping is off.
    district.start_backend(
        monitor={"area_grouping": False}, schedule=(("Bản tin sáng", *local_window(360, 30)),)
    )
    # Wills in the monitor's first seconds on the broker may be the broker's own restart
    # (backend.monitor.infrastructure): the outages here begin after that settling time.
    settled_at = time.monotonic() + 8.0
    rig.start()
    for device in (ups, grid, cell, disk):
        eventually(partial(district.points, "heartbeat", device), 40, f"a first heartbeat of {device.id}")
    time.sleep(max(0.0, settled_at - time.monotonic()))
    return _Outages(district, evidence, ups, grid, cell, disk, ups_unit, card, watchdog)


def _go_dark(o: _Outages) -> None:
    # The cell fades before the modem deregisters and the link goes.
    o.cell.speaker.signal_fades(2, 2.0)
    if o.evidence:
        eventually(
            lambda: o.heartbeats(o.cell, lambda b: (b.get("signal_dbm") or 0) < -105),
            20,
            "a weak-signal heartbeat of the 4G cluster",
        )
    else:
        time.sleep(2.5)
    o.cell.speaker.signal_lost()
    assert o.cell.proxy is not None
    o.cell.proxy.cut()
    # The data card turns read-only; the hardware watchdog resets the hung controller.
    remount(o.card, read_only=True)
    if o.evidence:
        eventually(
            lambda: o.heartbeats(o.disk, lambda b: b.get("disk_ro") is True), 20, "a disk_ro heartbeat"
        )
    else:
        time.sleep(2.0)
    o.disk.agent.power_cut()
    o.watchdog.write_text("1\n", encoding="ascii")
    remount(o.card, read_only=False)  # fsck at the next boot
    # The grid goes: one controller on its UPS battery, one without.
    o.grid.agent.power_cut()
    o.grid.speaker.power_meter.mains_lost()
    o.ups.speaker.power_meter.mains_lost()
    o.ups_unit.mains_lost(o.ups.agent.power_cut)


def _return(o: _Outages) -> None:
    for device in (o.ups, o.grid):
        device.speaker.power_meter.mains_back()
    o.ups_unit.mains_back()
    if not o.evidence:
        # A re-flashed card: the marker the reboot reason is decided from is gone.
        (o.grid.agent.state_dir / "agent_running").unlink(missing_ok=True)
    for device in (o.ups, o.grid, o.disk):
        device.agent.restore()
    o.cell.speaker.signal_restored(20)
    assert o.cell.proxy is not None
    o.cell.proxy.restore()


def _dashboard_shows_the_causes(o: _Outages) -> None:
    """The device dashboard's outage table, as Grafana would query it, on this InfluxDB."""
    title = Strings("vi")("device.outages")
    [query] = [q for t, _, q in querytools.panel_queries(render("vi")["tincoso-device.json"]) if t == title]
    devices = [o.ups.id, o.grid.id, o.cell.id, o.disk.id]
    now_ms = int(time.time() * 1000)
    sql = querytools.substitute(query, {"device": devices}, start_ms=now_ms - 600_000, end_ms=now_ms + 60_000)
    shown = {(r["device"], r["cause"]) for r in o.district.query(sql) if r.get("duration_s") is not None}
    assert shown >= {
        (o.ups.id, "mains"),
        (o.grid.id, "mains"),
        (o.cell.id, "cellular"),
        (o.disk.id, "device"),
    }


def _missed(o: _Outages) -> list[str]:
    """What each technician and the history should show, and did not."""
    missed = []
    ups = UPS_TEXT.search(o.opened(o.ups))
    if ups is None or not 1 <= int(ups.group(1)) <= BATTERY_S + 5:
        missed.append(f"UPS cut: offline notice says {o.opened(o.ups)!r}")
    updates = o.district.alerts.webhooks(o.grid.id, "offline", "update")
    if not any("Nghi mất điện lưới: thiết bị khởi động lại sau khi mất nguồn" in u["text"] for u in updates):
        missed.append(f"cut without UPS: updates {[u['text'] for u in updates]}")
    if "mất điện hoặc mất mạng đột ngột" not in o.opened(o.grid):
        missed.append(f"cut without UPS: offline notice says {o.opened(o.grid)!r}")
    if "Nghi mất sóng di động: sóng yếu" not in o.opened(o.cell):
        missed.append(f"4G cell lost: offline notice says {o.opened(o.cell)!r}")
    if "Nghi lỗi thiết bị: bộ nhớ của bộ điều khiển chỉ đọc" not in o.opened(o.disk):
        missed.append(f"read-only card: offline notice says {o.opened(o.disk)!r}")
    history = {d.id: [p["cause"] for p in o.settled(d)] for d in (o.ups, o.grid, o.cell, o.disk)}
    expected = {o.ups.id: "mains", o.grid.id: "mains", o.cell.id: "cellular", o.disk.id: "device"}
    for device, cause in expected.items():
        if cause not in history[device]:
            missed.append(f"{device}: outage history {history[device]}, not {cause}")
    return missed


@pytest.mark.parametrize(
    "evidence",
    detection_switch(
        "each cause's evidence removed (no UPS status or power meter; reboot-reason marker lost; "
        "no modem probe; the disk probe off the data card): every outage is 'Chưa rõ nguyên nhân'"
    ),
)
def test_each_outage_gets_its_cause_in_the_notice_and_the_history(
    district: District, tiny_disk: Callable[..., Path], evidence: bool
) -> None:
    """Thần Sa's cluster rides its UPS through a mains cut for 3 s, then dies; Tràng Xá's,
    without UPS, dies at once; La Hiên's loses its 4G cell (signal fading first); Vũ Chấn's
    data card turns read-only and the watchdog resets it. Each technician reads the cause."""
    o = _outage_district(district, tiny_disk, evidence=evidence)
    try:
        if evidence:
            eventually(lambda: district.points("heartbeat", o.ups), 10, "UPS cluster heartbeats")
        _go_dark(o)
        for device in (o.ups, o.grid, o.cell, o.disk):
            eventually(
                partial(o.opened, device),
                40,
                f"the offline notice of {device.id}",
                context=lambda: district.alerts.summary() + "\n" + district.logs(),
            )
        if evidence:
            assert district.points("heartbeat", o.ups, "mains = false"), (
                "the dying gasp never reached InfluxDB"
            )
        _return(o)
        for device in (o.ups, o.grid, o.cell, o.disk):
            eventually(
                partial(o.settled, device),
                40,
                f"the settled outage of {device.id}",
                context=lambda: district.alerts.summary() + "\n" + district.logs(),
            )
        if evidence:
            eventually(lambda: district.alerts.webhooks(o.grid.id, "offline", "update"), 10, "an update")
        time.sleep(2.0)  # any other notice would be delivered by now
    finally:
        o.ups_unit.stop()
    missed = _missed(o)
    if evidence and missed:
        raise DetectionMissed("\n".join(missed) + "\n" + district.alerts.summary())
    if not evidence:
        for case in ("UPS cut", "cut without UPS", "4G cell lost", "read-only card"):
            assert any(m.startswith(case) for m in missed), f"{case}: detected without its evidence: {missed}"
        raise DetectionMissed("\n".join(missed))
    # The e-mail says the same as the webhook (the technician reads either).
    mails = district.alerts.emails(o.ups.id, "offline", "open")
    assert mails, district.alerts.summary()
    assert UPS_TEXT.search(mails[0].get_content()), mails[0].get_content()
    _dashboard_shows_the_causes(o)
    # The 4G cluster never rebooted and replayed its queue: confirmed, no second notice.
    [cell] = o.district.points("outage", o.cell)  # completed in place: one outage, one point
    assert (cell["evidence"], cell["returned"]) == ("signal", "no_reboot"), cell
    assert "trong hàng đợi được gửi lại" in cell["text"], cell
    assert not district.alerts.webhooks(o.cell.id, "offline", "update"), district.alerts.summary()
    assert not district.alerts.webhooks(o.ups.id, "offline", "update"), district.alerts.summary()
