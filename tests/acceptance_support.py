"""Test helpers for the acceptance tests: the simulated receiver's side of ``play_test_tone``.

On a real speaker cluster the agent's player command (``aplay tone.wav``) drives the
receiver's output, and the audio probe hears it on the line. In the rig the "receiver" is
the :class:`~hil_tests.simulators.speaker_cluster.SpeakerCluster` in the test process, so
the agent's player command is a tiny client that asks a :class:`TonePlayer` server to play
the tone on the simulator for the requested seconds, and returns when it ends.
"""

from __future__ import annotations

import contextlib
import math
import socket
import sys
import threading
from typing import Self

from hil_tests.simulators.speaker_cluster import SpeakerCluster

# The agent fills {freq_hz}, {level_dbfs} and {seconds} with str.format: no braces in here.
_CLIENT = (
    "import socket, sys; "
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=120); "
    "s.sendall((' '.join(sys.argv[2:5]) + chr(10)).encode()); "
    "sys.exit(0 if s.recv(16).startswith(b'done') else 1)"
)
# The agent's WAV is written at a peak level; a sine's RMS (what the line carries and the
# simulator is told) is 3.01 dB below its peak.
SINE_CREST_DB = 20 * math.log10(math.sqrt(2))


class TonePlayer:
    """Plays test tones on a simulated speaker cluster for the agent's player command.

    Args:
        speaker: the simulated hardware (its amplifier follows the tone, or not, if broken).
    """

    def __init__(self, speaker: SpeakerCluster) -> None:
        self.speaker = speaker
        self.played: list[tuple[float, float, float]] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="tone-player", daemon=True)

    def command(self) -> list[str]:
        """The agent's ``[commands] player`` for this simulator."""
        return [sys.executable, "-c", _CLIENT, str(self.port), "{freq_hz}", "{level_dbfs}", "{seconds}"]

    def start(self) -> Self:
        """Accept players in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting; a tone in progress ends on its own."""
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._play, args=(conn,), daemon=True).start()

    def _play(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError):
            freq, peak_dbfs, seconds = (float(x) for x in conn.makefile().readline().split())
            self.played.append((freq, peak_dbfs, seconds))
            self.speaker.play_tone(freq, peak_dbfs - SINE_CREST_DB)
            threading.Event().wait(seconds)
            self.speaker.end_bulletin()
            conn.sendall(b"done\n")
