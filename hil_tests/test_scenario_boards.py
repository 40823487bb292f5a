"""Board scenarios: a commune e-board goes dark in and outside its operating hours, the
district LED board loses its provincial source sync. Real agent and backend processes."""

from __future__ import annotations

import time

import pytest

from hil_tests.rig import RigDevice
from hil_tests.scenarios import District, detection_switch, eventually, local_window

pytestmark = pytest.mark.hil

# The district's board_dark delay, 120 s by default, scaled down.
DARK_FOR_S = 3.0


def _dark_eboard(
    district: District, hours: tuple[str, str], *, detection: bool = True
) -> tuple[RigDevice, float]:
    """Start an e-board in Đình Cả with ``hours``, see it lit in InfluxDB, switch it off;
    return it and when it went dark, once InfluxDB shows the dark screen."""
    bang = district.rig.add_board(
        "eboard", "vn-dinhca-bangtin-01", commune="dinh-ca", hamlet="UBND thị trấn Đình Cả"
    )
    district.simulated(bang, "display")
    district.start_backend(
        rules={"board_dark": {"for_s": DARK_FOR_S, "enabled": detection}}, board_hours=(hours,)
    )
    district.rig.start()
    eventually(
        lambda: district.points("display", bang, "power = true"),
        20,
        "the lit e-board in InfluxDB",
        context=lambda: district.logs(bang),
    )
    bang.board.goes_dark()
    dark_at = time.monotonic()
    eventually(lambda: district.points("display", bang, "power = false"), 10, "the dark screen in InfluxDB")
    return bang, dark_at


@pytest.mark.parametrize(
    "detection",
    detection_switch("[rules.board_dark] enabled = false: a dark screen is then only a data point"),
)
def test_eboard_dark_in_operating_hours_alerts_commune_technician(
    district: District, detection: bool
) -> None:
    """The commune office's e-board loses power while it should be showing notices (its
    operating hours began a minute ago, Vietnam time). The Đình Cả technician gets "board
    dark during operating hours" after the district's delay, and a recovery when it is lit."""
    bang, dark_at = _dark_eboard(district, local_window(-1, 30), detection=detection)

    opened = district.alerts.wait(
        bang.id, "board_dark", "open", DARK_FOR_S + 8, context=lambda: district.logs(bang)
    )
    assert opened.first_at - dark_at >= DARK_FOR_S
    text = opened.emails[0].get_content()
    for words in ("Bảng tin tắt trong giờ hoạt động", "Đình Cả", "UBND thị trấn Đình Cả", "bảng tin điện tử"):
        assert words in text, f"{words!r} missing from the e-mail:\n{text}"
    eventually(
        lambda: district.alert_points(bang, "board_dark", "open"), 10, "an open board_dark alert point"
    )

    bang.board.repair()
    district.alerts.wait(bang.id, "board_dark", "recovery", 15, context=lambda: district.logs(bang))
    eventually(
        lambda: district.alert_points(bang, "board_dark", "closed"), 10, "a closed board_dark alert point"
    )


def test_eboard_dark_outside_operating_hours_raises_no_alert(district: District) -> None:
    """The same e-board switched off at night: its hours start two hours from now. InfluxDB
    records the dark screen, but nobody is called out. The in-hours scenario above, with the
    same rule settings, is this one's positive control: there the alert does come."""
    bang, dark_at = _dark_eboard(district, local_window(120, 60))

    # Well past the moment the in-hours scenario alerts.
    time.sleep(max(0.0, dark_at + DARK_FOR_S + 6 - time.monotonic()))
    assert not district.alerts.any_notice(bang.id, "board_dark"), district.alerts.summary()
    assert district.alert_points(bang, "board_dark") == []
    assert district.points("display", bang, "power = false")


@pytest.mark.parametrize(
    "detection",
    detection_switch("[rules.source_sync_stale] enabled = false: a stale sync age is then only a data point"),
)
def test_district_led_loses_provincial_source_sync_alerts_district_technician(
    district: District, detection: bool
) -> None:
    """The district LED board (KPI 2.2) keeps showing content but has not synced with the
    provincial information source for two hours. The district keeps the rule's default
    limit (one hour), so the Đình Cả technician is alerted at the next snapshot; a recovery
    follows once the board syncs again."""
    led = district.rig.add_board(
        "district_led", "vn-huyen-led-01", commune="dinh-ca", hamlet="Trung tâm huyện"
    )
    district.simulated(led, "display")
    district.start_backend(rules={"source_sync_stale": {"enabled": detection}})
    district.rig.start()
    eventually(
        lambda: district.points("display", led, "source_sync_age_s < 3600"),
        20,
        "the LED board's fresh source sync in InfluxDB",
        context=lambda: district.logs(led),
    )

    led.board.source_sync_stale(2 * 3600)
    eventually(
        lambda: district.points("display", led, "source_sync_age_s > 7000"), 10, "the stale sync in InfluxDB"
    )
    opened = district.alerts.wait(led.id, "source_sync_stale", "open", 8, context=lambda: district.logs(led))
    text = opened.emails[0].get_content()
    for words in ("Mất đồng bộ với Hệ thống thông tin nguồn cấp tỉnh", "Đình Cả", "màn hình LED cỡ lớn"):
        assert words in text, f"{words!r} missing from the e-mail:\n{text}"
    eventually(lambda: district.alert_points(led, "source_sync_stale", "open"), 10, "an open alert point")

    led.board.repair()
    district.alerts.wait(led.id, "source_sync_stale", "recovery", 10, context=lambda: district.logs(led))
