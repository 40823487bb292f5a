"""Audio source simulator: the receiver's line output, as a sound card would sample it.

A TCP server on 127.0.0.1 (free port) streams raw S16_LE mono PCM in real time to every
connected client (``tcp://127.0.0.1:PORT``, what the agent's audio probe reads). What it
plays is switched at run time:

* ``play_programme(programme_id, level_dbfs)``: a bulletin: voiced "syllables" (a few
  harmonics of a wandering fundamental plus band-limited noise) under a speech-like
  envelope, each 250 ms syllable normalised to the requested RMS level, so any window of
  a quarter second or more measures that level;
* ``tone(freq_hz, level_dbfs)``: a sine at that RMS level;
* ``silence(noise_floor_dbfs=None)``: digital zero, or white noise at a floor;
* ``clip()``: a full-scale square wave (0 dBFS RMS and peak).

Levels are RMS relative to full scale (32768), the simple measure the agent computes.
``programme_file`` holds the programme id while a programme plays and is empty otherwise,
as a receiver's now-playing file. Samples are precomputed as looping buffers so that many
sources can stream at once on a small machine.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import select
import socket
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import NamedTuple, Self

FULL_SCALE = 32768.0
_SYLLABLE_S = 0.25
_PROGRAMME_LOOP_S = 4.0
_MAX_PENDING_S = 1.0


class AudioChange(NamedTuple):
    """One switch of what the source plays (for audits of a scenario).

    Attributes:
        at: unix time of the switch.
        mode: ``silence``, ``programme``, ``tone`` or ``clip``.
        programme: the programme id while a programme plays, else None.
        level_dbfs: RMS level of what plays now (None for digital silence).
    """

    at: float
    mode: str
    programme: str | None
    level_dbfs: float | None


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of S16_LE mono PCM in dBFS (relative to 32768); -200 for digital zero.

    Args:
        pcm: the samples; a trailing odd byte is ignored.
    """
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return -200.0
    power = math.fsum(s * s for s in samples) / len(samples)
    if power <= 0:
        return -200.0
    return 10 * math.log10(power) - 20 * math.log10(FULL_SCALE)


def peak_dbfs(pcm: bytes) -> float:
    """Peak level of S16_LE mono PCM in dBFS; -200 for digital zero."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    peak = max((abs(s) for s in samples), default=0)
    return 20 * math.log10(peak / FULL_SCALE) if peak else -200.0


def _to_pcm(values: list[float]) -> bytes:
    samples = array("h", (max(-32768, min(32767, round(v * FULL_SCALE))) for v in values))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _scaled(values: list[float], level_dbfs: float) -> list[float]:
    power = math.fsum(v * v for v in values) / len(values)
    gain = 10 ** (level_dbfs / 20) / math.sqrt(power) if power > 0 else 0.0
    return [v * gain for v in values]


def tone_samples(rate: int, freq_hz: float, level_dbfs: float) -> bytes:
    """One second of a sine at ``level_dbfs`` RMS (loops seamlessly for whole-Hz tones)."""
    if not 0 < freq_hz < rate / 2:
        raise ValueError(f"tone frequency must be between 0 and {rate // 2} Hz, got {freq_hz!r}")
    amplitude = math.sqrt(2) * 10 ** (level_dbfs / 20)
    step = 2 * math.pi * round(freq_hz) / rate
    return _to_pcm([amplitude * math.sin(step * n) for n in range(rate)])


def square_samples(rate: int) -> bytes:
    """One second of a full-scale 500 Hz square wave: a hard-clipping output stage."""
    half = max(1, rate // 1000)
    return _to_pcm([1.0 if (n // half) % 2 == 0 else -1.0 for n in range(rate)])


def noise_samples(rate: int, level_dbfs: float, rng: random.Random) -> bytes:
    """One second of white noise normalised to ``level_dbfs`` RMS."""
    return _to_pcm(_scaled([rng.uniform(-1, 1) for _ in range(rate)], level_dbfs))


def programme_samples(rate: int, level_dbfs: float, rng: random.Random) -> bytes:
    """A speech-like loop: syllables of voiced harmonics and noise, each at ``level_dbfs`` RMS."""
    per_syllable = int(rate * _SYLLABLE_S)
    values: list[float] = []
    for _ in range(int(_PROGRAMME_LOOP_S / _SYLLABLE_S)):
        values.extend(_limited(_syllable(rate, per_syllable, rng), level_dbfs))
    return _to_pcm(values)


def _limited(values: list[float], level_dbfs: float) -> list[float]:
    # Loud programme would clip its peaks and lose level: a broadcast limiter squashes the
    # peaks and makes up the gain until the RMS is right.
    for _ in range(12):
        values = [max(-1.0, min(1.0, v)) for v in _scaled(values, level_dbfs)]
        power = math.fsum(v * v for v in values) / len(values)
        if power <= 0 or abs(10 * math.log10(power) - level_dbfs) < 0.05:
            break
    return values


def _syllable(rate: int, length: int, rng: random.Random) -> list[float]:
    fundamental = rng.uniform(110, 240)
    glide = rng.uniform(-0.3, 0.3)
    voiced = int(length * rng.uniform(0.6, 0.85))
    noise = 0.0
    phase = 0.0
    out = []
    for n in range(length):
        # Low-passed noise stands in for fricatives; the Hann envelope makes the syllable.
        noise = 0.85 * noise + 0.15 * rng.uniform(-1, 1)
        phase += 2 * math.pi * fundamental * (1 + glide * n / length) / rate
        harmonics = math.sin(phase) + 0.5 * math.sin(2 * phase) + 0.25 * math.sin(3 * phase)
        envelope = math.sin(math.pi * n / voiced) ** 2 if n < voiced else 0.02
        out.append(envelope * (harmonics + 0.6 * noise))
    return out


class _Listener:
    """A connected client with the bytes it has not taken yet."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""


class AudioSource:
    """Real-time PCM over TCP for the agent's audio probe.

    Args:
        rate: samples per second (8000, 16000, 48000, ...).
        programme_file: where the now-playing programme id is written (None: nowhere).
        chunk_ms: how much audio goes out per send.
        seed: seed of the programme and noise generator, for reproducible streams.
    """

    def __init__(
        self,
        *,
        rate: int = 16000,
        programme_file: str | os.PathLike[str] | None = None,
        chunk_ms: int = 20,
        seed: int | None = 0,
    ) -> None:
        if rate < 1000:
            raise ValueError(f"rate must be at least 1000 samples/s, got {rate!r}")
        self.rate = rate
        self.chunk_bytes = max(2, rate * chunk_ms // 1000 * 2)
        self.programme_file = Path(programme_file) if programme_file is not None else None
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.history: list[AudioChange] = []
        self.dropped_bytes = 0
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._clients: list[_Listener] = []
        self._loops: dict[tuple[str, float], bytes] = {}
        self._loop = b"\x00" * self.rate * 2
        self._position = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.mode = "silence"
        self.programme: str | None = None
        self.level_dbfs: float | None = None
        self.silence()

    @property
    def url(self) -> str:
        """``tcp://127.0.0.1:PORT``, for the agent's audio probe."""
        return f"tcp://127.0.0.1:{self.port}"

    # -- what plays ----------------------------------------------------------------------

    def prepare_programme(self, level_dbfs: float = -18.0) -> bytes:
        """Generate (once per level) the programme loop, so a later switch is instant."""
        loop = self._loops.get(("programme", level_dbfs))
        if loop is None:
            loop = self._loops[("programme", level_dbfs)] = programme_samples(
                self.rate, level_dbfs, self.random
            )
        return loop

    def play_programme(self, programme_id: str, level_dbfs: float = -18.0) -> None:
        """Play a bulletin at ``level_dbfs`` RMS and publish its id in ``programme_file``."""
        self._switch("programme", self.prepare_programme(level_dbfs), programme_id, level_dbfs)

    def tone(self, freq_hz: float = 1000.0, level_dbfs: float = -12.0) -> None:
        """Play a sine test tone (no programme)."""
        self._switch("tone", tone_samples(self.rate, freq_hz, level_dbfs), None, level_dbfs)

    def silence(self, noise_floor_dbfs: float | None = None, *, programme_id: str | None = None) -> None:
        """Stop playing: digital zero, or white noise at ``noise_floor_dbfs`` (e.g. -70).

        Args:
            noise_floor_dbfs: RMS level of the hiss left on the line; None for digital zero.
            programme_id: keep this id in the now-playing file: a receiver that believes
                it plays while its stream has stalled (dead air).
        """
        if noise_floor_dbfs is None:
            self._switch("silence", b"\x00" * self.rate * 2, programme_id, None)
        else:
            loop = self._loops.get(("noise", noise_floor_dbfs))
            if loop is None:
                loop = self._loops[("noise", noise_floor_dbfs)] = noise_samples(
                    self.rate, noise_floor_dbfs, self.random
                )
            self._switch("silence", loop, programme_id, noise_floor_dbfs)

    def clip(self, programme_id: str | None = None) -> None:
        """Full-scale square wave: an overdriven output stage (programme id kept if given)."""
        self._switch("clip", square_samples(self.rate), programme_id, 0.0)

    def _switch(self, mode: str, loop: bytes, programme: str | None, level: float | None) -> None:
        with self.lock:
            self._loop, self._position = loop, 0
            self.mode, self.programme, self.level_dbfs = mode, programme, level
            self.history.append(AudioChange(time.time(), mode, programme, level))
        self._write_programme_file(programme or "")

    def _write_programme_file(self, text: str) -> None:
        if self.programme_file is None:
            return
        # Atomic replace: the agent never reads a half-written id.
        tmp = self.programme_file.with_name(self.programme_file.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.programme_file)

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start streaming in a background thread."""
        if self._thread is not None:
            raise RuntimeError("audio source already started")
        self._thread = threading.Thread(target=self._serve, name="sim-audio", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop streaming, close every client and the listener; safe to call twice."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for client in self._clients:
            client.sock.close()
        self._clients.clear()
        self._listener.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def client_count(self) -> int:
        """How many clients are listening now."""
        return len(self._clients)

    def _serve(self) -> None:
        chunk_s = self.chunk_bytes / 2 / self.rate
        deadline = time.monotonic()
        while not self._stopping.is_set():
            self._accept()
            chunk = self._next_chunk()
            for client in list(self._clients):
                self._send(client, chunk)
            deadline += chunk_s
            delay = deadline - time.monotonic()
            if delay < -_MAX_PENDING_S:
                deadline = time.monotonic()  # we were paused: resume now, do not burst
            elif delay > 0:
                self._stopping.wait(delay)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self._clients.append(_Listener(sock))
            self.connections += 1

    def _next_chunk(self) -> bytes:
        with self.lock:
            loop, start = self._loop, self._position
            out = bytearray()
            while len(out) < self.chunk_bytes:
                piece = loop[start : start + self.chunk_bytes - len(out)]
                out += piece
                start = (start + len(piece)) % len(loop)
            self._position = start
            return bytes(out)

    def _send(self, client: _Listener, chunk: bytes) -> None:
        if len(client.pending) >= _MAX_PENDING_S * self.rate * 2:
            # The reader is stuck: drop this whole chunk (keeps the sample alignment) as a
            # sound card overruns its buffer.
            self.dropped_bytes += len(chunk)
            chunk = b""
        data = client.pending + chunk
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        client.pending = data[sent:]
        # A client that closed its end shows as readable with no data.
        readable, _, _ = select.select([client.sock], [], [], 0)
        if readable:
            self._check_closed(client)

    def _check_closed(self, client: _Listener) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)

    def _drop(self, client: _Listener) -> None:
        with contextlib.suppress(ValueError):
            self._clients.remove(client)
        client.sock.close()


def read_pcm(url: str, seconds: float, *, rate: int = 16000, timeout: float = 5.0) -> bytes:
    """Read ``seconds`` of PCM from an ``AudioSource`` URL (for tests and the demo).

    Args:
        url: ``tcp://127.0.0.1:PORT``.
        seconds: how much audio to take.
        rate: the source's sample rate.
        timeout: seconds to wait for the data.

    Raises:
        TimeoutError: the source did not deliver that much audio in time.
    """
    host, _, port = url.removeprefix("tcp://").rpartition(":")
    wanted = int(seconds * rate) * 2
    data = bytearray()
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        while len(data) < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"got {len(data)} of {wanted} bytes of audio from {url}")
            chunk = sock.recv(wanted - len(data))
            if not chunk:
                raise ConnectionError(f"audio source {url} closed the stream")
            data += chunk
    return bytes(data)
