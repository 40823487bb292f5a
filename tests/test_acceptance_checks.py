"""Acceptance profiles, checks, payload parsing and reports, without a broker (pure functions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backend.acceptance import checks as C
from backend.acceptance.parse import ReportError, birth_age_s, parse_device_message, read_report
from backend.acceptance.profile import ProfileError, default_profile, load_profile, parse_profile
from backend.acceptance.report import build_report, verify, write_report
from backend.acceptance.runner import AcceptanceRun
from backend.acceptance.text import tr
from protocols import payloads

SPAN = (1_764_126_000_000, 1_764_126_005_000)
DEVICE = "vn-trangxa-loa-03"


def speaker() -> Any:
    return default_profile("speaker_cluster")


def tone_result(**measured: Any) -> dict[str, Any]:
    return {"kind": "result", "cmd": "play_test_tone", "ok": True, "error": None, "measured": measured}


# -- profiles --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["speaker_cluster", "eboard", "district_led"])
def test_every_device_kind_has_a_default_profile(kind: str) -> None:
    profile = default_profile(kind)
    assert profile.device_kind == kind
    assert "online" in profile.checks
    assert "reconnect" in profile.checks
    assert len(profile.sha256) == 64


def test_speaker_profile_tests_tone_and_amplifier_boards_test_the_pattern() -> None:
    assert {"test_tone", "amplifier"} <= set(speaker().checks)
    assert "test_pattern" in default_profile("district_led").checks
    assert any(r.name == "display.source_sync_age_s" for r in default_profile("district_led").rules)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"profile": {"device_kind": "radio"}}, "[profile] device_kind must be one of"),
        (
            {"profile": {"device_kind": "eboard"}, "test_tone": {"tolerance_db": "two"}},
            "[test_tone] tolerance_db",
        ),
        (
            {"profile": {"device_kind": "eboard"}, "test_tone": {"toleranse_db": 2}},
            "unknown key 'toleranse_db'",
        ),
        ({"profile": {"device_kind": "eboard"}, "sound": {}}, "unknown section [sound]"),
        ({"profile": {"device_kind": "eboard", "checks": ["online", "dance"]}}, "[profile] checks"),
        (
            {"profile": {"device_kind": "eboard"}, "telemetry": {"audio": {"loudness": [0, 1]}}},
            "not a audio field",
        ),
        ({"profile": {"device_kind": "eboard"}, "telemetry": {"display": {"temp_c": [70, 10]}}}, "is above"),
        (
            {"profile": {"device_kind": "eboard"}, "test_pattern": {"pattern": "plaid"}},
            "[test_pattern] pattern",
        ),
    ],
)
def test_a_bad_profile_names_section_and_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(raw)
    assert message in str(caught.value)


def test_profile_file_errors_are_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[profile\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(bad)


# -- checks ----------------------------------------------------------------------------


def test_online_needs_a_birth_not_a_death() -> None:
    death = {"kind": "death", "reason": "lwt", "bdseq": 3}
    result = C.check_online(death, None, speaker(), SPAN, "en")
    assert not result.passed
    assert result.detail == "last state is a death (lwt)"
    assert not C.check_online(None, None, speaker(), SPAN).passed


def test_online_fails_an_old_birth_and_passes_a_fresh_one() -> None:
    birth = {"kind": "birth", "bdseq": 2, "agent_version": "0.1.0"}
    assert C.check_online(birth, 60.0, speaker(), SPAN).passed
    old = C.check_online(birth, 2 * 86400.0, speaker(), SPAN, "en")
    assert not old.passed
    assert "old" in old.detail
    assert old.measured["birth_age_s"] == 172800.0


def test_birth_age_comes_from_the_boot_clock_when_the_wall_clock_is_wrong() -> None:
    birth = {"boot_id": "b", "mono_ms": 10_000, "ts": 0, "clock_ok": False}
    later = {"boot_id": "b", "mono_ms": 70_000}
    assert birth_age_s(birth, later, later_received_ms=1000, now_ms=3000) == pytest.approx(62.0)
    assert birth_age_s(birth, None, 0, 5000) is None
    assert birth_age_s({**birth, "clock_ok": True, "ts": 1000}, None, 0, 6000) == pytest.approx(5.0)


def test_telemetry_names_each_field_out_of_limits() -> None:
    heartbeat = {
        "kind": "heartbeat",
        "uptime_s": 5,
        "disk_ro": False,
        "disk_free_mb": 900,
        "signal_dbm": None,
        "queue_dropped": 0,
        "probe_faults": 1,
    }
    audio = {"kind": "audio", "rms_dbfs": -30, "clipping": False, "amp_power_w": 40, "amp_voltage_v": 221}
    result = C.check_telemetry({"heartbeat": heartbeat, "audio": audio}, speaker(), SPAN, "en")
    assert not result.passed
    assert "heartbeat.signal_dbm=null ([-110, -40])" in result.detail
    assert "heartbeat.probe_faults=1 ([0, 0])" in result.detail
    assert result.measured["audio.amp_power_w"] == 40


def test_telemetry_fails_a_missing_kind() -> None:
    result = C.check_telemetry({"heartbeat": None}, speaker(), SPAN, "en")
    assert "no heartbeat message received" in result.detail
    assert "no audio message received" in result.detail


def test_report_now_round_trip_limit() -> None:
    ok: dict[str, Any] = {"ok": True, "error": None, "measured": {}}
    assert C.check_report_now(ok, 0.4, speaker(), SPAN).passed
    assert not C.check_report_now(ok, 7.5, speaker(), SPAN).passed
    assert not C.check_report_now(None, None, speaker(), SPAN).passed
    failed = C.check_report_now({"ok": False, "error": "busy"}, 0.1, speaker(), SPAN, "en")
    assert failed.detail == "command failed: busy"


@pytest.mark.parametrize(("rms", "passed"), [(-15.0, True), (-13.2, True), (-12.5, False), (-18.0, False)])
def test_tone_level_within_two_db_of_the_expected_rms(rms: float, passed: bool) -> None:
    # -12 dBFS peak is -15.01 dBFS RMS.
    result = C.check_test_tone(tone_result(rms_dbfs=rms, rms_dbfs_before=-70.0), speaker(), SPAN)
    assert result.passed is passed
    assert result.limit["expected_rms_dbfs"] == -15.01


def test_tone_without_a_measurement_says_why() -> None:
    result = C.check_test_tone(tone_result(audio_error="no audio for 3.0 s"), speaker(), SPAN, "en")
    assert not result.passed
    assert "no audio for 3.0 s" in result.detail


def test_tone_frequency_is_judged_when_the_agent_measured_one() -> None:
    wrong = C.check_test_tone(tone_result(rms_dbfs=-15.0, measured_freq_hz=440.0), speaker(), SPAN)
    assert not wrong.passed
    assert C.check_test_tone(tone_result(rms_dbfs=-15.0, measured_freq_hz=1003.0), speaker(), SPAN).passed


@pytest.mark.parametrize(
    ("before", "during", "passed"), [(8.0, 29.5, True), (8.0, 8.2, False), (0.0, 0.0, False)]
)
def test_amplifier_power_must_rise_with_the_tone(before: float, during: float, passed: bool) -> None:
    result = C.check_amplifier(tone_result(amp_power_w_before=before, amp_power_w=during), speaker(), SPAN)
    assert result.passed is passed
    assert result.measured["rise_w"] == round(during - before, 2)


def test_amplifier_without_a_power_meter_fails() -> None:
    result = C.check_amplifier(tone_result(rms_dbfs=-15.0), speaker(), SPAN, "en")
    assert not result.passed
    assert "no amplifier power reading" in result.detail


def test_test_pattern_must_come_back_in_the_display_telemetry() -> None:
    board = default_profile("eboard")
    ok = {"ok": True, "error": None, "measured": {"content_id": "TEST:grid"}}
    assert C.check_test_pattern(ok, "TEST:grid", board, SPAN).passed
    shown_elsewhere = C.check_test_pattern(ok, "BANTIN-SANG", board, SPAN, "en")
    assert not shown_elsewhere.passed
    assert "reported BANTIN-SANG" in shown_elsewhere.detail


def test_sequence_gaps_are_ranges() -> None:
    assert C.seq_gaps([5, 6, 7]) == []
    assert C.seq_gaps([7, 3, 4, 9, 12]) == [(5, 6), (8, 8), (10, 11)]
    assert C.seq_gaps([]) == []


def test_reconnect_fails_on_a_gap_or_a_slow_recovery() -> None:
    ok = {"ok": True, "error": None, "measured": {"bdseq": 2}}
    assert C.check_reconnect(ok, 0.4, range(10, 30), speaker(), SPAN).passed
    gap = C.check_reconnect(ok, 0.4, [10, 11, 14], speaker(), SPAN, "en")
    assert not gap.passed
    assert gap.measured == {"recovered_s": 0.4, "missing_seqs": 2, "gaps": "12-13"}
    assert not C.check_reconnect(ok, 45.0, range(3), speaker(), SPAN).passed
    assert not C.check_reconnect(ok, None, range(3), speaker(), SPAN).passed


def test_clock_needs_clock_ok_and_a_small_skew() -> None:
    fresh = [({"ts": 1_000_000, "clock_ok": True}, 1_000_800)]
    assert C.check_clock(fresh, speaker(), SPAN).passed
    skewed = C.check_clock([({"ts": 1_000_000, "clock_ok": True}, 1_030_000)], speaker(), SPAN, "en")
    assert not skewed.passed
    assert skewed.measured["skew_s"] == -30.0
    unsynced = C.check_clock([({"ts": 1_000_000, "clock_ok": False}, 1_000_000)], speaker(), SPAN)
    assert unsynced.measured["clock_ok"] is False
    assert not unsynced.passed
    assert not C.check_clock([], speaker(), SPAN).passed


# -- parsing ---------------------------------------------------------------------------


def _audio_payload(device: str = DEVICE) -> bytes:
    env = payloads.envelope(device, 1_764_126_000_000, True, 5000, "boot", 7)
    fields = {
        "window_s": 1,
        "playing": False,
        "rms_dbfs": -70,
        "peak_dbfs": -60,
        "dead_air": False,
        "dead_air_s": 0,
        "clipping": False,
    }
    return payloads.encode(payloads.build("audio", env, fields))


def test_device_payloads_are_decoded_or_rejected_with_a_reason() -> None:
    topic = f"tincoso/v1/{DEVICE}/telemetry/audio"
    good = parse_device_message(DEVICE, topic, _audio_payload(), 1, 0.0)
    assert good.error is None
    assert good.messages[0]["seq"] == 7
    assert "not valid JSON" in str(parse_device_message(DEVICE, topic, b"{", 1, 0.0).error)
    other = parse_device_message(DEVICE, topic, _audio_payload("vn-lahien-loa-01"), 1, 0.0)
    assert "names device 'vn-lahien-loa-01'" in str(other.error)
    assert parse_device_message(DEVICE, "elsewhere/x", b"{}", 1, 0.0).error is not None


# -- report ----------------------------------------------------------------------------


def _run(passed: bool = True) -> AcceptanceRun:
    birth = {
        "kind": "birth",
        "agent_version": "0.1.0",
        "platform": "linux-armv7l",
        "boot_id": "b",
        "bdseq": 4,
    }
    checks = [
        C.CheckResult("online", True, {"birth_age_s": 3.0}, {"birth_max_age_s": 86400.0}, "đạt", *SPAN),
        C.CheckResult("clock", passed, {"skew_s": 0.2}, {"max_skew_s": 5.0}, "x", *SPAN),
    ]
    return AcceptanceRun(DEVICE, "speaker_cluster", birth, speaker(), checks, *SPAN)


def test_report_json_hash_and_html_agree(tmp_path: Path) -> None:
    files = write_report(build_report(_run(), None, "vi"), tmp_path)
    sidecar = files.sha256_path.read_text(encoding="ascii")
    assert sidecar == f"{files.sha256}  report.json\n"  # sha256sum -c format
    html = files.html_path.read_text(encoding="utf-8")
    assert files.sha256 in html
    assert "Biên bản nghiệm thu từ xa" in html
    assert "linux-armv7l" in html
    result = verify(files.json_path)
    assert result.ok
    assert verify(files.json_path, expected="0" * 64).ok is False


def test_english_report(tmp_path: Path) -> None:
    files = write_report(build_report(_run(passed=False), None, "en"), tmp_path, "en")
    html = files.html_path.read_text(encoding="utf-8")
    assert "Remote acceptance report" in html
    assert "FAIL (1/2)" in html


def test_verify_rejects_what_is_not_a_report(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}), encoding="utf-8")
    with pytest.raises(ReportError, match="not a tincoso acceptance report"):
        read_report(other)
    with pytest.raises(ReportError, match="cannot read"):
        read_report(tmp_path / "nope.json")


def test_text_falls_back_to_the_key_and_to_the_template() -> None:
    assert tr("vi", "pass") == "ĐẠT"
    assert tr("en", "pass") == "PASS"
    assert tr("en", "no.such.key") == "no.such.key"
    assert "{value" in tr("en", "too_slow", value=None, limit=1.0)
