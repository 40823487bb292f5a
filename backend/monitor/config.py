"""The monitor's settings: ``[monitor]``, ``[rules]`` (or ``[monitor.rules]``), ``[alerts]``.

The broker and database come from ``backend.config`` (``[mqtt]``, ``[influx]``); the
monitor has its own MQTT client id (``monitor.client_id``), because the broker keeps a
persistent session per id.
"""

from __future__ import annotations

import re
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
        hold_on_broker_loss: While the monitor has lost the broker, and until each device
            had its offline grace after it is back, silence and Last Wills are the server's:
            no device alert, one backend-health notice to the district contacts.
        server_notice_after_s: A broker outage this long is told while it lasts too.
        area_grouping: Several devices of one commune (or the district) offline together
            get one area notice instead of one each (`backend.monitor.areas`).
        area_window_heartbeats: How long an offline alert waits for its neighbours, in
            the device's own heartbeat intervals (2 min at a 60 s heartbeat).
        area_fraction: Share of a commune's (or the district's) registered devices that
            must be down together for an area notice.
        area_min_devices: And at least this many devices (waived inside a district-wide outage).
        digest_weekday: The weekly device-health digest goes to the district contacts on
            this day (0 = Monday; -1: never, send it with ``tincoso digest --send``).
        digest_at: At this time, ``HH:MM`` Vietnam time.
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
    hold_on_broker_loss: bool = True
    server_notice_after_s: float = 300.0
    area_grouping: bool = True
    area_window_heartbeats: float = 2.0
    area_fraction: float = 0.5
    area_min_devices: int = 3
    digest_weekday: int = 0
    digest_at: str = "07:00"

    def __post_init__(self) -> None:
        if not -1 <= self.digest_weekday <= 6:
            raise ConfigError(
                f"monitor.digest_weekday must be 0 (Monday) to 6, or -1, got {self.digest_weekday!r}"
            )
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.digest_at):
            raise ConfigError(f"monitor.digest_at must be HH:MM, got {self.digest_at!r}")
        if not 0 < self.area_fraction <= 1:
            raise ConfigError(
                f"monitor.area_fraction must be above 0 and at most 1, got {self.area_fraction!r}"
            )
        if self.area_min_devices < 1:
            raise ConfigError(f"monitor.area_min_devices must be at least 1, got {self.area_min_devices!r}")
        if self.area_window_heartbeats < 0:
            raise ConfigError(
                f"monitor.area_window_heartbeats must not be negative, got {self.area_window_heartbeats!r}"
            )


@dataclass(frozen=True)
class AlertSettings:
    """``[alerts]``: retries, reminders and the channels' servers.

    E-mail is on when ``smtp_host`` is set, Telegram when ``telegram_token`` is set, SMS
    when ``sms_url`` is set (an HTTP brandname-SMS gateway, see ``alerts/channels/sms.py``);
    the JSON webhook is always on (a technician opts in with a ``webhook`` URL). With
    Telegram on, the monitor also reads replies (``getUpdates``) to acknowledge alerts,
    unless ``telegram_replies`` is false (a bot whose updates go to a webhook elsewhere).
    ``grafana_url`` puts a link to the device's dashboard in every notice.
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
    telegram_replies: bool = True
    telegram_poll_s: float = 25.0
    grafana_url: str | None = None
    sms_url: str | None = None
    sms_body: str = "json"
    sms_phone_field: str = "Phone"
    sms_text_field: str = "Content"
    sms_phone_style: str = "84"
    sms_phone_as_list: bool = False
    sms_params: dict[str, str | int | bool] = field(default_factory=dict)
    sms_username: str | None = None
    sms_password: str | None = None
    sms_token: str | None = None
    sms_ok_field: str = ""
    sms_ok_value: str = ""
    sms_unaccented: bool = False

    def __post_init__(self) -> None:
        if self.sms_body not in ("json", "form"):
            raise ConfigError(f"alerts.sms_body must be json or form, got {self.sms_body!r}")
        if self.sms_phone_style not in ("84", "+84", "0"):
            raise ConfigError(f"alerts.sms_phone_style must be 84, +84 or 0, got {self.sms_phone_style!r}")


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
            threshold = config.sound_threshold_dbfs
            rules = replace(RulesConfig.from_dict(rules_raw), sound_threshold_dbfs=threshold)
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
        if wanted.startswith("dict"):
            ok = isinstance(value, dict) and all(isinstance(v, str | int | bool) for v in value.values())
        elif wanted.startswith("bool"):
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
