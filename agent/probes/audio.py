"""Audio probe: what the speakers actually play, measured on the receiver's line output.

PCM comes from a source (``arecord``, a WAV or raw file, a FIFO, a TCP stream; see
``_audio_sources.py``). A background task cuts it into windows of ``window_s`` (1 s) and,
for each, computes RMS and peak dBFS (``agent/core/levels.py``), feeds the dead-air
detector, checks for clipping and follows playback. ``read()`` returns the aggregate
since the previous ``read()``:

* ``window_s``: seconds of audio measured; ``rms_dbfs``: energy mean over them;
  ``peak_dbfs``: the maximum; ``clipping``: any window clipped;
* ``playing``: the latest window is at or above the dead-air threshold;
* ``dead_air``: dead air was declared at some point in the report window;
  ``dead_air_s``: seconds of the report window below the threshold;
* ``programme``: the receiver's now-playing id (``programme_file``), None when empty.

Events: ``playback_start``/``playback_end`` (code ``playback``, with the programme and, at
the end, the audible duration) and ``fault_start``/``fault_end`` with code ``dead_air``.
Time is the stream's own sample clock, so measurements do not depend on scheduling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.calibrate import load_offset
from agent.core import levels
from agent.core.dead_air import DeadAirDetector
from agent.probes._audio_sources import AudioSourceError, PcmSource, make_source
from agent.probes._config import ProbeConfig
from agent.probes.base import Probe, ProbeError, stop_task
from protocols import stored_data

_MAX_PROGRAMME = 128


class _Tap:
    """Samples collected for one ``measure()`` call."""

    def __init__(self, wanted: int, future: asyncio.Future[list[int]]) -> None:
        self.wanted = wanted
        self.samples: list[int] = []
        self.future = future


class AudioProbe(Probe):
    """Levels, dead air, clipping and playback of one audio line.

    Config keys: ``source`` (required), ``device`` ("default", for arecord), ``rate``
    (16000), ``window_s`` (1.0), ``dead_air_threshold_dbfs`` (-50), ``dead_air_enter_s``
    (15), ``dead_air_clear_s`` (10), ``clip_dbfs`` (-0.1), ``clip_run`` (3),
    ``programme_file`` (none), ``read_timeout_s`` (3.0), ``pace`` (false; files only),
    ``arecord_command`` ("arecord"), ``calibration_file`` (the runtime points it at
    ``<state_dir>/audio_calibration.json``; levels are shifted by the stored offset).
    """

    name = "audio"

    def __init__(self, name: str, section: Mapping[str, Any]) -> None:
        super().__init__(name)
        config = ProbeConfig(name, section)
        self.source_spec = config.required_string("source")
        self.device = config.string("device", "default") or "default"
        self.rate = config.integer("rate", 16000, 1000, 192000)
        self.window_s = config.number("window_s", 1.0, 0.05, 10)
        default, lowest = stored_data.SOUND_THRESHOLD_DBFS, stored_data.SOUND_THRESHOLD_MIN_DBFS
        self.threshold_dbfs = config.number("dead_air_threshold_dbfs", default, lowest, 0)
        self.enter_s = config.number("dead_air_enter_s", 15.0, 0)
        self.clear_s = config.number("dead_air_clear_s", 10.0, 0)
        self.clip_dbfs = config.number("clip_dbfs", levels.CLIP_DBFS, -60, 0)
        self.clip_run = config.integer("clip_run", levels.CLIP_RUN, 1)
        # Capture offset from `tincoso-agent calibrate-audio`, added to every level reported.
        self.calibration_file = config.string("calibration_file")
        self.offset_db = load_offset(self.calibration_file, name)
        programme_file = config.string("programme_file")
        self.programme_file = Path(programme_file) if programme_file else None
        self.read_timeout_s = config.number("read_timeout_s", 3.0, 0.1, 120)
        self.pace = config.boolean("pace", False)
        self.arecord_command = config.string("arecord_command", "arecord") or "arecord"
        self._make_source()  # a bad source spec fails now, when the config is loaded
        self.detector = DeadAirDetector(self.threshold_dbfs, self.enter_s, self.clear_s)
        self.playing = False
        self.programme: str | None = None
        self._source: PcmSource | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None
        self._new_window = asyncio.Event()
        self._taps: list[_Tap] = []
        self._stream_s = 0.0
        self._dead_air_since = 0.0
        self._playback: str | None = None
        self._playback_on = False
        self._playback_start_s = 0.0
        self._last_audible_s = 0.0
        self._sound_back_s: float | None = None  # start of the sound that may end dead air
        self._silent_from_s: float | None = None  # start of the current silence
        self._reset_report()

    def _make_source(self) -> PcmSource:
        return make_source(
            self.source_spec,
            rate=self.rate,
            device=self.device,
            timeout_s=self.read_timeout_s,
            arecord_command=self.arecord_command,
            pace=self.pace,
        )

    def _calibrated(self, dbfs: float) -> float:
        """A capture level on the calibrated scale (digital silence stays at the floor)."""
        if dbfs <= levels.FLOOR_DBFS or not self.offset_db:
            return dbfs
        return max(levels.FLOOR_DBFS, dbfs + self.offset_db)

    def _reset_report(self) -> None:
        self._samples = 0
        self._sum_squares = 0.0
        self._peak = levels.FLOOR_DBFS
        self._clipping = False
        self._dead_air = self.detector.active
        self._silent_s = 0.0

    # --- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the source and start measuring; a missing source only shows in ``read()``."""
        with contextlib.suppress(AudioSourceError):
            await self._open()

    async def _open(self) -> None:
        source = self._make_source()
        await source.open()
        self._source = source
        self._failure = None
        self._task = asyncio.create_task(self._consume(source), name=f"audio-probe-{self.name}")

    @property
    def stream_s(self) -> float:
        """Seconds of audio measured since the probe started (the stream's own clock)."""
        return self._stream_s

    def _running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        """Stop measuring and release the source."""
        task, self._task = self._task, None
        await stop_task(task)
        if self._source is not None:
            await self._source.close()
            self._source = None

    # --- the measuring task ----------------------------------------------------------

    async def _consume(self, source: PcmSource) -> None:
        window_bytes = 2 * max(1, round(source.rate * self.window_s))
        pending = bytearray()
        try:
            while True:
                chunk = await source.read(window_bytes - len(pending))
                if not chunk:
                    self._failure = "stream ended"
                    return
                pending += chunk
                if len(pending) >= window_bytes:
                    window = bytes(pending[:window_bytes])
                    del pending[:window_bytes]
                    self._on_window(list(levels.decode_s16le(window)), source.rate)
        except AudioSourceError as exc:
            self._failure = str(exc)
        except Exception as exc:  # a probe must never take the agent down
            self._failure = f"unexpected error: {exc!r}"
        finally:
            await source.close()
            for tap in self._taps:
                if not tap.future.done():
                    tap.future.set_exception(ProbeError(self._failure or "source closed"))
            self._new_window.set()

    def _on_window(self, samples: list[int], rate: int) -> None:
        window = levels.measure_window(samples, self.clip_dbfs, self.clip_run)
        seconds = len(samples) / rate
        self._stream_s += seconds
        now = self._stream_s
        level = self._calibrated(window["rms_dbfs"])
        audible = stored_data.is_audible(level, self.threshold_dbfs)
        self.programme = self._read_programme()
        self._samples += len(samples)
        self._sum_squares += window["sum_squares"]
        self._peak = max(self._peak, window["peak_dbfs"])
        self._clipping = self._clipping or window["clipping"]
        if not audible:
            self._silent_s += seconds
            self._sound_back_s = None
            if self._silent_from_s is None:
                self._silent_from_s = now - seconds
        else:
            self._silent_from_s = None
            if self._sound_back_s is None:
                self._sound_back_s = now - seconds
        self.playing = audible
        self._follow_playback(audible, now - seconds)
        if audible:
            self._last_audible_s = now
        self._follow_dead_air(level, now)
        self._feed_taps(samples)
        self._new_window.set()

    def _follow_dead_air(self, level: float, now: float) -> None:
        edge = self.detector.update(level, now)
        if edge == "start":
            self._end_playback()
            self._dead_air_since = now if self._silent_from_s is None else self._silent_from_s
            self._emit(
                "fault_start",
                "dead_air",
                programme=self.programme,
                detail=f"below {self.threshold_dbfs:.0f} dBFS for {self.enter_s:.0f} s",
            )
        elif edge == "end":
            self._emit(
                "fault_end",
                "dead_air",
                programme=self.programme,
                duration_s=round((self._sound_back_s or now) - self._dead_air_since, 1),
            )
        self._dead_air = self._dead_air or self.detector.active

    def _follow_playback(self, audible: bool, window_start: float) -> None:
        programme = self.programme
        if self._playback_on and programme is not None and programme != self._playback:
            self._end_playback()  # the receiver moved on to the next programme
        if audible and not self._playback_on:
            self._playback_on = True
            self._playback = programme
            self._playback_start_s = window_start
            self._emit("playback_start", "playback", programme=programme)

    def _end_playback(self) -> None:
        if not self._playback_on:
            return
        self._playback_on = False
        duration = max(0.0, self._last_audible_s - self._playback_start_s)
        self._emit("playback_end", "playback", programme=self._playback, duration_s=round(duration, 1))

    def _feed_taps(self, samples: list[int]) -> None:
        for tap in self._taps:
            if tap.future.done():
                continue
            tap.samples.extend(samples[: tap.wanted - len(tap.samples)])
            if len(tap.samples) >= tap.wanted:
                tap.future.set_result(tap.samples)

    def _read_programme(self) -> str | None:
        if self.programme_file is None:
            return None
        try:
            text = self.programme_file.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        return text[:_MAX_PROGRAMME] or None

    # --- what the runtime calls ------------------------------------------------------

    async def _ensure_running(self) -> None:
        if self._running():
            return
        failure = self._failure
        self._failure = None
        if failure is None:
            try:
                await self._open()
                return
            except AudioSourceError as exc:
                failure = str(exc)
        raise self._fail(f"audio source {self._make_source().label}: {failure}")

    async def read(self) -> dict[str, Any]:
        """The audio message's level fields, aggregated since the previous ``read()``.

        Raises:
            ProbeError: the source cannot be opened, ended, broke or stalled; the next
                ``read()`` reopens it.
        """
        if not self._samples:
            await self._ensure_running()
            await self._wait_for_window()
        if not self._samples:
            await self._ensure_running()  # raises with the reason the task stopped
            raise self._fail(f"audio source {self._label()}: no audio for {self.read_timeout_s:.1f} s")
        rate = self._source.rate if self._source is not None else self.rate
        report = {
            "window_s": round(self._samples / rate, 3),
            "playing": self.playing,
            "rms_dbfs": round(
                self._calibrated(levels.mean_square_to_dbfs(self._sum_squares / self._samples)), 2
            ),
            "peak_dbfs": round(self._calibrated(self._peak), 2),
            "dead_air": self._dead_air,
            "dead_air_s": round(self._silent_s, 3),
            "clipping": self._clipping,
            "programme": self.programme,
        }
        self._reset_report()
        return report

    def _label(self) -> str:
        return self._source.label if self._source is not None else self.source_spec

    async def _wait_for_window(self) -> None:
        self._new_window.clear()
        if not self._running():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.read_timeout_s + self.window_s):
                await self._new_window.wait()

    async def measure(self, seconds: float, freq_hz: float | None = None) -> dict[str, Any]:
        """Measure the next ``seconds`` of audio, for the test-tone command.

        Args:
            seconds: how long to measure.
            freq_hz: the expected tone; adds ``tone_dbfs``, that frequency's level.

        Returns:
            ``seconds``, ``rms_dbfs``, ``peak_dbfs``, ``clipping``, ``freq_hz`` (estimated
            by zero crossings, None for silence) and ``tone_dbfs`` when ``freq_hz`` is given.

        Raises:
            ProbeError: the source failed before enough audio arrived.
        """
        await self._ensure_running()
        rate = self._source.rate if self._source is not None else self.rate
        tap = _Tap(max(1, round(seconds * rate)), asyncio.get_running_loop().create_future())
        self._taps.append(tap)
        try:
            async with asyncio.timeout(seconds + self.read_timeout_s + self.window_s):
                samples = await tap.future
        except TimeoutError:
            raise self._fail(
                f"audio source {self._label()}: no audio to measure for {seconds:.1f} s"
            ) from None
        except ProbeError as exc:
            raise self._fail(f"audio source {self._label()}: {exc}") from None
        finally:
            self._taps.remove(tap)
        window = levels.measure_window(samples, self.clip_dbfs, self.clip_run)
        estimate = levels.zero_crossing_hz(samples, rate)
        result: dict[str, Any] = {
            "seconds": round(len(samples) / rate, 3),
            "rms_dbfs": round(self._calibrated(window["rms_dbfs"]), 2),
            "peak_dbfs": round(self._calibrated(window["peak_dbfs"]), 2),
            "clipping": window["clipping"],
            "freq_hz": round(estimate, 1) if estimate is not None else None,
        }
        if freq_hz is not None:
            result["tone_dbfs"] = round(levels.goertzel_dbfs(samples, rate, freq_hz), 2)
        return result
