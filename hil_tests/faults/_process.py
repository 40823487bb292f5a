"""A child process of the rig (agent or backend): launch, signal, log file, wait for a line."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

_POLL_S = 0.05


class ChildProcess:
    """One program run by the rig, its output appended to ``log_path``.

    Args:
        name: what to call it in messages (``agent vn-trangxa-loa-03``).
        log_path: where stdout and stderr go (appended across restarts).
        cwd: working directory.
    """

    def __init__(self, name: str, log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.cwd = cwd
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def running(self) -> bool:
        """The process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self._proc is not None and self.running else None

    def launch(self, command: Sequence[str], note: str = "") -> None:
        """Start ``command``; lines logged from now on are what ``wait_for_log`` searches."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- rig: start {self.starts + 1} {note} ---\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                # faulthandler: a process stuck on its way out dumps every thread's stack
                # into the log when terminate() sends SIGABRT (see below).
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
            )
        self.starts += 1

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM, wait ``timeout``, then SIGABRT (its stacks go to the log) and SIGKILL;
        the exit code (None if not started)."""
        if self._proc is None:
            return None
        code = self._signal_and_wait(signal.SIGTERM, timeout)
        if code is None:
            code = self._signal_and_wait(signal.SIGABRT, 2.0)
        if code is None:
            code = self._signal_and_wait(signal.SIGKILL, 5.0)
        self._proc = None
        return code

    def kill(self) -> int | None:
        """SIGKILL and reap: no clean shutdown of any kind."""
        if self._proc is None:
            return None
        code = self._signal_and_wait(signal.SIGKILL, 5.0)
        self._proc = None
        return code

    def _signal_and_wait(self, signum: signal.Signals, timeout: float) -> int | None:
        assert self._proc is not None
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signum)
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self, *, since_start: bool = False) -> str:
        """Everything logged (or only since the last start)."""
        try:
            with self.log_path.open("rb") as log:
                if since_start:
                    log.seek(self._log_offset)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the log (for assertion messages)."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 10.0, *, since_start: bool = True) -> re.Match[str]:
        """Block until the log (since the last start, by default) matches the regex ``pattern``.

        Raises:
            TimeoutError: no match in time; the message shows the log tail.
            RuntimeError: the process exited meanwhile.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.log_text(since_start=since_start))
            if found:
                return found
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                raise RuntimeError(
                    f"{self.name} exited with {code} before logging {pattern!r}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} did not log {pattern!r} in {timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(_POLL_S)
