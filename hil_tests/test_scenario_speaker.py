"""Hamlet speaker cluster scenarios: the amplifier dies mid-bulletin, the power meter line
carries garbage. Real agent and backend processes, real broker, InfluxDB, e-mail and webhook."""

from __future__ import annotations

import time

import pytest

from backend.alerts.channels.smtp import SmtpChannel
from backend.alerts.messages import Notice
from backend.registry import Technician
from hil_tests.faults import bulletin_window_now, line_noise
from hil_tests.rig import FAST_POWER_METER
from hil_tests.scenarios import DetectionMissed, District, detection_switch, eventually
from tests.alert_receivers import SmtpInbox

pytestmark = pytest.mark.hil

# The district's amp_idle delay, 30 s by default, scaled down like every interval here.
AMP_IDLE_FOR_S = 3.0


@pytest.mark.parametrize(
    "detection",
    detection_switch("[rules.amp_idle] enabled = false: nothing else tells the technician the amp is dead"),
)
def test_amplifier_dies_during_evening_bulletin_alerts_commune_technician(
    district: District, detection: bool
) -> None:
    """The evening bulletin plays, the amplifier's fuse blows: audio is present, the amplifier
    draws 0 W. The Tràng Xá technician gets "amplifier idle while audio present" by e-mail
    and webhook no sooner than the district's delay and within a few seconds after it; a
    recovery notice follows the repair. The agent's amp_idle_s is 2 s, the rule's 3 s."""
    loa = district.rig.add_speaker_cluster("vn-trangxa-loa-01", commune="trang-xa", hamlet="Xóm Nà Hốc")
    district.simulated(loa, "power_meter")
    district.simulated(loa, "audio")
    district.start_backend(
        rules={"amp_idle": {"for_s": AMP_IDLE_FOR_S, "enabled": detection}},
        schedule=(bulletin_window_now(name="Bản tin chiều"),),
    )
    district.rig.start()
    loa.speaker.start_bulletin("ban-tin-chieu", -18.0)
    eventually(
        lambda: district.points("audio", loa, "playing = true AND amp_power_w > 20"),
        20,
        "the bulletin with a working amplifier in InfluxDB",
        context=lambda: district.logs(loa),
    )

    loa.speaker.amplifier_dies()
    died = time.monotonic()
    # The fault is in the data whether or not a rule looks at it.
    eventually(
        lambda: district.points("audio", loa, "playing = true AND amp_power_w < 1"),
        10,
        "audio present with the amplifier at 0 W in InfluxDB",
    )
    limit = AMP_IDLE_FOR_S + FAST_POWER_METER["amp_idle_s"] + 8
    opened = district.alerts.wait(loa.id, "amp_idle", "open", limit, context=lambda: district.logs(loa))

    delay = opened.first_at - died
    assert AMP_IDLE_FOR_S <= delay <= limit, f"amp_idle notice {delay:.1f} s after the amplifier died"
    subject, text = str(opened.emails[0]["Subject"]), opened.emails[0].get_content()
    assert "Bộ khuếch đại không hoạt động khi có tín hiệu" in subject
    for words in ("Tràng Xá", "Xóm Nà Hốc", loa.id, "Cần kiểm tra"):
        assert words in text, f"{words!r} missing from the e-mail:\n{text}"
    assert opened.webhooks[0]["commune_name"] == "Tràng Xá"
    eventually(lambda: district.alert_points(loa, "amp_idle", "open"), 10, "an open amp_idle alert point")

    loa.speaker.repair()
    recovered = district.alerts.wait(loa.id, "amp_idle", "recovery", 15, context=lambda: district.logs(loa))
    assert "Kéo dài" in recovered.emails[0].get_content()
    eventually(lambda: district.alert_points(loa, "amp_idle", "closed"), 10, "a closed amp_idle alert point")
    assert len(district.alerts.webhooks(loa.id, "amp_idle", "open")) == 1


RECOVERY_SUBJECT = (
    "[tincoso] ĐÃ KHẮC PHỤC: Bộ khuếch đại không hoạt động khi có tín hiệu"
    " - Tràng Xá, Xóm Nà Hốc (vn-trangxa-loa-01)"
)


async def test_recovery_email_subject_reaches_the_technician_with_every_space() -> None:
    inbox = SmtpInbox()
    inbox.start()
    try:
        notice = Notice(
            "recovery",
            "vn-trangxa-loa-01",
            "amp_idle",
            "trang-xa",
            "Tràng Xá",
            "Xóm Nà Hốc",
            "speaker_cluster",
            0.0,
            60.0,
            "vi",
            RECOVERY_SUBJECT,
            "Đã khắc phục",
        )
        await SmtpChannel("127.0.0.1", inbox.port, "tincoso@localhost").send(
            Technician("Hoàng Thị Bích", email="ktv.trangxa@example.invalid"), notice
        )
        assert [str(m["Subject"]) for m in inbox.messages] == [RECOVERY_SUBJECT]
    finally:
        inbox.stop()


@pytest.mark.parametrize(
    "detection",
    detection_switch(
        "the agent runs without its power meter probe: no agent setting mutes probe faults, so the "
        "scenario shows that nothing else would report the broken line"
    ),
)
def test_garbage_on_power_meter_line_is_a_probe_fault_and_the_rest_keeps_reporting(
    district: District, detection: bool
) -> None:
    """Line noise turns every power meter reply into garbage. The agent records one
    ``fault_start`` event with code ``probe.power_meter`` (what the technician sees on the
    dashboard), keeps sending heartbeats and audio levels, and ends the fault when the line
    is clean again. The agent has no switch that silences probe faults, so the detection-off
    run leaves the probe out of the config: then no event names the line and the scenario
    must fail."""
    loa = district.rig.add_speaker_cluster("vn-trangxa-loa-02", commune="trang-xa", hamlet="Xóm Khuôn Vạc")
    district.simulated(loa, "power_meter")
    if not detection:
        del loa.agent.probes["power_meter"]
    district.start_backend()
    district.rig.start()
    eventually(
        lambda: district.points("heartbeat", loa) and district.points("audio", loa),
        20,
        "heartbeats and audio levels in InfluxDB",
        context=lambda: district.logs(loa),
    )

    with line_noise(loa.speaker.power_meter, 1.0):
        events = eventually(
            lambda: district.points("event", loa, "code = 'probe.power_meter' AND event = 'fault_start'"),
            10,
            "a probe.power_meter fault_start event in InfluxDB",
            missed=DetectionMissed,
            context=lambda: district.logs(loa),
        )
        assert len(events) == 1
        assert "power meter" in events[0]["detail"]
        since = f"time > {events[0]['time']}ms"
        eventually(
            lambda: (
                len(district.points("heartbeat", loa, since)) >= 3
                and len(district.points("audio", loa, since)) >= 1
            ),
            10,
            "heartbeats and audio levels after the probe fault",
            context=lambda: district.logs(loa),
        )
        audio = district.points("audio", loa, since)[-1]
        assert audio["rms_dbfs"] is not None
        assert audio["amp_power_w"] is None  # no reading from a garbled line is passed on
        assert district.points("heartbeat", loa, since)[-1]["probe_faults"] == 1

    eventually(
        lambda: district.points("event", loa, "code = 'probe.power_meter' AND event = 'fault_end'"),
        10,
        "a probe.power_meter fault_end event once the line is clean",
    )
    assert loa.agent.running
