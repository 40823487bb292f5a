"""``server.toml``: one district server's names, interfaces, directories and fleet settings.

Everything ``tincoso server install`` writes is derived from this file. Paths default to
Debian's places (``/etc/tincoso``, ``/var/lib/tincoso``, ...); tests point them into a
temporary directory. Unknown keys are errors, so a typo never falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from protocols.stored_data import check_sound_threshold

__all__ = ["Paths", "ServerConfig", "ServerConfigError", "load_server_config", "server_config_from_dict"]

# Sections copied into the backend's own config untouched (the backend validates them).
PASSTHROUGH = ("monitor", "rules", "alerts", "kpi", "ingest", "spool", "definitions")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class ServerConfigError(ValueError):
    """``server.toml`` is missing, not TOML, or has a bad value (the message names it)."""


@dataclass(frozen=True)
class Paths:
    """``[paths]``: where each kind of file goes on the server."""

    etc: str = "/etc/tincoso"
    data: str = "/var/lib/tincoso"
    log: str = "/var/log/tincoso"
    backups: str = "/var/backups/tincoso"
    systemd: str = "/etc/systemd/system"
    logrotate: str = "/etc/logrotate.d"
    grafana: str = "/etc/grafana/provisioning"
    tincoso: str = "/opt/tincoso/venv/bin/tincoso"
    mosquitto: str = "/usr/sbin/mosquitto"
    influxd: str = "/usr/bin/influxd"

    def path(self, name: str) -> Path:
        """One of the directories or programs above as a Path."""
        return Path(getattr(self, name))


@dataclass(frozen=True)
class ServerConfig:
    """The whole ``server.toml``.

    Attributes:
        names: DNS names devices use to reach the broker (certificate SANs).
        addresses: IP addresses devices may use (certificate SANs).
        listen: Addresses the device listener binds (default: ``addresses``).
        device_port: The devices' MQTT-over-TLS port.
        backend_port: The backend listener's port (loopback only).
        influx_port: InfluxDB's HTTP port (loopback only).
        influx_rpc_port: InfluxDB's backup RPC port (loopback only).
        user: System user every service runs as.
        cert: Operator-supplied certificate for the device listener (e.g. from ACME);
            empty: the district CA issues one for ``names`` and ``addresses``.
        key: Its private key.
        district: Short name used in client ids (``tincoso-ingest-<district>``).
        database: InfluxDB database.
        backup_keep_days: Nightly backups older than this are removed.
        backup_at: Local time of the nightly backup (``HH:MM``).
        min_free_mb: Disk space the doctor wants free for the spool and the database.
        registry: The fleet registry YAML (copied to ``etc/registry.yaml``).
        influx: ``[influx]`` retention settings passed to the backend.
        sections: Passthrough sections (``[monitor]``, ``[alerts]``, ...).
        source: The file this was read from.
    """

    names: tuple[str, ...]
    addresses: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()
    device_port: int = 8883
    backend_port: int = 8884
    influx_port: int = 8086
    influx_rpc_port: int = 8088
    user: str = "tincoso"
    cert: str = ""
    key: str = ""
    district: str = "district"
    database: str = "tincoso"
    backup_keep_days: int = 14
    backup_at: str = "02:30"
    min_free_mb: int = 1024
    registry: str = ""
    paths: Paths = field(default_factory=Paths)
    influx: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        """Where the device listener binds: ``listen``, else every configured address."""
        return self.listen or self.addresses or ("0.0.0.0",)

    @property
    def cert_hosts(self) -> list[str]:
        """Every name and address a device may use: the certificate's SANs."""
        return [*self.names, *self.addresses]

    @property
    def etc(self) -> Path:
        """``[paths] etc``."""
        return self.paths.path("etc")

    @property
    def data(self) -> Path:
        """``[paths] data``."""
        return self.paths.path("data")

    @property
    def secrets_dir(self) -> Path:
        """The provisioning store: CA, passwords, ACL, device bundles (0700)."""
        return self.etc / "secrets"

    @property
    def config_path(self) -> Path:
        """Where the installed copy of this file lives (the units name it)."""
        return self.etc / "server.toml"

    def _check(self) -> None:
        if not self.names and not self.addresses:
            raise ServerConfigError("server.names or server.addresses must name how devices reach the server")
        for name in self.names:
            if not _DNS_NAME.match(name):
                raise ServerConfigError(f"server.names: {name!r} is not a DNS name (lower case a-z 0-9 - .)")
        for address in (*self.addresses, *self.listen):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ServerConfigError(f"server address {address!r} is not an IP address") from None
        for name in ("device_port", "backend_port", "influx_port", "influx_rpc_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ServerConfigError(f"server.{name} must be 1..65535, got {port}")
        ports = [self.device_port, self.backend_port, self.influx_port, self.influx_rpc_port]
        if len(set(ports)) != len(ports):
            raise ServerConfigError(f"server ports must differ, got {ports}")
        if bool(self.cert) != bool(self.key):
            raise ServerConfigError("server.cert and server.key go together: give both or neither")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", self.district):
            raise ServerConfigError(
                f"server.district must be a short slug (a-z 0-9 -), got {self.district!r}"
            )
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.backup_at):
            raise ServerConfigError(f"backup.at must be HH:MM, got {self.backup_at!r}")
        if self.backup_keep_days < 1:
            raise ServerConfigError(f"backup.keep_days must be >= 1, got {self.backup_keep_days}")
        if not self.registry:
            raise ServerConfigError("registry.path is required (the fleet registry YAML)")
        for name in ("etc", "data", "log", "backups", "systemd", "logrotate", "grafana", "tincoso"):
            if not os.path.isabs(getattr(self.paths, name)):
                raise ServerConfigError(
                    f"paths.{name} must be an absolute path, got {getattr(self.paths, name)!r}"
                )


_SERVER_KEYS = {
    "names": "names",
    "addresses": "addresses",
    "listen": "listen",
    "device_port": "device_port",
    "backend_port": "backend_port",
    "influx_port": "influx_port",
    "influx_rpc_port": "influx_rpc_port",
    "user": "user",
    "cert": "cert",
    "key": "key",
    "district": "district",
    "min_free_mb": "min_free_mb",
}
_INFLUX_KEYS = ("database", "raw_days", "rollup_1m_days", "rollup_1h_days", "rollup_1d_days")


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ServerConfigError(f"[{name}] must be a table")
    return value


def _unknown(section: str, table: dict[str, Any], known: Any) -> None:
    for key in table:
        if key not in known:
            raise ServerConfigError(
                f"{section}.{key} is not a known setting (known: {', '.join(sorted(known))})"
            )


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ServerConfigError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def server_config_from_dict(raw: dict[str, Any], *, base: Path | None = None) -> ServerConfig:
    """Validate an already-parsed ``server.toml`` (relative paths resolved against ``base``)."""
    known = {"server", "paths", "registry", "influx", "backup", *PASSTHROUGH}
    _unknown("server.toml", dict.fromkeys(raw, 0), known)
    server, paths_raw = _table(raw, "server"), _table(raw, "paths")
    _unknown("server", server, _SERVER_KEYS)
    _unknown("paths", paths_raw, {f.name for f in fields(Paths)})
    backup, registry, influx = _table(raw, "backup"), _table(raw, "registry"), _table(raw, "influx")
    _unknown("backup", backup, ("keep_days", "at"))
    _unknown("registry", registry, ("path",))
    _unknown("influx", influx, _INFLUX_KEYS)
    values: dict[str, Any] = {}
    for key, attr in _SERVER_KEYS.items():
        if key not in server:
            continue
        value = server[key]
        if key in ("names", "addresses", "listen"):
            value = _strings(f"server.{key}", value)
        elif key.endswith("port") or key == "min_free_mb":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ServerConfigError(f"server.{key} must be an integer, got {value!r}")
        elif not isinstance(value, str):
            raise ServerConfigError(f"server.{key} must be a string, got {value!r}")
        values[attr] = value
    for key, value in paths_raw.items():
        if not isinstance(value, str):
            raise ServerConfigError(f"paths.{key} must be a string, got {value!r}")
    registry_path = registry.get("path", "")
    if not isinstance(registry_path, str):
        raise ServerConfigError(f"registry.path must be a string, got {registry_path!r}")
    if registry_path and base is not None:
        registry_path = str((base / registry_path).resolve())
    for key in ("cert", "key"):
        if values.get(key) and base is not None:
            values[key] = str((base / values[key]).resolve())
    sections = {name: _table(raw, name) for name in PASSTHROUGH if name in raw}
    if "sound_threshold_dbfs" in sections.get("definitions", {}):
        try:
            check_sound_threshold(
                sections["definitions"]["sound_threshold_dbfs"], "definitions.sound_threshold_dbfs"
            )
        except ValueError as exc:
            raise ServerConfigError(str(exc)) from None
    config = ServerConfig(
        **values,
        database=str(influx.get("database", "tincoso")),
        backup_keep_days=int(backup.get("keep_days", 14)),
        backup_at=str(backup.get("at", "02:30")),
        registry=registry_path,
        paths=Paths(**paths_raw),
        influx={k: v for k, v in influx.items() if k != "database"},
        sections=sections,
    )
    config._check()
    return config


def load_server_config(path: str | os.PathLike[str]) -> ServerConfig:
    """Read and validate ``server.toml``.

    Raises:
        ServerConfigError: The file is missing, not TOML, or a setting is wrong.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServerConfigError(f"{path} does not exist (start from backend/examples/server.toml)") from None
    except (OSError, UnicodeError) as exc:
        raise ServerConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ServerConfigError(f"{path} is not valid TOML: {exc}") from None
    config = server_config_from_dict(raw, base=path.resolve().parent)
    return _with_source(config, path.resolve())


def _with_source(config: ServerConfig, source: Path) -> ServerConfig:
    from dataclasses import replace

    return replace(config, source=source)
