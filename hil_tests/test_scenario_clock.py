"""A device clock a day wrong: its readings must still land at the right time in InfluxDB.

Two ways a clock goes wrong in the field: a board without an RTC battery boots with a stale
clock and no NTP yet (the agent knows: ``clock_ok=false``), and a board whose RTC or NTP
server is a day off but believes it is synchronised (``clock_ok=true``: only the backend can
tell, because the clock runs ahead of the receive-time anchor, see
backend/ingest/placement.py). Either way ingest places the readings by receive time minus
their age (``placed = "received"``).
"""

from __future__ import annotations

import time

import pytest

from hil_tests.rig import RigDevice
from hil_tests.scenarios import (
    DetectionMissed,
    District,
    at_least,
    detection_switch,
    eventually,
)

pytestmark = pytest.mark.hil

DAY_S = 86_400
READINGS = 4
# Receive-time placement is off by network and queueing delay only: seconds on localhost.
PLACEMENT_TOLERANCE_S = 5.0


def _placed_now(district: District, device: RigDevice, *, clock_ok: bool, offset_s: float) -> None:
    """Run until ``READINGS`` heartbeats are stored; each must sit at the moment it was made.

    Raises:
        DetectionMissed: a reading sits at the device's wrong time.
    """
    started = time.time()
    district.rig.start()
    beats = eventually(
        lambda: [m for m in district.capture.snapshot() if m.device == device.id and m.kind == "heartbeat"][
            READINGS - 1 :
        ],
        20,
        f"{READINGS} heartbeats on the broker",
        context=lambda: district.logs(device),
    )
    # The fault is real: the device stamps its readings a day off, and says so (or not).
    assert beats[0].clock_ok is clock_ok
    assert beats[0].ts is not None
    assert beats[0].ts / 1000 - beats[0].received_at == pytest.approx(offset_s, abs=60)
    points = eventually(
        at_least(READINGS, lambda: district.points("heartbeat", device)),
        10,
        f"{READINGS} heartbeats in InfluxDB",
        context=lambda: district.logs(device),
    )
    ended = time.time()
    wrong = [
        f"seq {p['seq']} at {(p['time'] / 1000 - started) / 3600:+.2f} h, placed by the {p['placed']}"
        for p in points
        if not started - PLACEMENT_TOLERANCE_S <= p["time"] / 1000 <= ended + PLACEMENT_TOLERANCE_S
    ]
    if wrong:
        raise DetectionMissed("readings placed at the device's wrong time: " + "; ".join(wrong))
    assert {p["placed"] for p in points} == {"received"}


@pytest.mark.parametrize(
    "detection",
    detection_switch(
        "the agent's clock check off ([clock] min_epoch_s = 0): a clock a day behind then claims "
        "clock_ok, and a clock that runs behind cannot be told from a late delivery by ingest"
    ),
)
def test_clock_a_day_behind_unsynchronised_at_boot_places_readings_at_receive_time(
    district: District, detection: bool
) -> None:
    """Thần Sa's controller boots a day behind, before NTP answers over 4G. Its wall clock is
    earlier than the agent's floor (``min_epoch_s``: an hour ago here, the image's build
    date in the field), so the agent marks every reading ``clock_ok=false`` and ingest
    places it at receive time minus its age: the dashboards show it today, not yesterday."""
    floor = int(time.time()) - 3600 if detection else 0
    loa = district.rig.add_speaker_cluster(
        "vn-thansa-loa-01",
        commune="than-sa",
        hamlet="Xóm Tổng Sành",
        clock_offset_s=-DAY_S,
        sections={"clock": {"min_epoch_s": floor}},
    )
    district.start_backend()
    _placed_now(district, loa, clock_ok=not detection, offset_s=-DAY_S)


@pytest.mark.parametrize(
    "detection",
    detection_switch(
        "ingest's [ingest] clock_skew_s raised to ten days: a clock a day ahead is then trusted "
        "and its readings land tomorrow"
    ),
)
def test_clock_a_day_ahead_claiming_sync_places_readings_at_receive_time(
    district: District, detection: bool
) -> None:
    """Vũ Chấn's controller believes it is synchronised, but its clock runs a day ahead
    (``[clock] offset_s = 86400``, ``clock_ok=true``). A synchronised clock can run ahead
    of the moment a reading was received only by mistake, so ingest (``clock_skew_s``,
    5 minutes) distrusts it and places the readings at receive time."""
    loa = district.rig.add_speaker_cluster(
        "vn-vuchan-loa-01", commune="vu-chan", hamlet="Xóm Lũng Luông", clock_offset_s=DAY_S
    )
    district.start_backend(ingest={"clock_skew_s": 300.0 if detection else 10.0 * DAY_S})
    _placed_now(district, loa, clock_ok=True, offset_s=DAY_S)
