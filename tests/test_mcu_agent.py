"""The MicroPython agent's real entry point under MicroPython (unix port), real sockets, real TLS.

Secure Mosquitto with a provisioned device identity, the real backend writing InfluxDB, a
PZEM-004T simulator on a PTY and the rig's audio source: what an ESP32 in a hamlet does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil_tests.audit import UNSTORED_KINDS
from hil_tests.faults.backend import broker_down
from tests.mcu_support import McuBench
from tests.services_fixtures import InfluxDatabase

pytestmark = [pytest.mark.micropython, pytest.mark.slow]


@pytest.fixture
def bench(tmp_path: Path, influx_db: InfluxDatabase, request: pytest.FixtureRequest) -> Iterator[McuBench]:
    options = getattr(request, "param", {})
    made = McuBench(tmp_path, influx_db.base_url, influx_db.name, **options)
    try:
        yield made
    finally:
        made.close()


def test_mcu_agent_reports_every_kind_goes_offline_on_a_cut_link_and_replays_its_flash_ring(
    bench: McuBench,
) -> None:
    bench.audio.play_programme("ban-tin-chieu", -18.0)
    bench.meter.set_amplifier("playing")
    bench.meter.set_audio_level(-18.0)
    bench.start_agent()
    # Birth over TLS with the provisioned identity, then heartbeats and audio with the meter's fields.
    [birth] = bench.wait(lambda: bench.captured("birth"), 30, "a birth")[:1]
    assert birth.body["platform"] == "micropython-unix"
    beats = bench.wait(lambda: bench.points("heartbeat"), 20, "a heartbeat in InfluxDB")
    assert beats[0]["reboot_reason"] == "first_boot"
    assert beats[0]["net_type"] == "wifi"
    audio = bench.wait(
        lambda: bench.points("audio", "amp_power_w > 0"), 20, "audio with the amplifier's power"
    )
    assert -24 < audio[-1]["rms_dbfs"] < -12, audio[-1]
    assert audio[-1]["amp_voltage_v"] == pytest.approx(220.0, abs=1)
    # Dead air: the line goes silent; the core's detector raises the event.
    bench.audio.silence()
    bench.wait(lambda: bench.points("event", "\"code\" = 'dead_air'"), 20, "a dead_air event in InfluxDB")
    bench.audio.play_programme("ban-tin-chieu", -18.0)
    # The meter's cable is pulled: a probe fault event, not a crash.
    bench.meter.unplugged = True
    bench.wait(lambda: bench.points("event", "\"code\" = 'probe.power_meter'"), 20, "a meter fault event")
    bench.meter.unplugged = False
    # A command from the backend: report_now is answered with a result.
    bench.send_command("report_now", "cmd-mcu-1")
    [result] = bench.wait(lambda: bench.points("result", "\"id\" = 'cmd-mcu-1'"), 20, "the command's result")
    assert result["ok"] is True

    # The Wi-Fi link is cut: the broker publishes the Last Will, the monitor marks it offline.
    bench.link.cut()
    bench.wait(lambda: bench.points("state", "online = false"), 30, "offline state in InfluxDB")
    bench.link.restore()
    bench.wait(lambda: len(bench.captured("birth")) >= 2, 30, "a new birth after the link is back")

    # A broker outage: readings wait in the flash ring and are replayed in order.
    before = len(bench.captured("heartbeat"))
    with broker_down(bench.broker):
        bench.wait(lambda: "mqtt:" in bench.log().split("bdseq 2")[-1], 20, "the agent noticing the outage")
        time.sleep(5)  # several heartbeats and audio readings go to flash only
    births = bench.wait(
        lambda: len(bench.captured("birth")) >= 3 and bench.captured("birth"), 40, "a third birth"
    )
    # bdseq grows with every connect attempt (a retained birth may be delivered twice).
    bdseqs = [b.body["bdseq"] for b in births]
    assert bdseqs == sorted(bdseqs), bdseqs
    assert bdseqs[0] == 1, bdseqs
    assert len(set(bdseqs)) >= 3, bdseqs
    replayed = bench.wait(
        lambda: [m for m in bench.captured("heartbeat")[before:] if m.body["queue_depth"] > 0],
        30,
        "a heartbeat queued during the outage, replayed",
    )
    assert replayed
    # Once the backend's receipts cover the replay, the flash ring is empty again.
    last = replayed[-1].seq
    bench.wait(
        lambda: [m for m in bench.captured("heartbeat") if m.seq > last and m.body["queue_depth"] == 0],
        30,
        "a heartbeat with the flash ring empty after the replay",
    )
    # Unreceipted readings are sent again (receipt_timeout_ms): everything ends up stored.
    result = bench.wait(lambda: (r := bench.audit()).clean and r, 40, "a clean sequence audit")
    bench.stop_agent()
    assert result.totals()["stored"] >= 10, result
    assert "Traceback" not in bench.log()


@pytest.mark.parametrize("bench", [{"watchdog_ms": 3000}], indirect=True)
def test_watchdog_resets_a_stalled_loop_and_the_next_boot_says_so(bench: McuBench) -> None:
    agent = bench.start_agent()
    bench.wait(lambda: bench.points("heartbeat"), 30, "a first heartbeat")
    (bench.flash / "HANG").touch()  # the audio driver hangs: the loop stops feeding the watchdog
    bench.wait(lambda: agent.poll() is not None, 20, "the watchdog resetting the board")
    assert agent.returncode == -9
    assert "watchdog: loop not fed" in bench.log()
    (bench.flash / "HANG").unlink()
    bench.start_agent()  # the chip boots again
    rebooted = bench.wait(
        lambda: bench.points("heartbeat", "reboot_reason = 'watchdog'"), 30, "a heartbeat saying watchdog"
    )
    assert rebooted
    births = bench.wait(
        lambda: len({b.boot_id for b in bench.captured("birth")}) >= 2 and bench.captured("birth"),
        20,
        "the second boot's birth",
    )
    first, last = births[0].body, births[-1].body
    # A new boot continues the session counter: the old session's Last Will stays stale.
    assert last["boot_id"] != first["boot_id"]
    assert last["bdseq"] > first["bdseq"]


@pytest.mark.parametrize("bench", [{"heartbeat_s": 1}], indirect=True)
def test_tick_counter_wrapping_around_keeps_readings_continuous_and_timed(bench: McuBench) -> None:
    bench.cfg["board"]["tick_wrap_in_ms"] = 3000
    bench.audio.play_programme("ban-tin-chieu", -18.0)
    bench.start_agent()
    bench.wait(lambda: "tick counter wrapped" in bench.log(), 30, "the tick counter wrapping")
    bench.wait(lambda: len(bench.captured("heartbeat")) >= 8, 30, "heartbeats on both sides of the wrap")
    bench.stop_agent()
    stamped = sorted(
        (m.seq, m.body["mono_ms"], m.body["ts"]) for m in bench.captured() if m.kind in ("heartbeat", "audio")
    )
    for (_, mono_a, ts_a), (_, mono_b, ts_b) in itertools.pairwise(stamped):
        assert mono_b >= mono_a, stamped
        # Monotonic time advances like the wall clock between readings (no jump at the wrap).
        assert abs((mono_b - mono_a) - (ts_b - ts_a)) < 300, stamped
    assert stamped[-1][1] > 4000, stamped
    result = bench.wait(lambda: (r := bench.audit()).clean and r, 30, "a clean sequence audit")
    assert result.totals()["stored"] >= 8


def _readings(bench: McuBench) -> set[tuple[str | None, int]]:
    """The readings the broker delivered, each once (births, retained states and QoS 1
    re-deliveries are not readings)."""
    return {
        (m.boot_id, m.seq) for m in bench.captured() if m.seq is not None and m.kind not in UNSTORED_KINDS
    }


def _broker_crash_while_the_backend_is_down(bench: McuBench) -> None:
    bench.audio.play_programme("ban-tin-chieu", -18.0)
    bench.start_agent()
    bench.wait(lambda: bench.points("heartbeat"), 30, "a first heartbeat in InfluxDB")
    # The backend stops: the broker acknowledges every reading and holds it for the ingest.
    bench.backend.stop()
    held = len(_readings(bench))
    bench.wait(lambda: len(_readings(bench)) >= held + 6, 30, "readings the broker acknowledged")
    if bench.cfg.get("receipts", True):
        # No receipt: the acknowledged readings are still in the flash ring.
        bench.wait(
            lambda: [m for m in bench.captured("heartbeat")[1:] if m.body["queue_depth"] >= 4],
            20,
            "a heartbeat counting the unreceipted readings in the flash ring",
        )
    # The broker dies holding them (nothing saved: SIGKILL before its autosave), comes back.
    bench.broker.kill()
    bench.broker.start()
    bench.backend.start(timeout=60.0)
    # Without receipts nothing is sent again: 10 s is plenty to see what is stored.
    settle = 60 if bench.cfg.get("receipts", True) else 10
    result = bench.wait(lambda: (r := bench.audit()).clean and r, settle, "a clean sequence audit")
    if bench.cfg.get("receipts", True):
        last = max(m.seq for m in bench.captured() if m.seq is not None)
        bench.wait(
            lambda: [m for m in bench.captured("heartbeat") if m.seq > last and m.body["queue_depth"] == 0],
            30,
            "a heartbeat with the flash ring empty once the replay is receipted",
        )
    bench.stop_agent()
    totals = result.totals()
    assert totals["stored"] == totals["produced"] >= held + 6, result
    assert totals["lost"] == 0, result
    assert totals["duplicated"] == 0, result
    assert "Traceback" not in bench.log()


@pytest.mark.parametrize("bench", [{"broker_autosave_s": 3600}], indirect=True)
def test_readings_leave_the_flash_ring_only_on_receipt_and_a_broker_crash_loses_none(
    bench: McuBench,
) -> None:
    _broker_crash_while_the_backend_is_down(bench)


@pytest.mark.xfail(reason="without receipts the ring forgets readings at PUBACK", strict=True)
@pytest.mark.parametrize("bench", [{"broker_autosave_s": 3600, "receipts": False}], indirect=True)
def test_without_receipts_a_broker_crash_loses_acknowledged_readings(bench: McuBench) -> None:
    _broker_crash_while_the_backend_is_down(bench)
