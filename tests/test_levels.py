"""dBFS math of the audio probe (agent/core/levels.py): known levels, silence, clipping."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core import levels

RATE = 16000


def sine(freq_hz: float, rms_dbfs: float, seconds: float = 1.0, rate: int = RATE) -> list[int]:
    amplitude = 32768 * 10 ** (rms_dbfs / 20) * math.sqrt(2)
    n = int(seconds * rate)
    return [
        max(-32768, min(32767, round(amplitude * math.sin(2 * math.pi * freq_hz * i / rate))))
        for i in range(n)
    ]


def test_full_scale_sine_reads_minus_3_01_dbfs_rms_and_0_dbfs_peak() -> None:
    n = RATE
    samples = [round(32767 * math.sin(2 * math.pi * 1000 * i / RATE)) for i in range(n)]
    assert levels.rms_dbfs(samples) == pytest.approx(-3.01, abs=0.1)
    assert levels.peak_dbfs(samples) == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize("level", [-6.0, -12.0, -20.0, -40.0, -60.0])
def test_sine_at_a_known_level_measures_within_0_1_db(level: float) -> None:
    samples = sine(997.0, level)
    assert levels.rms_dbfs(samples) == pytest.approx(level, abs=0.1)
    # The peak of a sine is 3.01 dB above its RMS.
    assert levels.peak_dbfs(samples) == pytest.approx(level + 3.01, abs=0.1)


def test_square_wave_at_the_rails_is_0_dbfs_rms() -> None:
    samples = [32767, -32768] * 100
    assert levels.rms_dbfs(samples) == pytest.approx(0.0, abs=0.01)
    assert levels.peak_dbfs(samples) == 0.0


def test_digital_silence_reads_the_floor_not_minus_infinity() -> None:
    assert levels.rms_dbfs([0] * RATE) == levels.FLOOR_DBFS == -120.0
    assert levels.peak_dbfs([0] * RATE) == -120.0
    assert levels.rms_dbfs([]) == -120.0
    assert levels.mean_square_to_dbfs(0.0) == -120.0


def test_one_lsb_is_minus_90_dbfs() -> None:
    assert levels.peak_dbfs([1, 0, -1]) == pytest.approx(-90.31, abs=0.01)


def test_decode_s16le_reads_little_endian_signed_samples() -> None:
    assert levels.decode_s16le(b"\x00\x80\xff\x7f\x01\x00\xff\xff") == (-32768, 32767, 1, -1)


def test_decode_s16le_refuses_a_torn_sample() -> None:
    with pytest.raises(ValueError, match="even number of bytes, got 3"):
        levels.decode_s16le(b"\x00\x01\x02")


def test_programme_at_minus_18_does_not_clip() -> None:
    window = levels.measure_window(sine(440, -18))
    assert not window["clipping"]


def test_peak_at_full_scale_clips() -> None:
    window = levels.measure_window(sine(440, -3.0))  # peak at 0 dBFS: the amplitude hits the rails
    assert window["clipping"]


def test_flat_topped_waveform_clips_even_below_the_peak_threshold() -> None:
    samples = [0, 1000, 32767, 32767, 32767, 1000, 0]
    assert levels.longest_rail_run(samples) == 3
    assert levels.is_clipping(levels.peak_dbfs(samples), 3, clip_dbfs=0.5, clip_run=3)
    assert not levels.is_clipping(-6.0, 2)


def test_energy_mean_of_two_windows_is_not_the_mean_of_their_dbfs() -> None:
    loud, quiet = sine(1000, -10), [0] * RATE
    merged = levels.mean_square_to_dbfs((levels.sum_squares(loud) + levels.sum_squares(quiet)) / (2 * RATE))
    assert merged == pytest.approx(-13.01, abs=0.1)  # half the energy: 3 dB down


@pytest.mark.parametrize("freq", [100.0, 440.0, 1000.0, 3150.0])
def test_zero_crossings_find_a_test_tone(freq: float) -> None:
    estimate = levels.zero_crossing_hz(sine(freq, -12), RATE)
    assert estimate == pytest.approx(freq, rel=0.01)


def test_zero_crossings_of_silence_are_none() -> None:
    assert levels.zero_crossing_hz([0] * 100, RATE) is None


def test_goertzel_reads_the_tone_level_and_ignores_other_frequencies() -> None:
    tone = sine(1000, -12)
    assert levels.goertzel_dbfs(tone, RATE, 1000) == pytest.approx(-12.0, abs=0.1)
    assert levels.goertzel_dbfs(tone, RATE, 3000) < -60


samples_strategy = st.lists(st.integers(-32768, 32767), min_size=1, max_size=400)


@given(samples_strategy)
def test_levels_stay_between_the_floor_and_full_scale(samples: list[int]) -> None:
    rms, peak = levels.rms_dbfs(samples), levels.peak_dbfs(samples)
    assert -120.0 <= rms <= 0.0
    assert -120.0 <= peak <= 0.0
    assert rms <= peak + 1e-9  # RMS never exceeds the peak


@given(samples_strategy)
def test_decoding_the_encoded_samples_gives_them_back(samples: list[int]) -> None:
    data = struct.pack(f"<{len(samples)}h", *samples)
    assert list(levels.decode_s16le(data)) == samples


@given(st.binary(max_size=300))
def test_any_even_byte_string_decodes_and_measures(data: bytes) -> None:
    data = data[: len(data) // 2 * 2]
    window = levels.measure_window(levels.decode_s16le(data))
    assert window["samples"] == len(data) // 2
    assert isinstance(window["clipping"], bool)


MICROPYTHON_SCRIPT = """\
from mptest import test, run
from agent.core import levels
import math, struct

def sine(level, n=8000, rate=8000, freq=1000):
    amp = 32768 * 10 ** (level / 20) * math.sqrt(2)
    return [int(round(amp * math.sin(2 * math.pi * freq * i / rate))) for i in range(n)]

@test
def sine_levels():
    s = sine(-20.0)
    assert abs(levels.rms_dbfs(s) + 20.0) < 0.1, levels.rms_dbfs(s)
    assert abs(levels.peak_dbfs(s) + 16.99) < 0.1
    assert abs(levels.goertzel_dbfs(s, 8000, 1000) + 20.0) < 0.1
    assert abs(levels.zero_crossing_hz(s, 8000) - 1000) < 10

@test
def silence_floor_and_clipping():
    assert levels.rms_dbfs([0] * 100) == -120.0
    w = levels.measure_window([32767, -32768] * 50)
    assert w["clipping"] and w["peak_dbfs"] == 0.0

@test
def decode():
    data = struct.pack("<4h", -32768, 32767, 1, -1)
    assert list(levels.decode_s16le(data)) == [-32768, 32767, 1, -1]

run()
"""


@pytest.mark.micropython
def test_levels_run_unchanged_under_micropython(tmp_path: Path) -> None:
    from tests.test_micropython import run_micropython

    script = tmp_path / "mp_levels.py"
    script.write_text(MICROPYTHON_SCRIPT)
    proc = run_micropython(script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS") == 3, proc.stdout
