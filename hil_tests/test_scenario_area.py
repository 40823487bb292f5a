"""Correlated outages, with the shipped defaults: a commune's power is cut and its speaker
clusters go dark within seconds. Thần Sa's technician gets one area notice ("Mất kết nối
3/4 cụm loa xã Thần Sa ... nghi mất điện khu vực"), the district contact one, and nobody a
notice per cluster; the one cluster still dark after the power returns gets its own.

Time is scaled as in the other scenarios: heartbeats every second, so the offline grace
(5 heartbeats) is 5 s and the area window (2 heartbeats) 2 s. The power cut is seen first
by each cluster's power meter (supply voltage to 0 V, as on a controller kept up by a small
UPS for a moment), then the controllers die (SIGKILL) a fraction of a second apart.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from backend.cli import main
from backend.registry import LOCAL_TZ
from hil_tests.rig import RigDevice
from hil_tests.scenarios import DetectionMissed, District, detection_switch, eventually, local_window

pytestmark = pytest.mark.hil

COMMUNE = "than-sa"
HAMLETS = ("Xóm Tiến Thành", "Xóm Nà Còi", "Xóm Cao Biền", "Xóm Ngảu")


def _hooks(district: District, path: str, fault: str, event: str = "open") -> list[dict[str, Any]]:
    with district.alerts.http.lock:
        requests = list(district.alerts.http.requests)
    return [
        body
        for _, where, body, status in requests
        if status == 200
        and where.endswith(path)
        and body.get("fault") == fault
        and body.get("event") == event
    ]


def _mains_cut(device: RigDevice) -> None:
    meter = device.speaker.power_meter
    meter.noise = False
    meter.set_load(0.0)
    meter.nominal_v = 0.0


def _mains_back(device: RigDevice) -> None:
    meter = device.speaker.power_meter
    meter.nominal_v = 220.0
    meter.set_load(None)
    meter.noise = True


def _offline_notices(district: District, devices: list[RigDevice]) -> list[dict[str, Any]]:
    return [n for d in devices for n in district.alerts.webhooks(d.id, "offline", "open")]


@pytest.mark.parametrize(
    "grouping",
    detection_switch("[monitor] area_grouping = false: one offline notice per cluster of the commune"),
)
def test_commune_power_cut_is_one_area_notice_and_the_cluster_left_dark_gets_its_own(
    district: District, grouping: bool
) -> None:
    clusters = [
        district.rig.add_speaker_cluster(f"vn-thansa-loa-{n:02d}", commune=COMMUNE, hamlet=hamlet)
        for n, hamlet in enumerate(HAMLETS, start=1)
    ]
    cut, spared = clusters[:3], clusters[3]
    left_dark = cut[2]
    # No bulletin now (the simulated clusters are silent): only the outage could alert.
    schedule = (("Bản tin sáng", *local_window(360, 30)),)
    district.start_backend(monitor={} if grouping else {"area_grouping": False}, schedule=schedule)
    district.rig.start()
    for device in clusters:
        eventually(
            lambda d=device: district.points("heartbeat", d),  # type: ignore[misc]
            40,
            f"a first heartbeat of {device.id}",
            context=lambda d=device: district.logs(d),  # type: ignore[misc]
        )
    time.sleep(2.0)  # the monitor has the births too

    for device in cut:
        _mains_cut(device)
    for device in cut:
        eventually(
            lambda d=device: district.points("audio", d, '"amp_voltage_v" < 100'),  # type: ignore[misc]
            20,
            f"{device.id}'s power meter reading 0 V in InfluxDB",
            context=lambda d=device: district.logs(d),  # type: ignore[misc]
        )
    for device in cut:
        device.agent.power_cut()
        time.sleep(0.3)

    def told() -> bool:
        return bool(
            _hooks(district, f"/hook/{COMMUNE}", "area_offline") or len(_offline_notices(district, cut)) >= 2
        )

    eventually(
        told, 40, "an area notice or per-cluster notices", missed=DetectionMissed, context=district.logs
    )
    per_cluster = _offline_notices(district, cut)
    if not grouping or per_cluster:
        time.sleep(3.0)  # every cluster's notice is in by now
        raise DetectionMissed(
            f"{len(_offline_notices(district, cut))} offline notices:\n{district.alerts.summary()}"
        )

    technician = eventually(
        lambda: _hooks(district, f"/hook/{COMMUNE}", "area_offline"), 10, "the area notice on the webhook"
    )
    assert technician[0]["subject"].startswith("[tincoso] SỰ CỐ: Mất kết nối 3/4 cụm loa xã Thần Sa từ ")
    assert "nghi mất điện khu vực" in technician[0]["subject"]
    assert all(d.id in technician[0]["text"] for d in cut), technician[0]["text"]
    eventually(lambda: _hooks(district, "/hook/district", "area_offline"), 10, "the district's area notice")

    for device in cut[:2]:  # the power is back; one controller does not come back
        _mains_back(device)
        device.agent.restore()
    eventually(
        lambda: district.alerts.webhooks(left_dark.id, "offline", "open"),
        60,
        f"{left_dark.id}'s own notice once its neighbours are back",
        context=district.logs,
    )
    recovery = eventually(
        lambda: _hooks(district, f"/hook/{COMMUNE}", "area_offline", "recovery"), 20, "the area recovery"
    )
    assert left_dark.id in recovery[0]["text"]
    time.sleep(3.0)  # late notices would be in by now

    assert len(_hooks(district, f"/hook/{COMMUNE}", "area_offline")) == 1, district.alerts.summary()
    assert len(_hooks(district, "/hook/district", "area_offline")) == 1, district.alerts.summary()
    device_notices = [(n["device"], n["fault"], n["event"]) for n in district.alerts.device_notices()]
    assert device_notices == [(left_dark.id, "offline", "open")], district.alerts.summary()
    mails = [str(m["Subject"]) for m in district.alerts.inbox.messages if "3/4 cụm loa" in str(m["Subject"])]
    assert len([s for s in mails if "SỰ CỐ" in s]) == 2, mails  # the technician and the district office
    assert not district.alerts.any_notice(spared.id, "offline")
    # The clusters' outages are in the history all the same, with the grid as their cause.
    for device in cut:
        outage = district.points("outage", device)
        assert outage, f"no outage point of {device.id}"
        assert outage[0]["cause"] == "mains", outage
    _weekly_digest_counts_them(district, cut)


def _weekly_digest_counts_them(district: District, cut: list[RigDevice]) -> None:
    """``tincoso digest --send`` over the week ending today, from what the real monitor and
    ingest stored: the district contact reads three grid outages in Thần Sa."""
    today = datetime.now(LOCAL_TZ).strftime("%d/%m/%Y")
    assert main(["digest", "--config", str(district.backend.config_path), "--to", today, "--send"]) == 0
    [mail] = [
        m for m in district.alerts.inbox.messages if "Tình trạng thiết bị hằng tuần" in str(m["Subject"])
    ]
    assert mail["To"] == "vhtt.district@example.invalid"
    body = mail.get_content()
    stored = district.query(f'SELECT count("text") FROM "outage" WHERE "commune" = \'{COMMUNE}\'')
    assert stored[0]["count"] == len(cut)
    commune = next(line for line in body.splitlines() if line.startswith("- Thần Sa:"))
    assert (
        f"4 thiết bị, {len(cut)} lần (điện lưới {len(cut)}, lỗi thiết bị 0, mất sóng 0, chưa rõ 0)" in commune
    )
    worst = [line for line in body.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert cut[2].id in worst[0], body  # still dark: down the longest, first of the worst
    assert "Cần làm: Mất điện lưới" in body.split(worst[0])[1].splitlines()[1]
