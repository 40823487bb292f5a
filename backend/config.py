"""``backend.toml``: the backend's settings, loaded into typed, validated sections.

Sections ``[mqtt]``, ``[influx]``, ``[ingest]`` and ``[spool]`` are typed here. ``[registry]``
(``path``), ``[monitor]``, ``[rules]`` and ``[alerts]`` are kept as plain dicts in
`BackendConfig.extra`; the monitor types its own (``backend.monitor.config``). Unknown keys
in the typed sections are errors (a typo must not silently fall back to a default).
Relative paths are resolved against the config file's directory.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from backend.influx import InfluxClient
from backend.rollups import RetentionConfig
from backend.spool import Spool
from protocols.stored_data import SOUND_THRESHOLD_DBFS, check_sound_threshold

__all__ = [
    "BackendConfig",
    "ConfigError",
    "InfluxSettings",
    "IngestSettings",
    "MqttSettings",
    "SpoolSettings",
    "load_config",
    "mask",
]


class ConfigError(ValueError):
    """The config file is missing, not TOML, or has a bad value (the message names it)."""


def mask(secret: str | None) -> str:
    """What a log line may show of a secret."""
    return "" if not secret else "***"


@dataclass(frozen=True)
class MqttSettings:
    """``[mqtt]``: the broker session the ingest (and monitor) use.

    ``client_id`` must be fixed and unique per process: the broker keeps the persistent
    session (and the unacknowledged messages) under it. ``protocol`` is 4 (MQTT 3.1.1) by
    default: paho decodes an MQTT 5 PUBLISH's properties even when there are none, which
    costs the ingest about 70 % more CPU per message (docs/benchmarks.md). With 4 the
    broker's ``max_inflight_messages`` is the window of unacknowledged messages to us and
    ``session_expiry_s`` does not apply (the session is kept until removed); with 5 the
    ingest sends ``receive_maximum`` as its window. Either way the ingest writes a batch
    once half of ``receive_maximum`` waits (keep it equal to the broker's window), or when
    the broker pauses (``ingest.idle_flush_ms``).
    """

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = field(default_factory=lambda: f"tincoso-ingest-{socket.gethostname()}")
    protocol: int = 4
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 1000
    topic_root: str = "tincoso/v1"
    shared_group: str = ""
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    reconnect_max_s: float = 30.0

    @property
    def host(self) -> str:
        """Broker host from ``url``."""
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """Broker port from ``url`` (1883, or 8883 for ``mqtts``)."""
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        """True for an ``mqtts://`` URL."""
        return urlsplit(self.url).scheme == "mqtts"

    def _check(self) -> None:
        if urlsplit(self.url).scheme not in ("mqtt", "mqtts"):
            raise ConfigError(f"mqtt.url must start with mqtt:// or mqtts://, got {self.url!r}")
        if self.protocol not in (4, 5):
            raise ConfigError(f"mqtt.protocol must be 4 (MQTT 3.1.1) or 5, got {self.protocol!r}")
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigError(f"mqtt.receive_maximum must be 1..65535, got {self.receive_maximum}")
        if not self.client_id:
            raise ConfigError("mqtt.client_id must not be empty")
        if any(c in self.shared_group for c in "/+#"):
            raise ConfigError(f"mqtt.shared_group must not contain '/', '+' or '#': {self.shared_group!r}")


@dataclass(frozen=True)
class InfluxSettings:
    """``[influx]``: the InfluxDB (v1 HTTP API) readings go to."""

    url: str = "http://127.0.0.1:8086"
    database: str = "tincoso"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    retention_policy: str | None = None
    timeout_s: float = 10.0
    gzip: bool = True
    manage_retention: bool = True
    raw_days: int = 400
    rollup_1m_days: int = 1100
    rollup_1h_days: int = 0
    rollup_1d_days: int = 0

    def client(self) -> InfluxClient:
        """An InfluxDB client with these settings (the caller closes it)."""
        return InfluxClient(
            self.url,
            self.database,
            username=self.username,
            password=self.password,
            retention_policy=self.retention_policy,
            timeout=self.timeout_s,
            gzip_writes=self.gzip,
        )

    def retention(self, sound_threshold_dbfs: float = SOUND_THRESHOLD_DBFS) -> RetentionConfig | None:
        """Retention policies and rollups to keep up to date, or None to leave the database alone.

        Args:
            sound_threshold_dbfs: ``[definitions]`` threshold the audio rollups use.
        """
        if not self.manage_retention:
            return None
        return RetentionConfig(
            raw_days=self.raw_days or None,
            rollup_1m_days=self.rollup_1m_days or None,
            rollup_1h_days=self.rollup_1h_days or None,
            rollup_1d_days=self.rollup_1d_days or None,
            sound_threshold_dbfs=sound_threshold_dbfs,
        )

    def _check(self) -> None:
        for name in ("raw_days", "rollup_1m_days", "rollup_1h_days", "rollup_1d_days"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"influx.{name} must be >= 0 (0 keeps points forever), got {getattr(self, name)}"
                )
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ConfigError(f"influx.url must start with http:// or https://, got {self.url!r}")
        if not self.database or '"' in self.database:
            raise ConfigError(f"influx.database must be a non-empty name without quotes: {self.database!r}")
        if self.timeout_s <= 0:
            raise ConfigError(f"influx.timeout_s must be > 0, got {self.timeout_s}")


@dataclass(frozen=True)
class IngestSettings:
    """``[ingest]``: batching, self-telemetry and timestamp placement."""

    batch_points: int = 5000
    batch_ms: int = 200
    idle_flush_ms: int = 20
    stats_interval_s: float = 10.0
    process_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    quarantine_payload_bytes: int = 512
    anchor_refresh_s: float = 600.0
    clock_skew_s: float = 300.0
    invalid_log_interval_s: float = 60.0
    # Publish a delivery receipt to each device once its readings are durable (protocols/README.md).
    receipts: bool = True
    # Late readings: recompute their rollups once the replay has been quiet this long.
    late_debounce_s: float = 30.0
    # Late readings: recompute their rollups at all (needs READ and WRITE on the database).
    recompute_late: bool = True

    def _check(self) -> None:
        if self.batch_points < 1:
            raise ConfigError(f"ingest.batch_points must be >= 1, got {self.batch_points}")
        if self.batch_ms < 1:
            raise ConfigError(f"ingest.batch_ms must be >= 1, got {self.batch_ms}")
        if self.idle_flush_ms < 0:
            raise ConfigError(f"ingest.idle_flush_ms must be >= 0 (0 = off), got {self.idle_flush_ms}")
        if self.stats_interval_s <= 0:
            raise ConfigError(f"ingest.stats_interval_s must be > 0, got {self.stats_interval_s}")


@dataclass(frozen=True)
class SpoolSettings:
    """``[spool]``: where batches wait while InfluxDB is away (one directory per process)."""

    dir: str = "var/spool/ingest"
    segment_bytes: int = 8 * 1024 * 1024
    drain_records: int = 20
    max_mb: float = 0.0
    min_free_mb: float = 512.0

    def _check(self) -> None:
        if self.segment_bytes < 1024:
            raise ConfigError(f"spool.segment_bytes must be >= 1024, got {self.segment_bytes}")
        if self.max_mb < 0:
            raise ConfigError(f"spool.max_mb must be >= 0 (0 = no cap), got {self.max_mb}")
        if self.min_free_mb < 0:
            raise ConfigError(f"spool.min_free_mb must be >= 0 (0 = no floor), got {self.min_free_mb}")
        if self.drain_records < 1:
            raise ConfigError(f"spool.drain_records must be >= 1, got {self.drain_records}")

    def open(self) -> Spool:
        """The spool these settings describe (blocking: run it in a thread)."""
        return Spool(
            self.dir,
            segment_bytes=self.segment_bytes,
            max_bytes=int(self.max_mb * 2**20),
            min_free_bytes=int(self.min_free_mb * 2**20),
        )


@dataclass(frozen=True)
class BackendConfig:
    """The whole ``backend.toml``."""

    mqtt: MqttSettings = field(default_factory=MqttSettings)
    influx: InfluxSettings = field(default_factory=InfluxSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    registry_path: str | None = None
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def sound_threshold_dbfs(self) -> float:
        """``[definitions] sound_threshold_dbfs``: the one "sounded" threshold of every reader."""
        value = self.extra.get("definitions", {}).get("sound_threshold_dbfs", SOUND_THRESHOLD_DBFS)
        return float(value)

    def retention(self) -> RetentionConfig | None:
        """`InfluxSettings.retention` with this config's definitions."""
        return self.influx.retention(self.sound_threshold_dbfs)

    def section(self, name: str) -> dict[str, Any]:
        """A section the backend core does not type (``monitor``, ``rules``, ``alerts``, ``registry``)."""
        return dict(self.extra.get(name, {}))


_T = TypeVar("_T", MqttSettings, InfluxSettings, IngestSettings, SpoolSettings)
_UNTYPED = ("registry", "monitor", "rules", "alerts", "kpi", "definitions")
# [definitions]: what stored data means (protocols/stored_data.py), set once for every reader.
_DEFINITIONS = ("sound_threshold_dbfs",)


def _check_definitions(section: dict[str, Any]) -> None:
    for key, value in section.items():
        if key not in _DEFINITIONS:
            raise ConfigError(f"definitions.{key} is not a known setting (known: {', '.join(_DEFINITIONS)})")
        try:
            check_sound_threshold(value, f"definitions.{key}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _typed(cls: type[_T], name: str, raw: Any) -> _T:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key} is not a known setting (known: {', '.join(sorted(known))})")
    for key, value in raw.items():
        _check_type(f"{name}.{key}", known[key].type, value)
    settings = cls(**raw)
    settings._check()
    return settings


def _check_type(where: str, annotation: Any, value: Any) -> None:
    text = str(annotation)
    if "bool" in text:
        ok = isinstance(value, bool)
    elif text.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif text.startswith("float"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{where} must be {text.split(' ')[0]}, got {type(value).__name__} {value!r}")


def load_config(path: str | os.PathLike[str]) -> BackendConfig:
    """Read and validate ``backend.toml``.

    Raises:
        ConfigError: the file is missing, is not TOML, or a setting is wrong.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        example = "start from backend/examples/backend.toml"
        raise ConfigError(f"config file {path} does not exist ({example})") from None
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return config_from_dict(raw, base=path.parent, path=path)


def config_from_dict(
    raw: dict[str, Any], *, base: Path | None = None, path: Path | None = None
) -> BackendConfig:
    """Validate an already-parsed config (tests build configs this way)."""
    known = {"mqtt", "influx", "ingest", "spool", *_UNTYPED}
    for key in raw:
        if key not in known:
            raise ConfigError(f"[{key}] is not a known section (known: {', '.join(sorted(known))})")
    spool = _typed(SpoolSettings, "spool", raw.get("spool", {}))
    if base is not None:
        spool = replace(spool, dir=str(base / spool.dir))
    extra: dict[str, dict[str, Any]] = {}
    for name in _UNTYPED:
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table")
        extra[name] = section
    _check_definitions(extra["definitions"])
    registry_path = extra["registry"].get("path")
    if registry_path is not None and not isinstance(registry_path, str):
        raise ConfigError(f"registry.path must be a string, got {registry_path!r}")
    if registry_path is not None and base is not None:
        registry_path = str(base / registry_path)
    return BackendConfig(
        mqtt=_typed(MqttSettings, "mqtt", raw.get("mqtt", {})),
        influx=_typed(InfluxSettings, "influx", raw.get("influx", {})),
        ingest=_typed(IngestSettings, "ingest", raw.get("ingest", {})),
        spool=spool,
        registry_path=registry_path,
        extra=extra,
        path=path,
    )
