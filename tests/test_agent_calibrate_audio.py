"""``tincoso-agent calibrate-audio`` through real ALSA: a controller whose sound card reads
12 dB low is calibrated with the receiver's line-up tone, and then its dead-air threshold
means what it means on a controller with a nominal card.

The tone and the programmes are made by sox (and espeak-ng), and played to the real
``arecord`` by an ALSA ``file`` PCM from a test ``ALSA_CONFIG_PATH``
(``hil_tests/simulators/alsa_line.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hil_tests.scenarios import detection_switch
from hil_tests.simulators import alsa_line

pytestmark = pytest.mark.skipif(
    bool(alsa_line.missing_tools()),
    reason=f"needs the Debian packages {alsa_line.missing_tools()} (make system-deps)",
)

AGENT = Path(sys.executable).parent / "tincoso-agent"
REFERENCE_DBFS = -18.0  # EBU line-up level: what the receiver's tone stands for
CARD_GAIN_DB = -12.0  # this controller's card reads 12 dB below nominal


def agent_config(tmp_path: Path, recording: alsa_line.LineRecording, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'[device]\nid = "vn-trangxa-loa-03"\nkind = "speaker_cluster"\nstate_dir = "{tmp_path / "state"}"\n'
        '[mqtt]\n[clock]\nsync_check = "none"\n'
        f'[probes.audio]\nsource = "arecord:{alsa_line.DEVICE}"\n'
        f'arecord_command = "{alsa_line.arecord_command(recording)}"\n',
        encoding="utf-8",
    )
    return path


def run_agent(*args: str, alsa_conf: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALSA_CONFIG_PATH": str(alsa_conf)}
    return subprocess.run(
        [str(AGENT), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def calibrate(tmp_path: Path, tone: alsa_line.LineRecording) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp_path.mkdir(exist_ok=True)
    conf = alsa_line.write_asound_conf(tmp_path / "asound.conf", tone.raw)
    config = agent_config(tmp_path, tone)
    done = run_agent(
        "calibrate-audio", "--config", str(config), "--reference-dbfs", str(REFERENCE_DBFS), "--seconds", "2",
        alsa_conf=conf,
    )  # fmt: skip
    return done, tmp_path / "state" / "audio_calibration.json"


async def capture_all(recording: alsa_line.LineRecording, **options: Any) -> list[dict[str, Any]]:
    return (await alsa_line.run_probe(recording, **options)).reports


@pytest.fixture
def low_card_tone(tmp_path: Path) -> alsa_line.LineRecording:
    """The line-up tone as the low card captures it: -18 dBFS nominal, read at -30."""
    return alsa_line.reference_tone(tmp_path / "tone.raw", rms_dbfs=REFERENCE_DBFS + CARD_GAIN_DB)


def test_calibrate_audio_stores_the_offset_sox_implies(
    tmp_path: Path, low_card_tone: alsa_line.LineRecording
) -> None:
    done, stored = calibrate(tmp_path, low_card_tone)
    assert done.returncode == 0, done.stderr
    measured = alsa_line.sox_stats(low_card_tone.raw)["rms_dbfs"]
    entry = json.loads(stored.read_text(encoding="utf-8"))["audio"]
    assert entry["offset_db"] == pytest.approx(REFERENCE_DBFS - measured, abs=0.1)
    assert entry["offset_db"] == pytest.approx(-CARD_GAIN_DB, abs=0.1)
    assert entry["freq_hz"] == pytest.approx(1000, abs=10)
    assert done.stdout.splitlines()[0] == (
        f"audio audio: tone {entry['freq_hz']:g} Hz measured {entry['measured_dbfs']:.2f} dBFS, "
        f"reference -18 dBFS: offset {entry['offset_db']:+.2f} dB"
    )


def test_calibrate_audio_refuses_a_programme_that_is_not_the_tone(tmp_path: Path) -> None:
    bulletin = alsa_line.quiet_interlude(tmp_path / "line.raw")
    done, stored = calibrate(tmp_path, bulletin)
    assert done.returncode == 2
    assert "not a steady tone" in done.stderr
    assert not stored.exists()


@pytest.mark.parametrize(
    "calibrated",
    detection_switch("uncalibrated, the low card hears dead air", raises=AssertionError),
)
async def test_after_calibration_the_threshold_means_what_it_means_on_a_nominal_card(
    tmp_path: Path, low_card_tone: alsa_line.LineRecording, monkeypatch: pytest.MonkeyPatch, calibrated: bool
) -> None:
    done, stored = calibrate(tmp_path / "calibration", low_card_tone)
    assert done.returncode == 0, done.stderr
    # The same programme (a soft 20 s interlude at about -44 dBFS between two items) on
    # a controller with a nominal card and on the low one.
    nominal = alsa_line.quiet_interlude(tmp_path / "nominal.raw")
    low = alsa_line.quiet_interlude(tmp_path / "low.raw", capture_gain_db=CARD_GAIN_DB)
    conf = alsa_line.write_asound_conf(tmp_path / "nominal.conf", nominal.raw)
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    on_nominal = await capture_all(nominal)
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa_line.write_asound_conf(tmp_path / "low.conf", low.raw)))
    options = {"calibration_file": str(stored)} if calibrated else {}
    on_low = await capture_all(low, **options)

    assert not any(r["dead_air"] for r in on_nominal)
    assert not any(r["dead_air"] for r in on_low)
    assert alsa_line.energy_mean(on_low) == pytest.approx(alsa_line.energy_mean(on_nominal), abs=0.5)


def test_first_reading_after_calibration_is_on_the_nominal_scale(
    tmp_path: Path, low_card_tone: alsa_line.LineRecording
) -> None:
    done, _ = calibrate(tmp_path, low_card_tone)
    assert done.returncode == 0, done.stderr
    # Steady programme material, another level and pitch than the line-up tone: whichever
    # second(s) the first reading covers (a loaded machine may hand it two windows), its
    # level is the same.
    low = alsa_line.reference_tone(tmp_path / "low.raw", rms_dbfs=-40.0 + CARD_GAIN_DB, freq_hz=440.0)
    conf = alsa_line.write_asound_conf(tmp_path / "low.conf", low.raw)
    checked = run_agent(
        "check-config", "--config", str(agent_config(tmp_path, low, "low.toml")), alsa_conf=conf
    )
    assert checked.returncode == 0, checked.stdout
    line = checked.stdout.splitlines()[-1]
    assert line.startswith("probe audio: OK {")
    reading = json.loads(line[len("probe audio: OK ") :])
    # sox's level on the low card (-52 dBFS, under the -50 threshold), + the stored 12 dB.
    on_the_card = alsa_line.sox_stats(low.raw)["rms_dbfs"]
    assert on_the_card == pytest.approx(-52.0, abs=0.1)
    assert reading["rms_dbfs"] == pytest.approx(on_the_card - CARD_GAIN_DB, abs=0.1)
    assert (reading["playing"], reading["dead_air"]) == (True, False)
    assert reading["window_s"] >= 1.0
