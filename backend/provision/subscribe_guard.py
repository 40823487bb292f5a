"""Build the device listener's subscribe guard, a small Mosquitto plugin (``subscribe_guard.c``).

Mosquitto 2.0's ``acl_file`` never checks SUBSCRIBE, so on its own it lets a device join the
ingest's shared subscription and make the broker discard other devices' telemetry. The
plugin refuses every subscription except the exact topics a device needs (its own commands
and receipts). It is compiled once per source version with the system C compiler and cached
next to the broker's other files.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from protocols import topics

__all__ = ["GuardBuildError", "build_subscribe_guard", "device_subscriptions", "guard_lines", "plugin_path"]


class GuardBuildError(RuntimeError):
    """The plugin could not be compiled (no C compiler, or it failed)."""


def _source() -> bytes:
    return resources.files("backend.provision").joinpath("subscribe_guard.c").read_bytes()


def plugin_path(directory: Path) -> Path:
    """Where :func:`build_subscribe_guard` puts the plugin for this source version."""
    digest = hashlib.sha256(_source()).hexdigest()[:12]
    return directory / f"tincoso_subscribe_guard-{digest}.so"


def build_subscribe_guard(directory: Path) -> Path:
    """Compile the plugin into ``directory`` (once per source version) and return its path.

    Raises:
        GuardBuildError: no ``cc`` on PATH, or the compiler failed.
    """
    source = _source()
    target = plugin_path(directory)
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise GuardBuildError("no C compiler (cc) on PATH: install gcc to build the subscribe guard")
    directory.mkdir(parents=True, exist_ok=True)
    src = directory / "subscribe_guard.c"
    src.write_bytes(source)
    tmp = target.with_suffix(".tmp")
    result = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise GuardBuildError(f"compiling {src} failed: {result.stderr.strip()}")
    tmp.replace(target)
    return target


def device_subscriptions(root: str = topics.ROOT) -> list[str]:
    """The only filters a device may subscribe to (``%u`` is its user name)."""
    return [f"{root}/%u/{channel}" for channel in topics.DEVICE_READ_CHANNELS]


def guard_lines(directory: Path, root: str = topics.ROOT, *, build: bool = True) -> list[str]:
    """Listener lines that load the guard (place them after the device ``listener`` line).

    ``build=False`` only names the plugin's path (a configuration rendered for another
    machine, or a dry run); the installer builds it there.
    """
    plugin = build_subscribe_guard(directory) if build else plugin_path(directory)
    return [f"plugin {plugin}", "plugin_opt_subscribe " + " ".join(device_subscriptions(root))]
