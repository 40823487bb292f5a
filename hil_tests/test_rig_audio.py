"""Audio source and speaker cluster: the levels a sound card would measure, the amplifier's draw."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil_tests.simulators.audio import AudioSource, peak_dbfs, read_pcm, rms_dbfs
from hil_tests.simulators.board import Board
from hil_tests.simulators.speaker_cluster import SpeakerCluster

WINDOW_S = 0.5


@pytest.fixture
def source(tmp_path: Path) -> Iterator[AudioSource]:
    with AudioSource(programme_file=tmp_path / "now_playing") as running:
        yield running


@pytest.mark.parametrize("level", [-6.0, -18.0, -30.0])
def test_programme_measures_its_requested_rms_level(source: AudioSource, level: float) -> None:
    source.play_programme("ban-tin-chieu", level)
    measured = rms_dbfs(read_pcm(source.url, WINDOW_S))
    assert measured == pytest.approx(level, abs=0.5)
    assert source.programme_file is not None
    assert source.programme_file.read_text() == "ban-tin-chieu"


def test_programme_has_a_speech_like_envelope(source: AudioSource) -> None:
    source.play_programme("ban-tin-sang", -18.0)
    pcm = read_pcm(source.url, 1.0)
    per_50ms = [rms_dbfs(pcm[i : i + 1600]) for i in range(0, len(pcm), 1600)]
    # Syllables and the pauses between them: the short-term level swings by more than 10 dB.
    assert max(per_50ms) - min(per_50ms) > 10
    assert peak_dbfs(pcm) < -1.0


def test_tone_measures_its_level(source: AudioSource) -> None:
    source.tone(1000, -12.0)
    pcm = read_pcm(source.url, WINDOW_S)
    assert rms_dbfs(pcm) == pytest.approx(-12.0, abs=0.5)
    # A sine's peak is 3 dB above its RMS.
    assert peak_dbfs(pcm) == pytest.approx(-12.0 + 3.01, abs=0.5)
    assert source.programme_file is not None
    assert source.programme_file.read_text() == ""


def test_silence_is_digital_zero_or_a_noise_floor(source: AudioSource) -> None:
    source.silence()
    assert rms_dbfs(read_pcm(source.url, WINDOW_S)) == -200.0
    source.silence(-70.0)
    assert rms_dbfs(read_pcm(source.url, WINDOW_S)) == pytest.approx(-70.0, abs=0.5)


def test_clip_is_full_scale(source: AudioSource) -> None:
    source.clip()
    pcm = read_pcm(source.url, WINDOW_S)
    assert rms_dbfs(pcm) == pytest.approx(0.0, abs=0.5)
    assert peak_dbfs(pcm) == pytest.approx(0.0, abs=0.01)


def test_stream_runs_in_real_time(source: AudioSource) -> None:
    source.tone(440, -20.0)
    started = time.monotonic()
    read_pcm(source.url, 0.6)
    assert 0.45 < time.monotonic() - started < 1.5


def test_every_client_gets_the_stream_and_a_closed_one_is_dropped(source: AudioSource) -> None:
    source.tone(1000, -12.0)
    idle = socket.create_connection(("127.0.0.1", source.port))
    assert rms_dbfs(read_pcm(source.url, 0.2)) == pytest.approx(-12.0, abs=0.5)
    idle.close()
    deadline = time.monotonic() + 3
    while source.client_count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert source.client_count == 0


def test_speaker_cluster_amplifier_follows_the_bulletin(tmp_path: Path) -> None:
    with SpeakerCluster(tmp_path, seed=1) as cluster:
        cluster.power_meter.noise = False
        assert cluster.power_meter.true_power_w() == pytest.approx(8.0)
        cluster.start_bulletin("ban-tin-chieu", -20.0)
        assert cluster.power_meter.true_power_w() == pytest.approx(8.0 + 120 * 0.1)
        assert cluster.programme_file.read_text() == "ban-tin-chieu"
        cluster.amplifier_dies()
        assert cluster.power_meter.true_power_w() == 0.0
        cluster.repair()
        cluster.speaker_line_cut()
        assert cluster.power_meter.true_power_w() == pytest.approx(8.0)
        cluster.repair()
        cluster.dead_air()
        assert cluster.programme_file.read_text() == "ban-tin-chieu"
        assert rms_dbfs(read_pcm(cluster.audio.url, 0.2)) < -60
        cluster.end_bulletin()
        assert cluster.programme_file.read_text() == ""


def test_scheduled_bulletin_starts_and_stops_on_time(tmp_path: Path) -> None:
    with SpeakerCluster(tmp_path) as cluster:
        started = time.monotonic()
        cluster.schedule_bulletin("ban-tin-sang", start_in_s=0.2, duration_s=0.5)
        assert cluster.audio.mode == "silence"
        _wait_until(lambda: cluster.audio.mode == "programme")
        assert time.monotonic() - started >= 0.2
        _wait_until(lambda: cluster.audio.mode == "silence")
        assert time.monotonic() - started >= 0.7
        assert [c.mode for c in cluster.audio.history] == ["silence", "silence", "programme", "silence"]
        on, off = cluster.audio.history[2].at, cluster.audio.history[3].at
        assert off - on == pytest.approx(0.5, abs=0.2)


def _wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met in {timeout:g} s"
        time.sleep(0.01)


def test_speaker_cluster_modem_signal_vanishes_and_returns(tmp_path: Path) -> None:
    with SpeakerCluster(tmp_path) as cluster:
        cluster.signal_lost()
        assert cluster.modem.rssi() == 99
        cluster.signal_restored(25)
        assert cluster.modem.rssi() == 25
        assert set(cluster.probe_urls()) == {"audio", "power_meter", "modem"}


def test_board_goes_dark_and_is_repaired() -> None:
    with Board("district_led") as board:
        board.goes_dark()
        assert board.display.status()["blank"] is True
        board.repair()
        assert board.display.status()["blank"] is False
        assert board.display.status()["modules_total"] == 48
