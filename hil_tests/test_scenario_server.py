"""The server's own outages: the broker restarts, the backend restarts. With the shipped
defaults no technician hears about a device, and the district contact gets one
backend-health notice.

Time is scaled as in the other scenarios: heartbeats every second, so the shipped offline
grace (5 heartbeats) is 5 s and an outage of 7 s outlasts it: without the infrastructure
check every device would be "offline" by the time the server is back.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hil_tests.faults.backend import broker_restart
from hil_tests.rig import RigDevice
from hil_tests.scenarios import DetectionMissed, District, detection_switch, eventually, local_window

pytestmark = pytest.mark.hil

DOWN_S = 7.0
QUIET_AFTER_S = 8.0  # longer than the grace: a device notice would have come by then


def _wait_points(district: District, device: RigDevice, measurement: str, where: str, what: str) -> None:
    def check() -> list[dict[str, Any]]:
        return district.points(measurement, device, where)

    eventually(check, 30, what, context=lambda: district.logs(device))


def _two_clusters_reporting(district: District, *, hold: bool) -> None:
    district.rig.add_speaker_cluster("vn-thansa-loa-02", commune="than-sa", hamlet="Xóm Tiến Thành")
    district.rig.add_speaker_cluster("vn-lauthuong-loa-01", commune="lau-thuong", hamlet="Xóm Làng Đèn")
    # No bulletin now (the simulated clusters are silent): only the outage could alert.
    schedule = (("Bản tin sáng", *local_window(360, 30)),)
    district.start_backend(monitor={} if hold else {"hold_on_broker_loss": False}, schedule=schedule)
    district.rig.start()
    for device in district.rig:
        _wait_points(district, device, "heartbeat", "", f"a first heartbeat of {device.id}")
    time.sleep(2.0)  # the monitor has the births too


def _assert_quiet_then_one_server_notice(district: District) -> None:
    time.sleep(QUIET_AFTER_S)
    devices = district.alerts.device_notices()
    if devices:
        raise DetectionMissed(f"device notices for the server's outage:\n{district.alerts.summary()}")
    server = eventually(
        district.alerts.server_notices, 20, "the backend-health notice", missed=DetectionMissed
    )
    time.sleep(1.0)
    assert len(district.alerts.server_notices()) == 1, district.alerts.summary()
    assert server[0]["language"] == "vi"
    assert any(
        m["To"] == "vhtt.district@example.invalid" and "Máy chủ giám sát" in str(m["Subject"])
        for m in district.alerts.inbox.messages
    ), district.alerts.summary()


@pytest.mark.parametrize(
    "hold",
    detection_switch("[monitor] hold_on_broker_loss = false: the restart's Wills become offline alerts"),
)
def test_broker_restart_sends_no_device_notice_and_one_server_notice(district: District, hold: bool) -> None:
    """Mosquitto restarts (down 7 s, publishing every agent's Last Will as it stops): the
    monitor holds device state while it has no broker and re-establishes it from the
    agents' births; the district contact hears "mất kết nối MQTT broker" once."""
    if district.broker is None:
        pytest.skip("the broker is real hardware's: this scenario restarts the private broker")
    _two_clusters_reporting(district, hold=hold)
    broker_restart(district.broker, down_s=DOWN_S)
    for device in district.rig:
        where = "online = true AND time > now() - 30s"
        _wait_points(district, device, "state", where, f"{device.id} back online after the restart")
    _assert_quiet_then_one_server_notice(district)
    notice = district.alerts.server_notices()[0]
    assert "MQTT broker" in notice["subject"]


@pytest.mark.parametrize(
    "hold",
    detection_switch("[monitor] hold_on_broker_loss = false: the restart goes unreported to the district"),
)
def test_backend_restart_sends_no_device_notice_and_one_server_notice(district: District, hold: bool) -> None:
    """``tincoso backend`` stops (SIGTERM) for 7 s and starts again: devices keep reporting
    to the broker meanwhile; nobody hears about a device, the district contact hears
    "Máy chủ giám sát đã khởi động lại" once."""
    _two_clusters_reporting(district, hold=hold)
    district.backend.stop()
    time.sleep(DOWN_S)
    district.backend.start()
    _assert_quiet_then_one_server_notice(district)
    notice = district.alerts.server_notices()[0]
    assert "khởi động lại" in notice["subject"]
