"""``tincoso-agent calibrate-audio``: make the capture's dBFS mean the same on every controller.

Dead-air and level thresholds are in dBFS of the capture, but one USB sound card's input
gain is not another's, and receivers differ in line level. Calibration receives a
reference tone at the receiver's nominal line level (the receiver plays it, or this
command plays it through ``[commands] player`` with ``--play``), measures its RMS through
the same capture path the probe uses, and stores ``offset_db = reference - measured`` in
``<state_dir>/audio_calibration.json``. The audio probe adds the offset to every level it
reports, so "-50 dBFS" is 50 dB below that controller's nominal line level everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import struct
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError, load
from agent.core import levels

CALIBRATION_FILE = "audio_calibration.json"
SETTLE_S = 0.5  # the first half second (a player starting, a capture settling) is not measured
MIN_TONE_DBFS = -60.0
# A sine's peak is 3.01 dB above its RMS; speech or music is 10-20 dB above. A reading far
# from 3 dB is not the reference tone.
_SINE_CREST_DB = 3.01
_CREST_TOLERANCE_DB = 1.5


class CalibrationError(Exception):
    """No tone, not a tone, or no audio probe to calibrate; the message says which."""


def calibration_path(state_dir: Path) -> Path:
    """Where the offsets are kept (one entry per audio probe)."""
    return state_dir / CALIBRATION_FILE


def load_offset(path: str | Path | None, probe: str) -> float:
    """The stored capture offset of ``probe`` in dB; 0 when not calibrated.

    Raises:
        ValueError: the file exists but is not a calibration file (the probe must not
            measure with an unknown offset).
    """
    if not path:
        return 0.0
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0.0
    except OSError as exc:
        raise ValueError(f"audio calibration {path}: cannot be read ({exc.strerror})") from None
    try:
        entry = json.loads(text).get(probe)
        if entry is None:
            return 0.0
        offset = float(entry["offset_db"])
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ValueError(f"audio calibration {path}: not a calibration file (entry {probe!r})") from None
    if not -60 <= offset <= 60:
        raise ValueError(f"audio calibration {path}: offset_db of {probe!r} is {offset}, outside -60..60")
    return offset


def measure_tone(samples: list[int] | tuple[int, ...], rate: int) -> dict[str, float]:
    """RMS, peak and frequency of a received reference tone.

    Raises:
        CalibrationError: the level is below -60 dBFS, or the signal is not a steady tone.
    """
    skip = int(rate * SETTLE_S)
    body = samples[skip:] if len(samples) > 2 * skip else samples
    rms = levels.rms_dbfs(body)
    peak = levels.peak_dbfs(body)
    if rms < MIN_TONE_DBFS:
        raise CalibrationError(
            f"no reference tone: the capture reads {rms:.1f} dBFS (is the receiver playing?)"
        )
    crest = peak - rms
    if abs(crest - _SINE_CREST_DB) > _CREST_TOLERANCE_DB:
        raise CalibrationError(
            f"not a steady tone: peak is {crest:.1f} dB above RMS (a sine: 3.0 dB); programme playing?"
        )
    if levels.is_clipping(peak, levels.longest_rail_run(body)):
        raise CalibrationError(f"the tone clips the capture at {peak:.1f} dBFS: lower the capture gain")
    freq = levels.zero_crossing_hz(body, rate)
    return {"rms_dbfs": round(rms, 2), "peak_dbfs": round(peak, 2), "freq_hz": round(freq or 0.0, 1)}


def store(path: Path, probe: str, entry: dict[str, Any]) -> None:
    """Write ``entry`` for ``probe`` into the calibration file (atomic, other probes kept)."""
    data: dict[str, Any] = {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[probe] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_tone(path: Path, rate: int, seconds: float, freq_hz: float, level_dbfs: float) -> None:
    """A sine WAV at ``level_dbfs`` RMS (for ``--play``)."""
    amplitude = levels.FULL_SCALE * 10 ** ((level_dbfs + _SINE_CREST_DB) / 20)
    n = int(rate * seconds)
    frames = struct.pack(
        f"<{n}h", *(round(amplitude * math.sin(2 * math.pi * freq_hz * i / rate)) for i in range(n))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


async def capture(config: AgentConfig, probe: str, seconds: float) -> tuple[list[int], int]:
    """``seconds`` of PCM through the probe's own source (same device, rate, command)."""
    from agent.probes._audio_sources import AudioSourceError, make_source

    section = config.probes.get(probe)
    if section is None or section.get("kind", probe) != "audio":
        audio = [n for n, s in config.probes.items() if s.get("kind", n) == "audio"]
        raise CalibrationError(
            f"no audio probe {probe!r} in {config.source} (audio probes: {audio or 'none'})"
        )
    from agent.probes.audio import AudioProbe

    spec = AudioProbe(probe, section)  # validates the section exactly as the agent would
    source = make_source(
        spec.source_spec,
        rate=spec.rate,
        device=spec.device,
        timeout_s=spec.read_timeout_s,
        arecord_command=spec.arecord_command,
        pace=False,
    )
    try:
        await source.open()
        wanted = 2 * int(source.rate * seconds)
        data = bytearray()
        while len(data) < wanted:
            chunk = await source.read(wanted - len(data))
            if not chunk:
                break
            data += chunk
    except AudioSourceError as exc:
        raise CalibrationError(f"audio source {source.label}: {exc}") from None
    finally:
        await source.close()
    data = data[: len(data) - len(data) % 2]
    return list(levels.decode_s16le(bytes(data))), source.rate


async def calibrate(
    config: AgentConfig, probe: str, reference_dbfs: float, seconds: float, play_hz: float | None = None
) -> dict[str, Any]:
    """Receive (or play and receive) the tone, store and return the calibration entry."""
    player: asyncio.subprocess.Process | None = None
    with tempfile.TemporaryDirectory() as tmp:
        if play_hz is not None:
            wav = Path(tmp) / "reference.wav"
            write_tone(wav, 48000, seconds + 2 * SETTLE_S, play_hz, reference_dbfs)
            argv = [part.replace("{wav}", str(wav)) for part in config.player or []]
            if not argv:
                raise CalibrationError("[commands] player is not set: cannot --play")
            player = await asyncio.create_subprocess_exec(*argv)
        try:
            samples, rate = await capture(config, probe, seconds + SETTLE_S)
        finally:
            if player is not None and player.returncode is None:
                player.terminate()
                await player.wait()
    tone = measure_tone(samples, rate)
    entry = {
        "offset_db": round(reference_dbfs - tone["rms_dbfs"], 2),
        "reference_dbfs": reference_dbfs,
        "measured_dbfs": tone["rms_dbfs"],
        "peak_dbfs": tone["peak_dbfs"],
        "freq_hz": tone["freq_hz"],
        "seconds": round(len(samples) / rate, 2),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    store(calibration_path(config.state_dir), probe, entry)
    return entry


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``calibrate-audio`` subcommand."""
    parser = sub.add_parser(
        "calibrate-audio",
        parents=parents,
        help="measure a reference tone and store the capture's offset (state_dir/audio_calibration.json)",
        description="Receive a reference tone at the receiver's nominal line level through the audio "
        "probe's capture, and store offset = reference - measured, which the probe adds to every "
        "level. Stop the agent first (the sound card has one reader).",
    )
    parser.add_argument(
        "--reference-dbfs",
        type=float,
        default=-18.0,
        metavar="DBFS",
        help="the level the tone stands for, in calibrated dBFS (default -18: EBU line-up level)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to measure (default 3)")
    parser.add_argument("--probe", default="audio", help="which [probes.<name>] to calibrate (default audio)")
    parser.add_argument(
        "--play",
        type=float,
        metavar="HZ",
        help="play the tone at this frequency through [commands] player while measuring (a loopback)",
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        entry = asyncio.run(calibrate(config, args.probe, args.reference_dbfs, args.seconds, args.play))
    except (ConfigError, CalibrationError) as exc:
        print(f"tincoso-agent calibrate-audio: {exc}", file=sys.stderr)
        return 2
    print(
        f"audio {args.probe}: tone {entry['freq_hz']:g} Hz measured {entry['measured_dbfs']:.2f} dBFS, "
        f"reference {entry['reference_dbfs']:g} dBFS: offset {entry['offset_db']:+.2f} dB"
    )
    print(f"stored in {calibration_path(config.state_dir)}; the agent applies it at its next start")
    return 0
