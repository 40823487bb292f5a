"""The audio probe on real speech through real ALSA: no sound card, no stand-in arecord.

A Vietnamese evening bulletin (espeak-ng ``-v vi`` over sox music beds, with natural
pauses, a 10 s drop and a 16 s cut of the stream) is the ``infile`` of an ALSA ``file``
PCM under a ``plug``, defined in a test ALSA configuration (``ALSA_CONFIG_PATH``); the
probe runs the real ``arecord`` on it. See ``hil_tests/simulators/alsa_line.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.probes._audio_sources import make_source
from hil_tests.scenarios import detection_switch
from hil_tests.simulators import alsa_line

pytestmark = pytest.mark.skipif(
    bool(alsa_line.missing_tools()),
    reason=f"needs the Debian packages {alsa_line.missing_tools()} (make system-deps)",
)

ENTER_S = 15.0  # the shipped dead-air hysteresis: 15 s below -50 dBFS, clear after 10 s
WINDOW_S = 1.0


@pytest.fixture(scope="module")
def bulletin(tmp_path_factory: pytest.TempPathFactory) -> alsa_line.LineRecording:
    return alsa_line.evening_bulletin(tmp_path_factory.mktemp("line") / "line.raw", drop_s=10, cut_s=16)


@pytest.fixture
def alsa_line_in(
    bulletin: alsa_line.LineRecording, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> alsa_line.LineRecording:
    """The test ALSA configuration, for this process and the arecord it starts."""
    conf = alsa_line.write_asound_conf(tmp_path / "asound.conf", bulletin.raw)
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    return bulletin


async def capture_all(
    recording: alsa_line.LineRecording, **options: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Every report until arecord has delivered its samples and exited, the events, and why
    the probe stopped."""
    run = await alsa_line.run_probe(recording, window_s=WINDOW_S, **options)
    return run.reports, run.events, run.ended


def dead_air_events(events: list[dict[str, Any]]) -> list[tuple[str, float | None]]:
    return [(e["event"], e["duration_s"]) for e in events if e["code"] == "dead_air"]


async def test_whole_bulletin_arrives_through_alsa(alsa_line_in: alsa_line.LineRecording) -> None:
    reports, _, ended = await capture_all(alsa_line_in)
    assert "arecord exited with code 0" in ended  # -s samples delivered, nothing failed
    assert sum(r["window_s"] for r in reports) == pytest.approx(alsa_line_in.seconds)


@pytest.mark.parametrize(
    "enter_s",
    detection_switch("a 4 s detector: the 5 s pause is dead air", on=ENTER_S, off=4.0, raises=AssertionError),
)
async def test_pauses_in_the_bulletin_and_a_short_drop_are_not_dead_air(
    alsa_line_in: alsa_line.LineRecording, enter_s: float
) -> None:
    reports, events, _ = await capture_all(alsa_line_in, dead_air_enter_s=enter_s)
    cut = alsa_line_in.block("cut")
    # Everything the probe reported up to the cut: sentence pauses, 3 s and 5 s pauses
    # between items, the 10 s drop. Silent seconds are counted, but none is dead air.
    before_cut, at = [], 0.0
    for report in reports:
        at += report["window_s"]
        if at > cut.start_s + ENTER_S:
            break
        before_cut.append(report)
    drop = alsa_line_in.block("drop")
    assert sum(r["dead_air_s"] for r in before_cut) >= drop.seconds + 3 + 4
    assert not any(r["dead_air"] for r in before_cut)
    assert dead_air_events(events)[0] == ("fault_start", None)
    assert len(dead_air_events(events)) == 2  # the cut's start and end, nothing before
    # One playback from the jingle to the cut: the pauses and the drop did not end it.
    first_end = next(e for e in events if e["event"] == "playback_end")
    assert first_end["duration_s"] == cut.start_s


@pytest.mark.parametrize(
    "enter_s",
    detection_switch(
        "a 16 s detector needs 17 s: the cut goes unseen", on=ENTER_S, off=16.0, raises=AssertionError
    ),
)
async def test_cut_stream_is_dead_air_within_threshold_plus_one_window(
    alsa_line_in: alsa_line.LineRecording, enter_s: float
) -> None:
    cut = alsa_line_in.block("cut")
    assert cut.seconds == ENTER_S + WINDOW_S
    reports, events, _ = await capture_all(alsa_line_in, dead_air_enter_s=enter_s)
    # Declared during the 16 s cut (before the programme came back), and the fault's end
    # carries the silence's exact length: detection within threshold + one window.
    kinds = [(e["event"], e["code"]) for e in events]
    assert ("fault_start", "dead_air") in kinds
    start = kinds.index(("fault_start", "dead_air"))
    assert kinds[start - 1] == ("playback_end", "playback")
    assert kinds[start + 1] == ("playback_start", "playback")
    assert dead_air_events(events) == [("fault_start", None), ("fault_end", float(cut.seconds))]
    assert any(r["dead_air"] for r in reports)
    assert sum(r["dead_air_s"] for r in reports) >= cut.seconds + alsa_line_in.block("drop").seconds


async def test_level_through_alsa_is_what_sox_measures_on_the_same_file(
    alsa_line_in: alsa_line.LineRecording,
) -> None:
    reports, _, _ = await capture_all(alsa_line_in)
    sox = alsa_line.sox_stats(alsa_line_in.raw)
    assert alsa_line.energy_mean(reports) == pytest.approx(sox["rms_dbfs"], abs=1.0)
    assert max(r["peak_dbfs"] for r in reports) == pytest.approx(sox["peak_dbfs"], abs=1.0)
    assert not any(r["clipping"] for r in reports)


async def test_closing_arecord_that_has_audio_waiting_does_not_hang(
    alsa_line_in: alsa_line.LineRecording,
) -> None:
    # The agent stops reading (SIGTERM, calibrate-audio done) while arecord still has
    # seconds of audio to give: asyncio pauses the full pipe, which then never shows the
    # EOF that asyncio's wait() waits for, unless close() reads it empty.
    source = make_source(
        f"arecord:{alsa_line.DEVICE}",
        rate=alsa_line.RATE,
        device="default",
        timeout_s=5.0,
        arecord_command=alsa_line.arecord_command(alsa_line_in),
        pace=False,
    )
    await source.open()
    assert await source.read(2)
    stdout = getattr(source, "_process").stdout  # noqa: B009  (the pipe's buffer, to know it is full)
    for _ in range(200):  # until asyncio has paused the pipe (its buffer is past 2 x 64 KiB)
        if len(getattr(stdout, "_buffer")) >= 2 * 65536:  # noqa: B009
            break
        await asyncio.sleep(0.05)
    await asyncio.wait_for(source.close(), 10)
