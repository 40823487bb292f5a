"""Audio level math on 16-bit PCM: RMS and peak in dBFS, clipping, tone frequency.

dBFS is relative to the full scale of a signed 16-bit sample (32768), with RMS measured
against full scale too, so a full-scale sine reads -3.01 dBFS RMS and 0 dBFS peak (the
convention of most meters and of AWS MediaLive's silence threshold). Digital silence has
no logarithm; it reads :data:`FLOOR_DBFS` (-120 dBFS), far below the quietest non-zero
16-bit signal (one LSB, -90.3 dBFS).

Portable: runs unchanged on CPython and MicroPython (``math`` and ``struct`` only).
"""

import math
import struct

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

FULL_SCALE = 32768
FLOOR_DBFS = -120.0
CLIP_DBFS = -0.1
CLIP_RUN = 3
# A sample this large in magnitude is at the rail: 32767 or -32768 (or -32767).
_RAIL = 32767


def decode_s16le(data: "bytes | bytearray | memoryview") -> "tuple[int, ...]":
    """Decode raw signed 16-bit little-endian mono PCM into sample values.

    Raises:
        ValueError: the data has an odd number of bytes (a torn sample).
    """
    n = len(data)
    if n % 2:
        raise ValueError("S16_LE PCM must have an even number of bytes, got %d" % n)
    return struct.unpack("<%dh" % (n // 2), data)


def to_dbfs(amplitude: float) -> float:
    """Amplitude (in sample units) as dBFS, floored at :data:`FLOOR_DBFS`."""
    if amplitude <= 0:
        return FLOOR_DBFS
    value = 20 * math.log10(amplitude / FULL_SCALE)
    return value if value > FLOOR_DBFS else FLOOR_DBFS


def mean_square_to_dbfs(mean_square: float) -> float:
    """Mean of squared samples (signal power) as RMS dBFS, floored at :data:`FLOOR_DBFS`."""
    if mean_square <= 0:
        return FLOOR_DBFS
    return to_dbfs(math.sqrt(mean_square))


def sum_squares(samples: "Any") -> float:
    """Sum of squared samples; keep it to merge windows by energy (see :func:`mean_square_to_dbfs`)."""
    total = 0
    for s in samples:
        total += s * s
    return float(total)


def rms_dbfs(samples: "Any") -> float:
    """RMS level of ``samples`` in dBFS (-120 for silence or no samples)."""
    n = len(samples)
    if not n:
        return FLOOR_DBFS
    return mean_square_to_dbfs(sum_squares(samples) / n)


def peak_amplitude(samples: "Any") -> int:
    """Largest absolute sample value (0 for no samples)."""
    if not len(samples):
        return 0
    return int(max(max(samples), -min(samples)))


def peak_dbfs(samples: "Any") -> float:
    """Peak level of ``samples`` in dBFS: -32768 is 0 dBFS, 32767 is -0.0003 dBFS."""
    return to_dbfs(peak_amplitude(samples))


def longest_rail_run(samples: "Any") -> int:
    """Length of the longest run of consecutive samples at the 16-bit rails."""
    if not len(samples) or (max(samples) < _RAIL and min(samples) > -_RAIL):
        return 0  # nothing at the rails: skip the per-sample loop (most windows)
    longest = 0
    run = 0
    for s in samples:
        if s >= _RAIL or s <= -_RAIL:
            run += 1
            if run > longest:
                longest = run
        else:
            run = 0
    return longest


def is_clipping(
    peak_level_dbfs: float, rail_run: int, clip_dbfs: float = CLIP_DBFS, clip_run: int = CLIP_RUN
) -> bool:
    """Whether a window clipped: its peak reached ``clip_dbfs`` or it sat on the rails.

    Args:
        peak_level_dbfs: the window's peak (see :func:`peak_dbfs`).
        rail_run: the window's longest run at the rails (see :func:`longest_rail_run`).
        clip_dbfs: peak at or above this counts as clipping.
        clip_run: this many consecutive full-scale samples count as clipping, whatever
            ``clip_dbfs`` says (a flat-topped waveform is the mark of a clipped amplifier).
    """
    return peak_level_dbfs >= clip_dbfs or rail_run >= clip_run


def measure_window(
    samples: "Any", clip_dbfs: float = CLIP_DBFS, clip_run: int = CLIP_RUN
) -> "dict[str, Any]":
    """Everything the audio probe needs from one window of samples.

    Returns:
        ``samples`` (count), ``sum_squares``, ``rms_dbfs``, ``peak_dbfs`` and ``clipping``.
    """
    n = len(samples)
    energy = sum_squares(samples)
    peak = peak_dbfs(samples)
    return {
        "samples": n,
        "sum_squares": energy,
        "rms_dbfs": mean_square_to_dbfs(energy / n) if n else FLOOR_DBFS,
        "peak_dbfs": peak,
        "clipping": is_clipping(peak, longest_rail_run(samples), clip_dbfs, clip_run),
    }


def zero_crossing_hz(samples: "Any", rate: int) -> "float | None":
    """Estimate the dominant frequency of a tone by counting sign changes.

    Good for a clean test tone; noise or a mix of tones reads high. Returns ``None`` for
    fewer than two samples or no crossing at all (silence or DC).
    """
    n = len(samples)
    if n < 2 or rate <= 0:
        return None
    crossings = 0
    previous = samples[0] >= 0
    for s in samples:
        current = s >= 0
        if current != previous:
            crossings += 1
        previous = current
    if not crossings:
        return None
    return crossings * rate / (2.0 * n)


def goertzel_dbfs(samples: "Any", rate: int, freq_hz: float) -> float:
    """Level of the ``freq_hz`` component of ``samples``, as the RMS dBFS of that sine.

    A pure sine at ``freq_hz`` reads the same as :func:`rms_dbfs`; energy at other
    frequencies barely counts, so this tells a test tone from programme audio or hum.
    """
    n = len(samples)
    if not n or rate <= 0:
        return FLOOR_DBFS
    k = round(n * freq_hz / rate)
    w = 2 * math.pi * k / n
    coeff = 2 * math.cos(w)
    s1 = 0.0
    s2 = 0.0
    for x in samples:
        s0 = x + coeff * s1 - s2
        s2 = s1
        s1 = s0
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    if power <= 0:
        return FLOOR_DBFS
    # |X(k)| = A * n / 2 for a sine of amplitude A; its RMS is A / sqrt(2).
    amplitude = 2 * math.sqrt(power) / n
    return to_dbfs(amplitude / math.sqrt(2))
