"""What most ``tincoso`` commands load first, in one place: config, registry, state directory.

Also the readers of what an operator types: a commune or hamlet by id or name (any case,
with or without Vietnamese accents), local dates and times as ``27/11/2025 17:00`` or ISO,
and durations. Every failure is a `CliError` that says what was expected.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from backend.cli.common import CliError
from backend.config import BackendConfig, ConfigError, load_config
from backend.monitor.config import MonitorConfig
from backend.registry import LOCAL_TZ, Commune, Registry, RegistryError, load_registry

__all__ = [
    "CliContext",
    "Place",
    "find_place",
    "load_context",
    "load_registry_for",
    "parse_day",
    "parse_duration",
    "parse_local_time",
]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]|ph|phút|giờ|g|ngày)$")
_UNIT_S = {
    "s": 1,
    "m": 60,
    "ph": 60,
    "phút": 60,
    "h": 3600,
    "g": 3600,
    "giờ": 3600,
    "d": 86400,
    "ngày": 86400,
}
_DAY_VN = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_TIME_VN = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T]+(\d{1,2}):(\d{2}))?$")


@dataclass(frozen=True)
class CliContext:
    """A loaded ``backend.toml`` with its registry and the monitor's state directory."""

    config: BackendConfig
    registry: Registry
    monitor: MonitorConfig
    state_dir: Path


def load_context(config_path: str | Path, registry_path: str | Path | None = None) -> CliContext:
    """Load ``backend.toml``, the registry it names (or ``registry_path``) and the monitor settings.

    Raises:
        CliError: the config or the registry is missing or invalid (the message says where).
    """
    try:
        config = load_config(config_path)
        monitor = MonitorConfig.from_backend(config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    path = registry_path or config.registry_path
    if path is None:
        raise CliError(f"{config_path}: [registry] path is required (the fleet registry YAML)")
    return CliContext(config, load_registry_for(path), monitor, Path(monitor.monitor.state_dir))


def load_registry_for(path: str | Path) -> Registry:
    """Load a registry file; errors become `CliError` naming the file."""
    try:
        return load_registry(path)
    except RegistryError as exc:
        raise CliError(str(exc).splitlines()[0] if str(exc) else f"registry {path} is invalid") from None
    except OSError as exc:
        raise CliError(f"registry {path}: {exc.strerror or exc}") from None


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.strip().casefold().replace("đ", "d"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[\s_\-]+", " ", plain)


@dataclass(frozen=True)
class Place:
    """A commune, or one hamlet of it."""

    commune: Commune
    hamlet: str | None = None


def find_place(registry: Registry, text: str, *, hamlets: bool = True) -> Place:
    """The commune (or hamlet) ``text`` names: an id or a name, any case, accents optional.

    ``Tràng Xá``, ``trang xa`` and ``trang-xa`` all name the commune ``trang-xa``; a hamlet
    name (``Xóm Trung Thành``) names that hamlet of its commune when ``hamlets`` is true.

    Raises:
        CliError: no commune or hamlet has that name, or a hamlet name is in two communes.
    """
    wanted = _folded(text)
    for commune in registry.communes.values():
        if wanted in (_folded(commune.id), _folded(commune.name)):
            return Place(commune)
    if hamlets:
        found = {
            (device.commune, device.hamlet)
            for device in registry.devices.values()
            if _folded(device.hamlet) == wanted
        }
        if len(found) == 1:
            commune_id, hamlet = found.pop()
            home = registry.commune(commune_id)
            if home is not None:
                return Place(home, hamlet)
        if len(found) > 1:
            where = ", ".join(sorted(c for c, _ in found))
            raise CliError(f"hamlet {text!r} is in several communes ({where}): give the commune")
    names = ", ".join(f"{c.name} ({c.id})" for c in registry.communes.values())
    raise CliError(f"no commune {text!r} in the registry; communes: {names}")


def parse_duration(text: str) -> float:
    """``90m`` -> 5400.0 seconds (units s, m, h, d; also phút, giờ, ngày)."""
    match = _DURATION.match(text.strip().casefold())
    if not match:
        raise argparse.ArgumentTypeError(f"duration must look like 30s, 90m, 2h or 1d, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_local_time(text: str) -> float:
    """A Vietnam local time -> epoch seconds.

    Accepts ``27/11/2025 17:00``, ``27/11/2025`` (midnight), ``2025-11-27 17:00`` and ISO
    8601 with an offset (``2025-11-27T10:00:00+00:00``).
    """
    value = text.strip()
    match = _TIME_VN.match(value)
    try:
        if match:
            day, month, year, hour, minute = match.groups()
            moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0))
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"time must look like 27/11/2025 17:00 or 2025-11-27 17:00, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ)
    return moment.timestamp()


def parse_day(text: str) -> date:
    """``27/11/2025`` or ``2025-11-27`` -> a date."""
    value = text.strip()
    match = _DAY_VN.match(value)
    try:
        if match:
            return date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date dd/mm/yyyy or YYYY-MM-DD") from None
