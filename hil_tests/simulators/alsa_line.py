"""The receiver's line output as a real ALSA capture device, playing a synthesised bulletin.

No sound card is needed: an ALSA configuration (``ALSA_CONFIG_PATH``) defines a capture PCM
``receiver_line``, a ``plug`` (as ``plughw:`` is on a controller) over ALSA's ``file``
plugin, whose ``infile`` is what the "card" captures, over a ``null`` slave. The agent's
``arecord`` then reads it through libasound exactly as it reads a USB sound card.

The ``null`` slave is not paced: ``arecord`` delivers the file as fast as it is read, and
past the end of ``infile`` ALSA hands out stale buffer contents rather than silence. So a
capture is bounded by ``arecord -s SAMPLES`` (:func:`arecord_command`), the file carries
every silence itself, and the agent measures on the stream's own sample clock.

The programme is real speech: a Vietnamese commune bulletin spoken by espeak-ng
(``-v vi``), over music-like beds and jingles (sox ``pluck`` chords), with natural pauses
between items, a short drop of the stream and a cut, on the capture's noise floor.
Every block lasts whole seconds, so the agent's 1 s windows fall on block boundaries and
the expected silences are exact.

Needs the Debian packages espeak-ng, sox and alsa-utils (``make system-deps``).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RATE = 16000
DEVICE = "receiver_line"
NOISE_FLOOR_GAIN_DB = -66.0  # white noise at about -71 dBFS RMS: a USB card's input hiss
SPEECH_PEAK_DBFS = -6.0
BED_GAIN_DB = -22.0  # the music bed under speech, about 20 dB below it
JINGLE_GAIN_DB = -8.0
_CHORDS = (("C4", "E4", "G4"), ("A3", "C4", "E4"), ("F3", "A3", "C4"), ("G3", "B3", "D4"))
_FORMAT = ["-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]

# A commune bulletin, as a hamlet's speakers play it (Tràng Xá commune, Võ Nhai district).
SENTENCES = (
    "Kính thưa bà con nhân dân, đây là đài truyền thanh xã Tràng Xá.",
    "Bản tin chiều nay có ba nội dung chính.",
    "Thứ nhất, lịch tiêm phòng cho gia súc tại các xóm.",
    "Bà con đưa trâu bò đến nhà văn hóa xóm vào sáng thứ bảy.",
    "Thứ hai, thông báo về phòng chống cháy rừng trong mùa khô.",
    "Thứ ba, kết quả thu hoạch lúa vụ mùa của xã.",
    "Cảm ơn bà con đã lắng nghe. Xin chào và hẹn gặp lại.",
)


class ToolMissing(RuntimeError):
    """espeak-ng, sox or arecord is not installed; the message names the package."""


def missing_tools() -> list[str]:
    """The Debian packages this needs that are not installed (empty when all are)."""
    wanted = {"espeak-ng": "espeak-ng", "sox": "sox", "arecord": "alsa-utils"}
    return [package for program, package in wanted.items() if shutil.which(program) is None]


@dataclass(frozen=True)
class Block:
    """One stretch of the programme: what it is and where it lies in the stream (seconds)."""

    kind: str  # "jingle", "music", "speech_over_bed", "speech", "pause", "drop", "cut", "tone"
    start_s: int
    seconds: int

    @property
    def end_s(self) -> int:
        return self.start_s + self.seconds


@dataclass(frozen=True)
class LineRecording:
    """A programme ready to be captured: raw S16_LE mono at :data:`RATE`, and its layout."""

    raw: Path
    blocks: tuple[Block, ...]

    @property
    def seconds(self) -> int:
        return sum(block.seconds for block in self.blocks)

    @property
    def samples(self) -> int:
        return self.seconds * RATE

    def block(self, kind: str) -> Block:
        """The first block of that kind."""
        return next(b for b in self.blocks if b.kind == kind)


def _sox(*args: str | Path) -> None:
    done = subprocess.run(["sox", *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"sox {' '.join(map(str, args))}: {done.stderr.strip()}")


def _seconds(path: Path) -> float:
    done = subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True)
    return float(done.stdout)


def _speak(text: str, path: Path) -> None:
    spoken = path.with_suffix(".espeak.wav")
    done = subprocess.run(
        ["espeak-ng", "-v", "vi", "-s", "165", "-w", str(spoken), text], capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"espeak-ng -v vi: {done.stderr.decode(errors='replace').strip()}")
    # espeak-ng speaks at 22050 Hz close to full scale: resample, then set the peak.
    _sox(spoken, *_FORMAT, path, "rate", str(RATE), "gain", "-n", str(SPEECH_PEAK_DBFS))


def _music(seconds: int, gain_db: float, path: Path) -> None:
    """Plucked chords, one a second, in a loop (pluck needs 44.1 kHz or more, then resampled)."""
    parts = []
    for i in range(seconds):
        chord = _CHORDS[i % len(_CHORDS)]
        part = path.with_name(f"{path.stem}.{i}.wav")
        _sox("-r", "48000", "-c", "3", "-n", "-b", "16", "-e", "signed-integer", part, "synth", "1",
             *(x for note in chord for x in ("pluck", note)), "remix", "-", "rate", str(RATE),
             "gain", str(gain_db))  # fmt: skip
        parts.append(part)
    _sox(*parts, *_FORMAT, path)


def _exact(source: Path, seconds: int, path: Path) -> None:
    """``source`` padded with digital silence (the noise floor is added later) and cut to ``seconds``."""
    _sox(source, *_FORMAT, path, "pad", "0", str(seconds), "trim", "0", str(seconds))


def _silence(seconds: int, path: Path) -> None:
    _sox("-n", *_FORMAT, path, "trim", "0", str(seconds))


def _mix(inputs: list[Path], path: Path) -> None:
    """Sum the inputs at unity gain (sox -m would scale each by 1/n)."""
    args: list[str | Path] = ["-m"]
    for item in inputs:
        args += ["-v", "1", item]
    _sox(*args, *_FORMAT, path)


class _Builder:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.parts: list[Path] = []
        self.blocks: list[Block] = []
        self.at = 0

    def _next(self, kind: str) -> Path:
        return self.work / f"{len(self.parts):02d}-{kind}.wav"

    def _add(self, kind: str, path: Path, seconds: int) -> None:
        self.parts.append(path)
        self.blocks.append(Block(kind, self.at, seconds))
        self.at += seconds

    def jingle(self, seconds: int) -> None:
        path = self._next("jingle")
        _music(seconds, JINGLE_GAIN_DB, path)
        self._add("jingle", path, seconds)

    def quiet(self, kind: str, seconds: int) -> None:
        """A pause, a drop or a cut: only the capture's noise floor."""
        path = self._next(kind)
        _silence(seconds, path)
        self._add(kind, path, seconds)

    def speech_over_bed(self, text: str) -> None:
        voice = self._next("voice")
        _speak(text, voice)
        seconds = math.ceil(_seconds(voice) + 0.5)
        bed, padded, path = self._next("bed"), self._next("voicepad"), self._next("speech_over_bed")
        _music(seconds, BED_GAIN_DB, bed)
        _exact(voice, seconds, padded)
        _mix([padded, bed], path)
        self._add("speech_over_bed", path, seconds)

    def speech(self, sentences: tuple[str, ...], pause_s: float) -> None:
        """Sentences with natural pauses of ``pause_s`` between them, no bed."""
        spoken = []
        for i, text in enumerate(sentences):
            voice = self.work / f"{len(self.parts):02d}-sentence{i}.wav"
            _speak(text, voice)
            padded = voice.with_suffix(".pad.wav")
            _sox(voice, *_FORMAT, padded, "pad", "0", str(pause_s if i < len(sentences) - 1 else 0))
            spoken.append(padded)
        joined, path = self._next("joined"), self._next("speech")
        _sox(*spoken, *_FORMAT, joined)
        seconds = math.ceil(_seconds(joined))
        _exact(joined, seconds, path)
        self._add("speech", path, seconds)

    def tone(self, seconds: int, freq_hz: float, rms_dbfs: float) -> None:
        path = self._next("tone")
        # A full-scale sine is -3.01 dBFS RMS.
        gain = str(rms_dbfs + 3.0103)
        _sox("-n", *_FORMAT, path, "synth", str(seconds), "sine", str(freq_hz), "gain", gain)
        self._add("tone", path, seconds)

    def music(self, seconds: int, gain_db: float) -> None:
        path = self._next("music")
        _music(seconds, gain_db, path)
        self._add("music", path, seconds)

    def render(self, raw: Path, capture_gain_db: float) -> LineRecording:
        programme, noise = self.work / "programme.wav", self.work / "noise.wav"
        _sox(*self.parts, *_FORMAT, programme, "gain", str(capture_gain_db))
        _sox("-n", *_FORMAT, noise, "synth", str(self.at), "whitenoise", "gain", str(NOISE_FLOOR_GAIN_DB))
        _mix([programme, noise], self.work / "line.wav")
        _sox(self.work / "line.wav", "-t", "raw", *_FORMAT, raw)
        return LineRecording(raw, tuple(self.blocks))


def _build(
    raw: Path, steps: list[tuple[str, tuple[object, ...]]], capture_gain_db: float = 0.0
) -> LineRecording:
    missing = missing_tools()
    if missing:
        raise ToolMissing(f"install the Debian packages {', '.join(missing)} (make system-deps)")
    raw.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tincoso-bulletin-") as tmp:
        builder = _Builder(Path(tmp))
        for method, args in steps:
            getattr(builder, method)(*args)
        return builder.render(raw, capture_gain_db)


def evening_bulletin(raw: Path, *, drop_s: int = 10, cut_s: int = 16) -> LineRecording:
    """The evening bulletin with its pauses, then a drop of ``drop_s`` and a cut of ``cut_s``.

    Layout: jingle 4 s; greeting over the bed; pause 3 s; two items spoken with 1.2 s
    pauses between sentences; pause 4 s; an item over the bed; the stream drops
    (``drop``); an item over the bed; the stream is cut (``cut``); the closing words over
    the bed and an 8 s jingle (so dead air clears: 10 s of audio). Blocks around the drop
    and the cut have a bed, so the silence is exactly ``drop_s`` / ``cut_s`` long.
    """
    steps: list[tuple[str, tuple[object, ...]]] = [
        ("jingle", (4,)),
        ("speech_over_bed", (" ".join(SENTENCES[0:2]),)),
        ("quiet", ("pause", 3)),
        ("speech", (SENTENCES[2:4], 1.2)),
        ("quiet", ("pause", 4)),
        ("speech_over_bed", (SENTENCES[4],)),
        ("quiet", ("drop", drop_s)),
        ("speech_over_bed", (SENTENCES[5],)),
        ("quiet", ("cut", cut_s)),
        ("speech_over_bed", (SENTENCES[6],)),
        ("jingle", (8,)),
    ]
    return _build(raw, steps)


def quiet_interlude(raw: Path, *, capture_gain_db: float = 0.0) -> LineRecording:
    """Two spoken items around a soft 20 s music interlude at about -44 dBFS (``music``).

    ``capture_gain_db`` is the sound card's gain against nominal: a card 12 dB low
    captures the interlude at -56 dBFS, below the -50 dBFS dead-air threshold.
    """
    steps: list[tuple[str, tuple[object, ...]]] = [
        ("jingle", (4,)),
        ("speech_over_bed", (" ".join(SENTENCES[0:2]),)),
        ("music", (20, -26.0)),
        ("speech_over_bed", (SENTENCES[6],)),
    ]
    return _build(raw, steps, capture_gain_db)


def reference_tone(raw: Path, *, rms_dbfs: float, seconds: int = 4, freq_hz: float = 1000.0) -> LineRecording:
    """The receiver's line-up tone as the capture receives it: a sine at ``rms_dbfs``."""
    return _build(raw, [("tone", (seconds, freq_hz, rms_dbfs))])


def write_asound_conf(path: Path, infile: Path) -> Path:
    """An ALSA configuration whose capture PCM :data:`DEVICE` plays ``infile``.

    Use it with ``ALSA_CONFIG_PATH=path``: it replaces the system's configuration, so
    nothing on the machine (a default card, PulseAudio) takes part.
    """
    path.write_text(
        f"""# The receiver's line output, captured through ALSA without a sound card.
# {DEVICE}_card "captures" {infile} (raw S16_LE mono {RATE} Hz); plug converts as plughw: would.
pcm.{DEVICE}_card {{
    type file
    slave.pcm {{ type null }}
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
pcm.{DEVICE} {{
    type plug
    slave {{ pcm "{DEVICE}_card" format S16_LE rate {RATE} channels 1 }}
}}
""",
        encoding="utf-8",
    )
    return path


def arecord_command(recording: LineRecording) -> str:
    """``arecord`` bounded to the recording's length (the ``null`` slave never ends)."""
    return f"arecord -s {recording.samples}"


def sox_stats(raw: Path, first_s: float | None = None) -> dict[str, float]:
    """``sox RAW -n stats``: the level sox measures, ``rms_dbfs`` and ``peak_dbfs``
    (of the first ``first_s`` seconds only, when given)."""
    trim = ["trim", "0", str(first_s)] if first_s else []
    done = subprocess.run(
        ["sox", "-t", "raw", *_FORMAT, str(raw), "-n", *trim, "stats"],
        capture_output=True,
        text=True,
        check=True,
    )
    values: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if line.startswith("RMS lev dB"):
            values["rms_dbfs"] = float(line.split()[3])
        elif line.startswith("Pk lev dB"):
            values["peak_dbfs"] = float(line.split()[3])
    return values


@dataclass
class ProbeRun:
    """What the agent's audio probe reported on a recording, until ``arecord`` ended."""

    reports: list[dict[str, Any]]
    events: list[dict[str, Any]]
    ended: str  # the probe's error when arecord exited


def energy_mean(reports: list[dict[str, Any]]) -> float:
    """The level (dBFS) over every window of ``reports``, averaged by energy."""
    seconds = sum(r["window_s"] for r in reports)
    power = sum(r["window_s"] * 10 ** (r["rms_dbfs"] / 10) for r in reports)
    return 10 * math.log10(power / seconds)


async def run_probe(recording: LineRecording, **options: Any) -> ProbeRun:
    """The agent's audio probe on ``recording`` through ALSA (``ALSA_CONFIG_PATH`` set by the
    caller): every report until ``arecord`` has delivered its samples and exited, and the
    events. ``options`` are the ``[probes.audio]`` settings."""
    from agent.probes import ProbeError, create

    section = {
        "source": f"arecord:{DEVICE}",
        "arecord_command": arecord_command(recording),
        "rate": RATE,
        "read_timeout_s": 5.0,
        **options,
    }
    probe = create("audio", section)
    reports: list[dict[str, Any]] = []
    await probe.start()
    try:
        for _ in range(max(500, 2 * recording.seconds)):
            try:
                reports.append(await probe.read())
            except ProbeError as exc:
                return ProbeRun(reports, probe.drain_events(), str(exc))
    finally:
        await probe.close()
    raise RuntimeError("arecord never ended")


def _main() -> None:
    """Build the bulletin, print its layout, sox's level and the agent probe's level through
    ALSA (``python -m hil_tests.simulators.alsa_line DIR``)."""
    import asyncio
    import os
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="tincoso-line-"))
    recording = evening_bulletin(out / "line.raw")
    conf = write_asound_conf(out / "asound.conf", recording.raw)
    for block in recording.blocks:
        print(f"{block.start_s:3d}-{block.end_s:3d} s  {block.kind}")
    stats = sox_stats(recording.raw)
    print(f"sox: RMS {stats['rms_dbfs']} dBFS, peak {stats['peak_dbfs']} dBFS")
    print(f"ALSA_CONFIG_PATH={conf} {arecord_command(recording)} -D {DEVICE} -t raw -f S16_LE -c 1 -r {RATE}")
    os.environ["ALSA_CONFIG_PATH"] = str(conf)
    run = asyncio.run(run_probe(recording))
    level = energy_mean(run.reports)
    dead_air = sum(1 for e in run.events if (e["event"], e["code"]) == ("fault_start", "dead_air"))
    print(f"agent audio probe through ALSA: RMS {level:.3f} dBFS, dead air declared {dead_air} time(s)")


if __name__ == "__main__":
    _main()
