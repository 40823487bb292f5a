"""The monitor's settings: ``[monitor]``, ``[rules]`` (or ``[monitor.rules]``), ``[alerts]``.

The broker and database come from ``backend.config`` (``[mqtt]``, ``[influx]``); the
monitor has its own MQTT client id (``monitor.client_id``), because the broker keeps a
persistent session per id.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from backend.config import BackendConfig, ConfigError, MqttSettings
from backend.monitor.rules import RuleError, RulesConfig

__all__ = ["AlertSettings", "MonitorConfig", "MonitorSettings"]


@dataclass(frozen=True)
class MonitorSettings:
    """``[monitor]``.

    Attributes:
        client_id: MQTT client id of the monitor (persistent session).
        state_dir: Open alerts and maintenance windows live here.
        missed_heartbeats: Heartbeats missed before a device is offline.
        default_heartbeat_s: Heartbeat interval assumed before a birth says it.
        tick_s: How often timers (timeouts, ``for`` delays, gaps, reminders) run.
        gap_grace_s: How long a sequence hole waits for replayed messages.
        stats_interval_s: How often ``backend_stats`` is written.
        buffer_points: Points held while InfluxDB is away (oldest dropped beyond).
        device_info_s: How often registry coordinates are written as ``device_info``
            (dashboards' map); daily keeps them inside the raw retention policy.
        website_check_s: How often commune websites are probed for KPI 1.3 (0: never).
    """

    client_id: str = field(default_factory=lambda: f"tincoso-monitor-{socket.gethostname()}")
    state_dir: str = "var/state"
    missed_heartbeats: float = 3.0
    default_heartbeat_s: float = 60.0
    tick_s: float = 2.0
    gap_grace_s: float = 120.0
    stats_interval_s: float = 30.0
    buffer_points: int = 100_000
    device_info_s: float = 86_400.0
    website_check_s: float = 3_600.0


@dataclass(frozen=True)
class AlertSettings:
    """``[alerts]``: retries, reminders and the channels' servers.

    E-mail is on when ``smtp_host`` is set, Telegram when ``telegram_token`` is set; the
    JSON webhook is always on (a technician opts in with a ``webhook`` URL).
    """

    remind_s: float = 0.0
    attempts: int = 5
    backoff_s: float = 5.0
    backoff_max_s: float = 600.0
    send_timeout_s: float = 30.0
    workers: int = 4
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_from: str = "tincoso@localhost"
    webhook_timeout_s: float = 10.0
    telegram_token: str | None = None
    telegram_base_url: str = "https://api.telegram.org"


@dataclass(frozen=True)
class MonitorConfig:
    """Everything the monitor needs besides the registry and the InfluxDB client."""

    mqtt: MqttSettings = field(default_factory=MqttSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    rules: RulesConfig = field(default_factory=RulesConfig)
    alerts: AlertSettings = field(default_factory=AlertSettings)

    @classmethod
    def from_backend(cls, config: BackendConfig) -> MonitorConfig:
        """Type the monitor's sections of a loaded ``backend.toml``.

        Raises:
            ConfigError: a setting is unknown or has the wrong type.
        """
        monitor_raw = config.section("monitor")
        rules_raw = {**monitor_raw.pop("rules", {}), **config.section("rules")}
        monitor = _typed(MonitorSettings, "monitor", monitor_raw)
        if config.path is not None and not Path(monitor.state_dir).is_absolute():
            monitor = replace(monitor, state_dir=str(config.path.parent / monitor.state_dir))
        try:
            rules = RulesConfig.from_dict(rules_raw)
        except RuleError as exc:
            raise ConfigError(str(exc)) from None
        return cls(config.mqtt, monitor, rules, _typed(AlertSettings, "alerts", config.section("alerts")))


_T = TypeVar("_T", MonitorSettings, AlertSettings)


def _typed(cls: type[_T], name: str, raw: Mapping[str, Any]) -> _T:
    known = {f.name: str(f.type) for f in fields(cls)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{name}.{key} is not a known setting (known: {', '.join(sorted(known))})")
        wanted = known[key]
        if wanted.startswith("bool"):
            ok = isinstance(value, bool)
        elif wanted.startswith("int"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif wanted.startswith("float"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(
                f"{name}.{key} must be {wanted.split(' ')[0]}, got {type(value).__name__} {value!r}"
            )
    coerced: dict[str, Any] = {k: float(v) if known[k].startswith("float") else v for k, v in raw.items()}
    return cls(**coerced)
