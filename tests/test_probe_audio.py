"""Audio probe over real byte streams: a WAV file, a FIFO, a TCP stream, a fake arecord."""

from __future__ import annotations

import asyncio
import math
import os
import struct
import sys
import threading
import wave
from pathlib import Path
from typing import Any

import pytest

from agent.probes import ProbeError, create
from agent.probes._audio_sources import TcpSource
from agent.probes.audio import AudioProbe
from agent.probes.base import stop_task
from hil_tests.simulators.audio import AudioSource

RATE = 8000


def tone(seconds: float, rms_dbfs: float = -20.0, freq: float = 1000.0, rate: int = RATE) -> bytes:
    amplitude = 32768 * 10 ** (rms_dbfs / 20) * math.sqrt(2)
    n = int(seconds * rate)
    samples = [round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]
    return struct.pack(f"<{n}h", *samples)


def silence(seconds: float, rate: int = RATE) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


def square(seconds: float, rate: int = RATE) -> bytes:
    return struct.pack("<2h", 32767, -32768) * int(seconds * rate / 2)


def write_wav(path: Path, pcm: bytes, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


def make_probe(source: str, **options: Any) -> AudioProbe:
    probe = create("audio", {"source": source, "rate": RATE, "read_timeout_s": 1.0, **options})
    assert isinstance(probe, AudioProbe)
    return probe


async def read_until_error(probe: AudioProbe) -> tuple[list[dict[str, Any]], ProbeError]:
    reports = []
    for _ in range(100):
        try:
            reports.append(await probe.read())
        except ProbeError as exc:
            return reports, exc
    raise AssertionError("the source never ended")


def energy_mean(reports: list[dict[str, Any]]) -> float:
    total = sum(r["window_s"] for r in reports)
    power = sum(r["window_s"] * 10 ** (r["rms_dbfs"] / 10) for r in reports)
    return 10 * math.log10(power / total)


async def test_evening_bulletin_from_wav_file_gives_levels_playback_and_dead_air(tmp_path: Path) -> None:
    programme = tmp_path / "now_playing"
    programme.write_text("ban-tin-chieu-2025-11-26\n")
    wav = tmp_path / "line_out.wav"
    write_wav(wav, tone(3) + silence(20) + tone(12))
    probe = make_probe(f"file:{wav}", programme_file=str(programme))
    await probe.start()
    try:
        reports, error = await read_until_error(probe)
    finally:
        await probe.close()
    assert "audio source file:" in str(error)
    assert "stream ended" in str(error)
    assert sum(r["window_s"] for r in reports) == pytest.approx(35.0)
    assert sum(r["dead_air_s"] for r in reports) == pytest.approx(20.0)
    assert any(r["dead_air"] for r in reports)
    assert energy_mean(reports) == pytest.approx(-20 + 10 * math.log10(15 / 35), abs=0.1)
    assert max(r["peak_dbfs"] for r in reports) == pytest.approx(-16.99, abs=0.1)
    assert reports[-1]["playing"] is True
    assert reports[-1]["programme"] == "ban-tin-chieu-2025-11-26"
    assert not any(r["clipping"] for r in reports)
    events = [(e["event"], e["code"], e["duration_s"]) for e in probe.drain_events()]
    assert events == [
        ("playback_start", "playback", None),
        ("playback_end", "playback", 3.0),  # ended when dead air was declared, 15 s later
        ("fault_start", "dead_air", None),
        ("playback_start", "playback", None),
        ("fault_end", "dead_air", 20.0),  # the silence lasted 20 s
    ]
    assert probe.errors == 1


async def test_ended_file_is_reopened_on_the_next_read(tmp_path: Path) -> None:
    raw = tmp_path / "line_out.raw"
    raw.write_bytes(tone(2, -30))
    probe = make_probe(f"file:{raw}")
    try:
        await probe.start()
        first, _ = await read_until_error(probe)
        again, _ = await read_until_error(probe)
    finally:
        await probe.close()
    assert sum(r["window_s"] for r in first) == sum(r["window_s"] for r in again) == pytest.approx(2.0)
    assert energy_mean(again) == pytest.approx(-30.0, abs=0.1)
    assert probe.errors == 2


async def test_overdriven_output_is_clipping(tmp_path: Path) -> None:
    raw = tmp_path / "clip.raw"
    raw.write_bytes(square(2))
    probe = make_probe(f"file:{raw}")
    try:
        reports, _ = await read_until_error(probe)
    finally:
        await probe.close()
    assert all(r["clipping"] for r in reports)
    assert reports[0]["peak_dbfs"] == 0.0
    assert reports[0]["rms_dbfs"] == pytest.approx(0.0, abs=0.01)


async def test_missing_file_is_a_probe_error_naming_it(tmp_path: Path) -> None:
    probe = make_probe("file:%s" % (tmp_path / "absent.wav"))
    await probe.start()  # never raises for a missing source
    with pytest.raises(ProbeError, match=r"audio source file:.*absent\.wav: cannot open"):
        await probe.read()
    await probe.close()


async def test_stereo_wav_is_refused_with_the_reason(tmp_path: Path) -> None:
    wav = tmp_path / "stereo.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(silence(1))
    probe = make_probe(f"file:{wav}")
    with pytest.raises(ProbeError, match="WAV must be 16-bit mono, got 16-bit with 2 channels"):
        await probe.read()
    await probe.close()


def feed_fifo(path: Path, pcm: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as fifo:  # blocks until the probe opens its end
            fifo.write(pcm)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


async def test_fifo_stream_is_measured_and_writer_closing_ends_it(tmp_path: Path) -> None:
    fifo = tmp_path / "receiver.pcm"
    os.mkfifo(fifo)
    probe = make_probe(f"fifo:{fifo}", dead_air_enter_s=1.0, dead_air_clear_s=0.5)
    try:
        await probe.start()
        writer = feed_fifo(fifo, tone(2, -12) + silence(2))
        reports, error = await read_until_error(probe)
        await asyncio.to_thread(writer.join, 5)
        assert "audio source fifo:" in str(error)
        assert sum(r["window_s"] for r in reports) == pytest.approx(4.0)
        assert sum(r["dead_air_s"] for r in reports) == pytest.approx(2.0)
        assert reports[-1]["playing"] is False
        assert reports[-1]["dead_air"] is True
        codes = [(e["event"], e["code"]) for e in probe.drain_events()]
        assert codes == [
            ("playback_start", "playback"),
            ("playback_end", "playback"),
            ("fault_start", "dead_air"),
        ]
        # The receiver restarts and writes again: the next read reopens the pipe.
        writer = feed_fifo(fifo, tone(1, -12))
        again, _ = await read_until_error(probe)
        await asyncio.to_thread(writer.join, 5)
        assert again[0]["playing"] is True
    finally:
        await probe.close()


async def test_fifo_without_a_writer_is_a_probe_error(tmp_path: Path) -> None:
    fifo = tmp_path / "silent.pcm"
    os.mkfifo(fifo)
    probe = make_probe(f"fifo:{fifo}", read_timeout_s=0.3)
    await probe.start()
    try:
        with pytest.raises(ProbeError, match="no writer on the pipe"):
            await probe.read()
    finally:
        await probe.close()


class PcmServer:
    """A TCP server the test feeds: each connection gets the next programme of PCM bytes."""

    def __init__(self, *streams: bytes, hold_open: bool = False, pace_s: float = 0.0) -> None:
        self.streams = list(streams)
        self.hold_open = hold_open
        self.pace_s = pace_s  # pause after each 0.1 s of audio, like a live line
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> PcmServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        data = self.streams.pop(0) if self.streams else b""
        step = RATE // 5  # 0.1 s of S16_LE
        try:
            for i in range(0, len(data), step):
                writer.write(data[i : i + step])
                await writer.drain()
                if self.pace_s:
                    await asyncio.sleep(self.pace_s)
            if self.hold_open:
                await reader.read()  # until the probe hangs up
        except ConnectionError:
            pass  # the probe hung up mid-stream
        finally:
            writer.close()


async def test_test_tone_measure_over_tcp_reads_level_and_frequency() -> None:
    async with PcmServer(silence(0.5) + tone(3, -12, freq=1000), hold_open=True, pace_s=0.03) as server:
        probe = make_probe(server.url, window_s=0.5)
        try:
            await probe.start()
            await probe.read()  # the leading silence
            measured = await probe.measure(2.0, freq_hz=1000)
        finally:
            await probe.close()
    assert measured["seconds"] == pytest.approx(2.0)
    assert measured["rms_dbfs"] == pytest.approx(-12.0, abs=0.1)
    assert measured["tone_dbfs"] == pytest.approx(-12.0, abs=0.1)
    assert measured["freq_hz"] == pytest.approx(1000, rel=0.01)
    assert measured["clipping"] is False


async def test_tcp_stream_that_disconnects_is_an_error_then_reconnects() -> None:
    async with PcmServer(tone(1, -20), tone(1, -30)) as server:
        probe = make_probe(server.url)
        try:
            await probe.start()
            first, error = await read_until_error(probe)
            second, _ = await read_until_error(probe)
        finally:
            await probe.close()
        assert server.connections == 2
    assert "audio source tcp://127.0.0.1" in str(error)
    assert first[0]["rms_dbfs"] == pytest.approx(-20.0, abs=0.1)
    assert second[0]["rms_dbfs"] == pytest.approx(-30.0, abs=0.1)


async def test_stalled_tcp_stream_is_a_probe_error() -> None:
    async with PcmServer(tone(1), hold_open=True) as server:
        probe = make_probe(server.url, read_timeout_s=0.3)
        try:
            await probe.start()
            await probe.read()
            with pytest.raises(ProbeError, match=r"no audio for 0\.3 s"):
                await probe.read()
        finally:
            await probe.close()


async def test_nothing_listening_is_a_probe_error(unused_tcp_port: int) -> None:
    probe = make_probe(f"tcp://127.0.0.1:{unused_tcp_port}")
    with pytest.raises(ProbeError, match="cannot connect"):
        await probe.read()
    await probe.close()
    assert probe.errors == 1


async def test_hil_audio_source_programme_then_stalled_stream_is_dead_air_with_programme(
    tmp_path: Path,
) -> None:
    now_playing = tmp_path / "now_playing"
    with AudioSource(rate=RATE, programme_file=now_playing) as source:
        source.play_programme("ban-tin-sang-0530", level_dbfs=-18.0)
        probe = make_probe(
            source.url,
            programme_file=str(now_playing),
            window_s=0.25,
            dead_air_enter_s=0.5,
            dead_air_clear_s=0.25,
        )
        try:
            await probe.start()
            await asyncio.sleep(0.8)
            report = await probe.read()
            source.silence(programme_id="ban-tin-sang-0530")  # the receiver thinks it still plays
            await asyncio.sleep(1.0)
            quiet = await probe.read()
        finally:
            await probe.close()
    assert report["playing"] is True
    assert report["rms_dbfs"] == pytest.approx(-18.0, abs=1.0)
    assert report["programme"] == "ban-tin-sang-0530"
    assert quiet["playing"] is False
    assert quiet["dead_air"] is True
    events = probe.drain_events()
    assert events[0]["event"] == "playback_start"
    assert events[0]["programme"] == "ban-tin-sang-0530"
    dead_air = [e for e in events if e["code"] == "dead_air"]
    assert dead_air[0]["event"] == "fault_start"
    assert dead_air[0]["programme"] == "ban-tin-sang-0530"


async def test_a_read_cancelled_as_its_audio_arrives_is_cancelled() -> None:
    # CI hung here for 300 s: the probe was closed while the stream's bytes landed, the
    # read returned them (asyncio.wait_for on 3.11 drops that cancel) and the measuring
    # loop ran on, so close() waited for ever.
    source = TcpSource("127.0.0.1", 1, RATE, timeout_s=5.0)
    source._reader = asyncio.StreamReader()
    read = asyncio.create_task(source.read(4000))
    await asyncio.sleep(0)  # the read waits for bytes
    source._reader.feed_data(b"\x00\x00" * 100)
    read.cancel()
    await asyncio.wait({read}, timeout=1.0)
    assert read.cancelled()


async def test_stopping_a_task_that_loses_a_cancel_still_ends_it() -> None:
    loops = 0

    async def measuring_loop() -> None:  # a cancel lost once, as inside a library
        nonlocal loops
        while True:
            loops += 1
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if loops > 5:
                    raise

    task = asyncio.create_task(measuring_loop())
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(stop_task(task))
    done, _ = await asyncio.wait({stopping}, timeout=3.0)
    if not done:  # leave nothing running behind a failed test
        task.cancel()
        await asyncio.wait({stopping}, timeout=1.0)
    assert done, "stop_task waited on a task that lost its cancel"
    assert task.cancelled()


FAKE_ARECORD = """\
import math, struct, sys
args = sys.argv[1:]
if "--fail" in open(sys.argv[0] + ".mode").read():
    sys.stderr.write("arecord: main:831: audio open error: No such device\\n")
    sys.exit(1)
open(sys.argv[0] + ".args", "w").write(" ".join(args))
rate = int(args[args.index("-r") + 1])
amp = 32768 * 10 ** (-24 / 20) * math.sqrt(2)
pcm = struct.pack("<%dh" % rate, *(round(amp * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate)))
sys.stdout.buffer.write(pcm * 2)
"""


def fake_arecord(tmp_path: Path, mode: str = "") -> Path:
    script = tmp_path / "arecord"
    script.write_text(f"#!{sys.executable}\n{FAKE_ARECORD}")
    script.chmod(0o755)
    Path(str(script) + ".mode").write_text(mode)
    return script


async def test_arecord_source_runs_the_capture_command_and_measures_it(tmp_path: Path) -> None:
    script = fake_arecord(tmp_path)
    probe = make_probe("arecord", device="plughw:1,0", arecord_command=str(script))
    try:
        await probe.start()
        reports, error = await read_until_error(probe)
    finally:
        await probe.close()
    args = await asyncio.to_thread(Path(str(script) + ".args").read_text)
    assert args == "-q -t raw -f S16_LE -c 1 -r 8000 -D plughw:1,0"
    assert energy_mean(reports) == pytest.approx(-24.0, abs=0.1)
    assert "arecord exited with code 0" in str(error)


async def test_arecord_command_may_carry_its_own_options(tmp_path: Path) -> None:
    script = fake_arecord(tmp_path)
    probe = make_probe("arecord", arecord_command=f"'{script}' --buffer-time=500000")
    try:
        await probe.start()
        await read_until_error(probe)
    finally:
        await probe.close()
    args = await asyncio.to_thread(Path(str(script) + ".args").read_text)
    assert args == "--buffer-time=500000 -q -t raw -f S16_LE -c 1 -r 8000 -D default"


def test_arecord_command_with_unclosed_quote_is_refused_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match='arecord_command "arecord \'-D": No closing quotation'):
        create("audio", {"source": "arecord", "arecord_command": "arecord '-D"})


async def test_arecord_failing_reports_its_message(tmp_path: Path) -> None:
    script = fake_arecord(tmp_path, mode="--fail")
    probe = make_probe("arecord:hw:9", arecord_command=str(script))
    try:
        with pytest.raises(
            ProbeError, match="arecord exited with code 1: arecord: main:831: audio open error"
        ):
            await probe.read()
    finally:
        await probe.close()


async def test_arecord_not_installed_is_a_probe_error(tmp_path: Path) -> None:
    probe = make_probe("arecord", arecord_command=str(tmp_path / "no-arecord"))
    with pytest.raises(ProbeError, match="cannot run"):
        await probe.read()
    await probe.close()


def test_bad_source_is_refused_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="audio source must be arecord"):
        create("audio", {"source": "http://example/stream"})
