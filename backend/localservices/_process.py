"""A local service run as a child process: start, probe, stop, kill, restart.

The concrete services (Mosquitto, InfluxDB) only say how to write their config, which
command line to run and how to ask whether they answer; this module owns the process.
"""

from __future__ import annotations

import abc
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

import psutil

HOST = "127.0.0.1"
_POLL_INTERVAL_S = 0.05
_LOG_TAIL_LINES = 15
# create_time read from /proc by two processes can differ in the last digits of the float.
_CREATE_TIME_TOLERANCE_S = 0.5


class ServiceError(RuntimeError):
    """A local service could not be found, started, stopped or queried."""


# Where free_port looks when the kernel's ephemeral range is unknown or leaves no room.
_PICK_FLOOR = 20000
_DEFAULT_EPHEMERAL = (32768, 60999)
_PICK_TRIES = 200
_BUSY_WAIT_S = 5.0
_random = random.Random()


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (``ip_local_port_range``).

    Returns:
        (lowest, highest), or Linux's default when the file cannot be read.
    """
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    The port is picked below the kernel's ephemeral range. A port from that range (what
    binding to port 0 gives) can be taken by any outgoing connection while its service is
    stopped: a client retrying ``127.0.0.1:<port>`` can even connect to itself (TCP
    simultaneous open), so a service restarted on "its" port finds the port in use.

    Returns:
        The port number.
    """
    low, _ = ephemeral_port_range()
    if low - _PICK_FLOOR >= 1000:
        for _ in range(_PICK_TRIES):
            port = _random.randrange(_PICK_FLOOR, low)
            if port_is_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        picked: int = sock.getsockname()[1]
        return picked


_START_ATTEMPTS = 3


def port_is_free(port: int) -> bool:
    """Tell whether a TCP port on 127.0.0.1 can be bound now.

    Args:
        port: The port to try.

    Returns:
        True if nothing listens on it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the services set, so a port in TIME_WAIT after a restart counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


class LocalService(abc.ABC):
    """One service run from its Debian binary, with its files under ``root/<name>/``.

    Args:
        root: Directory that holds one subdirectory per service.
        port: TCP port on 127.0.0.1; None picks a free one.
        binary: Path of the executable; None looks on PATH, then /usr/sbin and /usr/bin.
        start_timeout: Seconds to wait for the service to answer after launch.
        stop_timeout: Seconds to wait after SIGTERM before sending SIGKILL.
    """

    name: ClassVar[str]
    executable: ClassVar[str]
    debian_package: ClassVar[str]

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.service_dir = self.root / self.name
        self.config_dir = self.service_dir / "config"
        self.data_dir = self.service_dir / "data"
        self.log_dir = self.service_dir / "log"
        self.binary = Path(binary) if binary is not None else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        # An auto-picked port may be taken by someone else before we bind it; such a port
        # may be re-picked until the first successful start, after which it is kept.
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._create_time: float | None = None
        self._detached = False

    # -- what each service defines -------------------------------------------------------

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where clients reach the service."""

    @property
    @abc.abstractmethod
    def config_file(self) -> Path:
        """The generated configuration file."""

    @property
    def console_log(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.log_dir / f"{self.name}.console.log"

    @property
    def log_files(self) -> list[Path]:
        """Files whose tail explains a failed start, most useful first."""
        return [self.console_log]

    @abc.abstractmethod
    def answers(self, timeout: float = 1.0) -> bool:
        """Ask the service, in its own protocol, whether it serves requests now."""

    @abc.abstractmethod
    def _write_config(self) -> None:
        """Create the directories and write ``config_file``."""

    @abc.abstractmethod
    def _command(self, binary: Path) -> list[str]:
        """The command line that runs the service with ``config_file``."""

    def _ports(self) -> list[int]:
        """Every port the service binds; checked before launch."""
        return [self.port]

    def _repick_ports(self) -> None:
        self.port = free_port()

    def _after_start(self) -> None:
        """Run once the service answers (for example, create users)."""
        return

    def state(self) -> dict[str, Any]:
        """What a later process needs to find, report on or stop this service."""
        return {
            "pid": self.pid,
            "create_time": self._create_time,
            "port": self.port,
            "url": self.url,
            "config": str(self.config_file),
            "data_dir": str(self.data_dir),
            "log_dir": str(self.log_dir),
        }

    # -- process handling ----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._pid if self.running else None

    @property
    def running(self) -> bool:
        """True while the service process is alive (answering or not)."""
        if self._pid is None:
            return False
        if self._proc is not None:
            return self._proc.poll() is None
        return _alive(self._pid, self._create_time)

    def attach(self, pid: int, create_time: float | None) -> None:
        """Adopt a process started by another tincoso process (from services.json).

        A pid whose process has gone, or was reused by another program (its start time
        differs), is ignored, so ``stop()`` never signals a stranger.

        Args:
            pid: Process id recorded at start.
            create_time: Process start time recorded at start (psutil's create_time).
        """
        if create_time is not None and _alive(pid, create_time):
            self._proc = None
            self._pid = pid
            self._create_time = create_time

    def resolve_binary(self) -> Path:
        """Find the executable.

        Returns:
            Its path.

        Raises:
            ServiceError: It is not installed; the message names the Debian package.
        """
        install = f"install it with `apt-get install {self.debian_package}`"
        if self.binary is not None:
            if self.binary.is_file() and os.access(self.binary, os.X_OK):
                return self.binary
            raise ServiceError(f"{self.executable} not found at {self.binary}: {install}")
        found = shutil.which(self.executable)
        for candidate in (found, f"/usr/sbin/{self.executable}", f"/usr/bin/{self.executable}"):
            if candidate and os.access(candidate, os.X_OK):
                return Path(candidate)
        raise ServiceError(f"{self.executable} not found on PATH or /usr/sbin: {install}")

    def start(self, *, detach: bool = False) -> None:
        """Write the config, launch the service and wait until it answers.

        Does nothing if it is already running.

        Args:
            detach: Run it in a new session so it outlives this process (for the CLI).

        Raises:
            ServiceError: The binary is missing, a port is busy, the process exited, or it
                did not answer within ``start_timeout``; the message shows the log tail.
        """
        if self.running:
            return
        binary = self.resolve_binary()
        for attempt in range(_START_ATTEMPTS):
            self._claim_ports()
            self._write_config()
            self._launch(binary, detach=detach)
            try:
                self._wait_until_answering()
                break
            except ServiceError as exc:
                # Another process may bind an auto-picked port between our check and the
                # service's own bind: pick another and try again.
                lost_race = self._auto_port and "already in use" in str(exc).lower()
                if not lost_race or attempt == _START_ATTEMPTS - 1:
                    raise
                self._repick_ports()
        self._auto_port = False
        self._after_start()

    def stop(self) -> None:
        """Stop with SIGTERM, escalating to SIGKILL after ``stop_timeout`` seconds."""
        if not self.running:
            self._forget()
            return
        self._signal(signal.SIGTERM)
        if not self._wait_gone(self.stop_timeout):
            self._signal(signal.SIGKILL)
            if not self._wait_gone(5.0):
                raise ServiceError(f"{self.name} (pid {self._pid}) survived SIGKILL")
        self._forget()

    def kill(self) -> None:
        """Kill with SIGKILL, no clean shutdown: simulates a crash or power loss."""
        if self.running:
            self._signal(signal.SIGKILL)
            self._wait_gone(5.0)
        self._forget()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        detach = self._detached
        self.stop()
        self.start(detach=detach)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of each log file, for error messages."""
        parts = []
        for path in self.log_files:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            tail = [line for line in text.splitlines() if line.strip()][-lines:]
            if tail:
                parts.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) if parts else f"(no log output in {self.log_dir})"

    def _claim_ports(self) -> None:
        for _ in range(5):
            busy = self._busy_ports()
            if not busy:
                return
            if not self._auto_port:
                ports = ", ".join(str(port) for port in busy)
                raise ServiceError(f"{self.name} cannot start: port {ports} on {HOST} is already in use")
            self._repick_ports()
        raise ServiceError(f"{self.name} cannot start: found no free port on {HOST}")

    def _busy_ports(self) -> list[int]:
        """Ports still taken after a short wait (a restart may find its own old socket)."""
        deadline = time.monotonic() + (0.0 if self._auto_port else _BUSY_WAIT_S)
        while True:
            busy = [port for port in self._ports() if not port_is_free(port)]
            if not busy or time.monotonic() >= deadline:
                return busy
            time.sleep(_POLL_INTERVAL_S * 4)

    def _launch(self, binary: Path, *, detach: bool) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("ab") as console:
            self._proc = subprocess.Popen(
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
                cwd=self.service_dir,
            )
        self._pid = self._proc.pid
        self._detached = detach
        try:
            self._create_time = psutil.Process(self._pid).create_time()
        except psutil.NoSuchProcess:
            self._create_time = None

    def _wait_until_answering(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._forget()
                raise ServiceError(
                    f"{self.name} exited with code {code} while starting on {self.url}; "
                    f"its log ends with:\n{self.log_tail()}"
                )
            if self.answers(timeout=0.5) and self._proc.poll() is None:
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"{self.name} did not answer on {self.url} within {self.start_timeout:g} s; "
                    f"its log ends with:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _signal(self, signum: signal.Signals) -> None:
        assert self._pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signum)

    def _wait_gone(self, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_INTERVAL_S)
        return True

    def _forget(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = None
        self._pid = None
        self._create_time = None


def _alive(pid: int, create_time: float | None) -> bool:
    """True if ``pid`` is a live (not zombie) process started at ``create_time``."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except psutil.Error:
        return False
    return create_time is None or abs(started - create_time) < _CREATE_TIME_TOLERANCE_S
