"""System probe: the controller's own health, and why it last started.

Reboot reason, kept across agent restarts with two marker files in the agent's state dir:

* ``agent_running`` (written by this probe at start, holds the boot id): survives a crash
  and a power cut;
* ``clean_shutdown`` (written by the runtime on SIGTERM, see :func:`write_clean_shutdown`).

At start: no markers -> ``first_boot``; a clean marker -> ``clean``; a different boot id
without one -> ``watchdog`` if the watchdog's boot status says so, else ``power_loss``;
the same boot id without one -> ``agent_crash`` (the agent died, the board did not).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.probes._config import ProbeConfig
from agent.probes.base import Probe

CLEAN_SHUTDOWN_MARKER = "clean_shutdown"
RUNNING_MARKER = "agent_running"
_WRITE_PROBE_FILE = ".tincoso-write-probe"


def _read_text(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_clean_shutdown(state_dir: str | os.PathLike[str], boot_id: str | None = None) -> None:
    """Leave the clean-shutdown marker; the runtime calls this on SIGTERM before exiting."""
    _write_atomic(Path(state_dir) / CLEAN_SHUTDOWN_MARKER, boot_id or "")


def _flag_set(text: str | None) -> bool:
    """A watchdog boot status or similar indicator: set unless empty or zero."""
    if not text:
        return False
    try:
        return int(text, 0) != 0
    except ValueError:
        return True


def decide_reboot_reason(
    boot_id: str | None, running_boot_id: str | None, clean: bool, watchdog: bool
) -> str:
    """The reboot reason from what the markers say.

    Args:
        boot_id: this boot's id (None if unreadable).
        running_boot_id: boot id in the ``agent_running`` marker (None if absent).
        clean: the ``clean_shutdown`` marker exists.
        watchdog: the watchdog indicator says the last reset was the watchdog's.
    """
    if running_boot_id is None and not clean:
        return "first_boot"
    if clean:
        return "clean"
    if boot_id is None:
        return "unknown"
    if running_boot_id == boot_id:
        return "agent_crash"
    return "watchdog" if watchdog else "power_loss"


class SystemProbe(Probe):
    """Uptime, reboot reason, CPU temperature, disk, and mains where the board can tell.

    Config keys (paths are injectable so tests and odd boards can point elsewhere):
    ``state_dir`` (required), ``boot_id_path``, ``uptime_path``, ``temp_path``,
    ``watchdog_status_path``, ``disk_path`` (default: ``state_dir``), ``write_probe``
    (false), ``mains_path`` (none), ``mains_active_low`` (false).
    """

    name = "system"

    def __init__(self, name: str, section: Mapping[str, Any]) -> None:
        super().__init__(name)
        config = ProbeConfig(name, section)
        self.state_dir = Path(config.required_string("state_dir"))
        self.boot_id_path = config.string("boot_id_path", "/proc/sys/kernel/random/boot_id")
        self.uptime_path = config.string("uptime_path", "/proc/uptime")
        self.temp_path = config.string("temp_path", "/sys/class/thermal/thermal_zone0/temp")
        self.watchdog_status_path = config.string(
            "watchdog_status_path", "/sys/class/watchdog/watchdog0/bootstatus"
        )
        self.disk_path = config.string("disk_path") or str(self.state_dir)
        self.write_probe = config.boolean("write_probe", False)
        self.mains_path = config.string("mains_path")
        self.mains_active_low = config.boolean("mains_active_low", False)
        self.boot_id: str | None = None
        self.reboot_reason = "unknown"

    def _decide(self) -> None:
        self.boot_id = _read_text(self.boot_id_path) or None
        self.reboot_reason = decide_reboot_reason(
            self.boot_id,
            _read_text(str(self.state_dir / RUNNING_MARKER)),
            (self.state_dir / CLEAN_SHUTDOWN_MARKER).exists(),
            _flag_set(_read_text(self.watchdog_status_path)),
        )

    async def start_check(self) -> None:
        """What ``start()`` would decide, writing nothing: ``check-config`` before the first
        start must not turn that start's reboot reason into ``agent_crash``."""
        self._decide()

    async def start(self) -> None:
        """Work out the reboot reason once, then mark the agent as running."""
        self._decide()
        running = self.state_dir / RUNNING_MARKER
        clean = self.state_dir / CLEAN_SHUTDOWN_MARKER
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(running, self.boot_id or "")
            with contextlib.suppress(FileNotFoundError):
                clean.unlink()
        except OSError as exc:
            # A read-only state dir must not stop the agent; the next start says "unknown".
            self.errors += 1
            self._emit("info", "state_dir", detail=f"cannot write markers in {self.state_dir}: {exc}")
        self._emit("info", "agent_start", detail=f"reboot_reason={self.reboot_reason}")

    async def read(self) -> dict[str, Any]:
        """The heartbeat's system fields; a value the board cannot give is None."""
        free_mb, read_only = self._disk()
        return {
            "uptime_s": self._uptime(),
            "reboot_reason": self.reboot_reason,
            "temp_c": self._temperature(),
            "disk_free_mb": free_mb,
            "disk_ro": read_only,
            "mains": self._mains(),
        }

    def _uptime(self) -> float:
        text = _read_text(self.uptime_path)
        if text:
            with contextlib.suppress(ValueError):
                return round(float(text.split()[0]), 1)
        return round(time.monotonic(), 1)

    def _temperature(self) -> float | None:
        text = _read_text(self.temp_path)
        if not text:
            return None
        try:
            celsius = int(text) / 1000  # the kernel reports millidegrees
        except ValueError:
            return None
        return celsius if -60 <= celsius <= 200 else None

    def _disk(self) -> tuple[float | None, bool]:
        try:
            free_mb = round(shutil.disk_usage(self.disk_path).free / (1024 * 1024), 1)
            read_only = bool(os.statvfs(self.disk_path).f_flag & os.ST_RDONLY)
        except OSError:
            return None, False
        if not read_only and self.write_probe:
            read_only = not self._can_write()
        return free_mb, read_only

    def _can_write(self) -> bool:
        # Catches a filesystem the kernel remounted read-only after errors, or a full disk.
        path = Path(self.disk_path) / _WRITE_PROBE_FILE
        try:
            path.write_bytes(b"ok")
            path.unlink()
        except OSError:
            return False
        return True

    def _mains(self) -> bool | None:
        text = _read_text(self.mains_path)
        if text is None:
            return None
        value = text.lower()
        if value in ("1", "on", "mains", "online", "true"):
            on = True
        elif value in ("0", "off", "battery", "offline", "false"):
            on = False
        else:
            return None
        return on != self.mains_active_low
