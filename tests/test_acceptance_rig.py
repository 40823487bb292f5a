"""The acceptance test against real agent processes, simulated hardware and a real Mosquitto.

One fleet of seven simulated units is started once for the module: a healthy speaker
cluster and e-board, and five units with a fault a vendor would meet in the field (dead
amplifier, cut speaker line, dark board, wrong clock, broken modem). Every unit is
tested concurrently; each must fail exactly the checks its fault explains, with the
measured value in the report.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backend.acceptance import profile as profiles
from backend.acceptance.profile import Profile, parse_profile
from backend.acceptance.report import build_report, write_report
from backend.acceptance.runner import AcceptanceRun, BrokerSettings, run_acceptance
from backend.cli import main as tincoso
from backend.localservices import LocalMosquitto
from hil_tests.faults import write_registry
from hil_tests.rig import Rig, RigDevice
from tests.acceptance_support import TonePlayer

pytestmark = [pytest.mark.hil, pytest.mark.slow]

# unit -> (kind, fault, checks it must fail)
UNITS: dict[str, tuple[str, str | None, set[str]]] = {
    "loa-ok": ("speaker_cluster", None, set()),
    "loa-amp": ("speaker_cluster", "dead_amplifier", {"telemetry", "amplifier"}),
    "loa-line": ("speaker_cluster", "speaker_line_cut", {"amplifier"}),
    "bang-ok": ("eboard", None, set()),
    "bang-dark": ("eboard", "dark_board", {"telemetry", "test_pattern"}),
    "bang-clock": ("eboard", "wrong_clock", {"clock"}),
    "bang-modem": ("eboard", "broken_modem", {"telemetry"}),
}


def fast_profile_raw(kind: str) -> dict[str, Any]:
    """The shipped profile of ``kind`` with short tones and waits (the limits are untouched)."""
    raw = tomllib.loads((profiles.PROFILES_DIR / f"{kind}.toml").read_text(encoding="utf-8"))
    if "test_tone" in raw:
        raw["test_tone"]["seconds"] = 2
    if "test_pattern" in raw:
        raw["test_pattern"]["seconds"] = 2
    raw["reconnect"]["after_s"] = 0.2
    raw["telemetry"]["wait_s"] = 10
    return raw


def fast_profile(kind: str) -> Profile:
    return parse_profile(fast_profile_raw(kind), f"fast {kind}")


@dataclass
class Fleet:
    rig: Rig
    units: dict[str, RigDevice]
    runs: dict[str, AcceptanceRun]
    broker_port: int
    workdir: Path


def _add(rig: Rig, name: str, kind: str, fault: str | None, tag: str) -> tuple[RigDevice, TonePlayer | None]:
    device_id = f"acc-{tag}-{name}"
    sections: dict[str, dict[str, Any]] = {}
    if fault == "wrong_clock":
        # A board whose clock never synchronised: every reading says clock_ok=false.
        sections["clock"] = {"min_epoch_s": 2**40}
    if kind == "speaker_cluster":
        unit = rig.add_speaker_cluster(
            device_id, commune="trang-xa" if fault is None else "la-hien", sections=sections
        )
        player = TonePlayer(unit.speaker).start()
        unit.agent.sections["commands"] = {"player": player.command()}
        return unit, player
    unit = rig.add_board(
        kind, device_id, commune="trang-xa" if fault is None else "la-hien", sections=sections
    )
    return unit, None


def _inject(unit: RigDevice, fault: str | None) -> None:
    if fault == "dead_amplifier":
        unit.speaker.amplifier_dies()
    elif fault == "speaker_line_cut":
        unit.speaker.speaker_line_cut()
    elif fault == "dark_board":
        unit.board.goes_dark()
    elif fault == "broken_modem":
        unit.board.modem.unplugged = True


@pytest.fixture(scope="module")
def fleet(mosquitto: LocalMosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("acceptance")
    tag = secrets.token_hex(3)
    players: list[TonePlayer] = []
    with Rig(workdir / "rig", broker_port=mosquitto.port, proxied=False, audio_rate=8000) as rig:
        units: dict[str, RigDevice] = {}
        for name, (kind, fault, _) in UNITS.items():
            units[name], player = _add(rig, name, kind, fault, tag)
            if player is not None:
                players.append(player)
        rig.start()
        for name, (_, fault, _) in UNITS.items():
            units[name].agent.wait_for_log(r"connected to", timeout=20)
            _inject(units[name], fault)
        settings = BrokerSettings(port=mosquitto.port)

        async def run_all() -> list[AcceptanceRun]:
            return await asyncio.gather(
                *(run_acceptance(settings, u.id, profile=fast_profile(u.kind)) for u in units.values())
            )

        runs = dict(zip(units, asyncio.run(run_all()), strict=True))
        yield Fleet(rig, units, runs, mosquitto.port, workdir)
    for player in players:
        player.stop()


def _failed(run: AcceptanceRun) -> set[str]:
    return {c.name for c in run.checks if not c.passed}


def _check(run: AcceptanceRun, name: str) -> Any:
    return next(c for c in run.checks if c.name == name)


def _explain(fleet: Fleet, name: str) -> str:
    run = fleet.runs[name]
    lines = [f"{c.name}: {'ok' if c.passed else 'FAIL'} {c.measured} {c.detail}" for c in run.checks]
    return "\n".join(lines) + "\n--- agent log ---\n" + fleet.units[name].agent.log_tail(15)


@pytest.mark.parametrize("name", ["loa-ok", "bang-ok"])
def test_healthy_unit_passes_every_check(fleet: Fleet, name: str) -> None:
    run = fleet.runs[name]
    kind = UNITS[name][0]
    assert [c.name for c in run.checks] == list(fast_profile(kind).checks)
    assert run.passed, _explain(fleet, name)
    assert run.birth is not None
    assert run.birth["agent_version"]


@pytest.mark.parametrize("name", [n for n, (_, fault, _) in UNITS.items() if fault is not None])
def test_faulty_unit_fails_exactly_the_checks_its_fault_explains(fleet: Fleet, name: str) -> None:
    assert _failed(fleet.runs[name]) == UNITS[name][2], _explain(fleet, name)


def test_tone_is_measured_by_the_devices_own_audio_probe(fleet: Fleet) -> None:
    tone = _check(fleet.runs["loa-ok"], "test_tone")
    # -12 dBFS peak is -15.01 dBFS RMS on the line; the limit is +-2 dB.
    assert tone.passed
    assert abs(tone.measured["rms_dbfs"] - (-15.01)) < 2.0
    assert tone.measured["rms_dbfs_before"] < -50
    amp = _check(fleet.runs["loa-ok"], "amplifier")
    assert amp.measured["rise_w"] > 10


def test_dead_amplifier_report_shows_zero_watts(fleet: Fleet) -> None:
    run = fleet.runs["loa-amp"]
    assert _check(run, "amplifier").measured["amp_power_w_during"] == 0.0
    assert _check(run, "telemetry").measured["audio.amp_power_w"] == 0.0
    assert _check(run, "test_tone").passed  # the receiver still plays: the amplifier is what failed


def test_cut_speaker_line_leaves_the_amplifier_idle(fleet: Fleet) -> None:
    amp = _check(fleet.runs["loa-line"], "amplifier")
    assert amp.measured["amp_power_w_during"] < 12  # idle draw, no load
    assert amp.measured["rise_w"] < amp.limit["min_rise_w"]


def test_dark_board_refuses_the_pattern_and_reports_power_off(fleet: Fleet) -> None:
    run = fleet.runs["bang-dark"]
    assert _check(run, "telemetry").measured["display.power"] is False
    assert "powered_off" in _check(run, "test_pattern").detail


def test_wrong_clock_is_reported_with_clock_ok_false(fleet: Fleet) -> None:
    clock = _check(fleet.runs["bang-clock"], "clock")
    assert clock.measured["clock_ok"] is False
    assert _check(fleet.runs["bang-clock"], "online").passed  # the birth's age comes from mono_ms


def test_broken_modem_leaves_no_signal_reading(fleet: Fleet) -> None:
    telemetry = _check(fleet.runs["bang-modem"], "telemetry")
    assert telemetry.measured["heartbeat.signal_dbm"] is None
    assert telemetry.measured["heartbeat.probe_faults"] >= 1


def test_reconnect_recovers_without_a_sequence_gap(fleet: Fleet) -> None:
    for name in ("loa-ok", "bang-ok"):
        reconnect = _check(fleet.runs[name], "reconnect")
        assert reconnect.measured["missing_seqs"] == 0
        assert reconnect.measured["recovered_s"] < 5
        assert fleet.units[name].agent.log_text().count("connected to") >= 2  # it really reconnected


def test_report_records_identity_firmware_and_each_measurement(fleet: Fleet, tmp_path: Path) -> None:
    run = fleet.runs["loa-amp"]
    files = write_report(build_report(run, None, "vi"), tmp_path)
    report = json.loads(files.json_path.read_text(encoding="utf-8"))
    assert report["device"]["id"] == fleet.units["loa-amp"].id
    assert run.birth is not None
    assert report["firmware"]["agent_version"] == run.birth["agent_version"]
    assert report["passed"] is False
    amp = next(c for c in report["checks"] if c["name"] == "amplifier")
    assert amp["measured"]["amp_power_w_during"] == 0.0
    assert amp["limit"] == {"min_rise_w": 5.0}
    assert amp["started_ms"] <= amp["ended_ms"]
    html = files.html_path.read_text(encoding="utf-8")
    assert files.sha256 in html
    assert "KHÔNG ĐẠT" in html


def test_report_shows_the_modem_imei_and_sim_iccid_read_over_at_commands(
    fleet: Fleet, tmp_path: Path
) -> None:
    modem = fleet.units["bang-ok"].board.modem
    files = write_report(build_report(fleet.runs["bang-ok"], None, "vi"), tmp_path)
    report = json.loads(files.json_path.read_text(encoding="utf-8"))
    assert (report["hardware"]["imei"], report["hardware"]["iccid"]) == (modem.imei, modem.iccid)
    assert modem.imei in files.html_path.read_text(encoding="utf-8")
    # The unplugged modem leaves the identity unknown, with the reason.
    broken = fleet.runs["bang-modem"].hardware
    assert broken is not None
    assert broken["imei"] is None
    assert "AT+CGSN" in broken["error"]


def test_offline_device_is_not_sent_commands(fleet: Fleet) -> None:
    raw = fast_profile_raw("speaker_cluster")
    raw["online"]["wait_s"] = 0.5
    device_id = f"acc-nobody-{secrets.token_hex(3)}"
    run = asyncio.run(
        run_acceptance(BrokerSettings(port=fleet.broker_port), device_id, profile=parse_profile(raw))
    )
    assert not run.passed
    online = _check(run, "online")
    assert online.measured["state"] is None
    assert all("không chạy" in c.detail for c in run.checks if c.name != "online")


def test_cli_tests_one_device_writes_a_verifiable_report(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (profiles.PROFILES_DIR / "eboard.toml").read_text(encoding="utf-8")
    profile = tmp_path / "vendor.toml"
    profile.write_text(text.replace("after_s = 1\n", "after_s = 0.2\n"), encoding="utf-8")
    device = fleet.units["bang-ok"].id
    url = f"mqtt://127.0.0.1:{fleet.broker_port}"
    out = tmp_path / "out"
    code = tincoso(
        [
            "acceptance",
            device,
            "--mqtt-url",
            url,
            "--profile",
            str(profile),
            "--out",
            str(out),
            "--lang",
            "en",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "PASS 6/6" in printed
    [report] = out.glob(f"{device}-*/report.json")
    assert tincoso(["acceptance", "verify", str(report)]) == 0
    assert "OK sha256" in capsys.readouterr().out
    report.write_text(report.read_text(encoding="utf-8").replace('"passed": true', '"passed": false', 1))
    assert tincoso(["acceptance", "verify", str(report)]) == 2
    assert "MISMATCH" in capsys.readouterr().out


def test_cli_tests_every_device_of_a_commune_with_progress(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = write_registry(tmp_path / "registry.yaml", [u.fleet_device for u in fleet.units.values()])
    url = f"mqtt://127.0.0.1:{fleet.broker_port}"
    code = tincoso(
        [
            "acceptance",
            "--commune",
            "trang-xa",
            "--registry",
            str(registry),
            "--mqtt-url",
            url,
            "--out",
            str(tmp_path / "out"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "[1/2]" in printed
    assert "[2/2]" in printed
    assert "2/2 ĐẠT" in printed
    assert len(list((tmp_path / "out").glob("*/report.json.sha256"))) == 2
