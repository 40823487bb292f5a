"""A hamlet speaker cluster: receiver audio, amplifier power meter and 4G modem together.

The parts follow each other as on a real pole: when the receiver plays, the amplifier
draws ``idle_w + full_scale_w × level`` (the power meter's model); when it is silent the
amplifier idles. Faults break that link on purpose:

* ``amplifier_dies(standby=False)``: audio is present but the amplifier draws 0 W (blown
  fuse, tripped breaker), or only its idle draw with ``standby=True`` (protection mode);
* ``speaker_line_cut()``: the amplifier has no load and draws idle power only;
* ``repair()``: both cleared, the link restored;
* ``signal_fades(rssi, seconds)``, ``signal_lost()``, ``signal_restored(rssi)``: the modem.

Bulletins run now (``start_bulletin``/``end_bulletin``) or on a timer
(``schedule_bulletin(programme_id, start_in_s, duration_s)``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Self

from hil_tests.simulators.audio import AudioSource
from hil_tests.simulators.modem import ModemSimulator
from hil_tests.simulators.power_meter import PowerMeterSimulator

AMPLIFIER_FAULTS = ("dead", "standby", "line_cut")


class SpeakerCluster:
    """Simulated hardware of one speaker cluster, for one agent.

    Args:
        workdir: where the now-playing file goes (``workdir/now_playing``).
        transport: ``"pty"`` or ``"tcp"`` for the serial devices.
        rate: audio sample rate.
        idle_w: amplifier draw with no audio.
        full_scale_w: extra amplifier draw at 0 dBFS.
        noise_floor_dbfs: level of the receiver's output between bulletins (None: digital zero).
        seed: seed of every random generator, for reproducible runs.
    """

    kind = "speaker_cluster"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        transport: str = "pty",
        rate: int = 16000,
        idle_w: float = 8.0,
        full_scale_w: float = 120.0,
        noise_floor_dbfs: float | None = -70.0,
        seed: int | None = 0,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.noise_floor_dbfs = noise_floor_dbfs
        self.audio = AudioSource(rate=rate, programme_file=self.workdir / "now_playing", seed=seed)
        self.power_meter = PowerMeterSimulator(
            transport=transport, idle_w=idle_w, full_scale_w=full_scale_w, seed=seed
        )
        self.modem = ModemSimulator(transport=transport, seed=seed)
        self.amplifier_fault: str | None = None
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self.audio.silence(noise_floor_dbfs)
        self._follow_audio()

    @property
    def programme_file(self) -> Path:
        """The receiver's now-playing file (programme id, empty when idle)."""
        assert self.audio.programme_file is not None
        return self.audio.programme_file

    def probe_urls(self) -> dict[str, dict[str, Any]]:
        """Where the agent's probes find each part: probe name to its settings."""
        return {
            "audio": {
                "url": self.audio.url,
                "programme_file": str(self.programme_file),
                "rate": self.audio.rate,
            },
            "power_meter": {"url": self.power_meter.url},
            "modem": {"url": self.modem.url},
        }

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start every part."""
        self.audio.start()
        self.power_meter.start()
        self.modem.start()
        return self

    def stop(self) -> None:
        """Cancel pending bulletins and stop every part."""
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        self.audio.stop()
        self.power_meter.stop()
        self.modem.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- programme -----------------------------------------------------------------------

    def start_bulletin(self, programme_id: str, level_dbfs: float = -18.0) -> None:
        """The receiver starts playing a bulletin; the amplifier follows."""
        self.audio.play_programme(programme_id, level_dbfs)
        self._follow_audio()

    def end_bulletin(self) -> None:
        """The bulletin ends: back to the noise floor, the amplifier idles."""
        self.audio.silence(self.noise_floor_dbfs)
        self._follow_audio()

    def play_tone(self, freq_hz: float = 1000.0, level_dbfs: float = -12.0) -> None:
        """The receiver plays a test tone; the amplifier follows."""
        self.audio.tone(freq_hz, level_dbfs)
        self._follow_audio()

    def dead_air(self, noise_floor_dbfs: float | None = None) -> None:
        """The programme id stays but the audio goes silent (stalled stream, dead receiver)."""
        # The receiver still believes it plays: the now-playing file keeps the id.
        self.audio.silence(noise_floor_dbfs, programme_id=self.audio.programme)
        self._follow_audio()

    def schedule_bulletin(
        self, programme_id: str, start_in_s: float, duration_s: float, level_dbfs: float = -18.0
    ) -> None:
        """Play a bulletin ``start_in_s`` seconds from now for ``duration_s`` seconds."""
        self.audio.prepare_programme(level_dbfs)
        self._later(start_in_s, self.start_bulletin, programme_id, level_dbfs)
        self._later(start_in_s + duration_s, self.end_bulletin)

    def _later(self, delay_s: float, action: Any, *args: Any) -> None:
        timer = threading.Timer(delay_s, action, args)
        timer.daemon = True
        with self._lock:
            self._timers.append(timer)
        timer.start()

    # -- faults --------------------------------------------------------------------------

    def amplifier_dies(self, *, standby: bool = False) -> None:
        """The amplifier stops drawing power (0 W), or idles in protection (``standby``)."""
        self.amplifier_fault = "standby" if standby else "dead"
        self._follow_audio()

    def speaker_line_cut(self) -> None:
        """The line to the horns is cut: the amplifier has no load and draws idle power."""
        self.amplifier_fault = "line_cut"
        self._follow_audio()

    def repair(self) -> None:
        """A technician fixed the amplifier and the line: power follows the audio again."""
        self.amplifier_fault = None
        self._follow_audio()

    def signal_fades(self, rssi: int, seconds: float) -> None:
        """The 4G signal moves to ``rssi`` (0..31) over ``seconds``."""
        self.modem.fade_to(rssi, seconds)

    def signal_lost(self) -> None:
        """The 4G signal vanishes (CSQ 99, no operator)."""
        self.modem.lose_signal()

    def signal_restored(self, rssi: int = 20) -> None:
        """The 4G signal is back at ``rssi``."""
        self.modem.set_signal(rssi)

    def _follow_audio(self) -> None:
        level = self.audio.level_dbfs if self.audio.mode != "silence" else None
        if self.amplifier_fault == "dead":
            self.power_meter.set_amplifier("off")
        elif self.amplifier_fault in ("standby", "line_cut") or level is None:
            self.power_meter.set_amplifier("idle")
        else:
            self.power_meter.set_audio_level(level)
