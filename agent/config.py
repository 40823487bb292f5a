"""The agent's TOML configuration: load, validate, and explain what is wrong.

Every error names the section and key (``[mqtt] port must be an integer 1-65535, got
'abc'``) so a technician editing ``agent.toml`` on site can fix it without the source.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

from protocols import payloads, topics

DEFAULT_STATE_DIR = "/var/lib/tincoso-agent"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message says where."""


class _Section:
    """Reads typed keys from one TOML table and rejects unknown ones."""

    def __init__(self, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table, got {type(table).__name__}")
        self.name = name
        self.table: dict[str, Any] = table
        self.used: set[str] = set()

    def _fail(self, key: str, what: str, value: Any) -> ConfigError:
        return ConfigError(f"[{self.name}] {key} must be {what}, got {value!r}")

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.table.get(key, default)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if key not in self.table:
            if required:
                raise ConfigError(f"[{self.name}] {key} is missing")
            self.used.add(key)
            return default
        value = self.get(key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string", value)
        return value

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self._fail(key, f"an integer {lo}-{hi}", value)
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self._fail(key, f"a number {lo:g}-{hi:g}", value)
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def command(self, key: str, default: list[str] | None) -> list[str] | None:
        """A command line: a list of strings, or one string split like a shell would."""
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = shlex.split(value)
            except ValueError as exc:
                raise self._fail(key, f"a command line ({exc})", value) from None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a command (a string or a list of strings)", value)
        return list(value)

    def check_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise ConfigError(f"[{self.name}] unknown key {unknown[0]!r}")


class AgentConfig:
    """A validated agent configuration. Attributes mirror the TOML sections."""

    def __init__(self, raw: dict[str, Any], source: str = "<config>") -> None:
        self.source = source
        self.raw = raw
        known = {"device", "mqtt", "reporting", "queue", "clock", "commands", "probes"}
        for name in raw:
            if name not in known:
                raise ConfigError(f"unknown section [{name}] (known: {', '.join(sorted(known))})")
        self._device(_Section("device", raw.get("device", {})))
        self._mqtt(_Section("mqtt", raw.get("mqtt", {})))
        self._reporting(_Section("reporting", raw.get("reporting", {})))
        self._queue(_Section("queue", raw.get("queue", {})))
        self._clock(_Section("clock", raw.get("clock", {})))
        self._commands(_Section("commands", raw.get("commands", {})))
        probes = raw.get("probes", {})
        if not isinstance(probes, dict):
            raise ConfigError("[probes] must be a table of [probes.<name>] sections")
        self.probes: dict[str, dict[str, Any]] = {}
        for name, section in probes.items():
            if not isinstance(section, dict):
                raise ConfigError(f"[probes.{name}] must be a table, got {type(section).__name__}")
            self.probes[name] = dict(section)

    def _device(self, s: _Section) -> None:
        device_id = s.string("id", required=True)
        assert device_id is not None
        try:
            self.device_id = topics.check_device_id(device_id)
        except ValueError as exc:
            raise ConfigError(f"[device] id: {exc}") from None
        kind = s.string("kind", required=True)
        if kind not in payloads.DEVICE_KINDS:
            raise s._fail("kind", "one of " + ", ".join(payloads.DEVICE_KINDS), kind)
        self.device_kind: str = kind
        self.state_dir = Path(s.string("state_dir", DEFAULT_STATE_DIR) or DEFAULT_STATE_DIR)
        self.platform: str | None = s.string("platform")
        s.check_unknown()

    def _mqtt(self, s: _Section) -> None:
        self.mqtt_host: str = check_host(s.string("host", "127.0.0.1") or "127.0.0.1")
        self.mqtt_port = s.integer("port", 1883, 1, 65535)
        self.mqtt_username = s.string("username")
        self.mqtt_password = s.string("password")
        self.mqtt_password_file = s.string("password_file")
        if self.mqtt_password_file is not None and self.mqtt_password is not None:
            raise ConfigError("[mqtt] give password or password_file, not both")
        self.mqtt_tls = s.boolean("tls", False)
        self.mqtt_cafile = s.string("cafile")
        self.mqtt_certfile = s.string("certfile")
        self.mqtt_keyfile = s.string("keyfile")
        if (self.mqtt_certfile is None) != (self.mqtt_keyfile is None):
            raise ConfigError("[mqtt] certfile and keyfile go together")
        self.mqtt_keepalive_s = s.integer("keepalive_s", 30, 5, 3600)
        self.reconnect_min_s = s.number("reconnect_min_s", 1.0, 0.05, 3600)
        self.reconnect_max_s = s.number("reconnect_max_s", 60.0, 0.05, 86400)
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError("[mqtt] reconnect_max_s must be >= reconnect_min_s")
        self.publish_timeout_s = s.number("publish_timeout_s", 15.0, 0.5, 600)
        self.topic_root: str = s.string("topic_root", topics.ROOT) or topics.ROOT
        # Keep readings queued until the backend's delivery receipt (false: until PUBACK,
        # for a backend without receipts); resend those without one after this long.
        self.receipts = s.boolean("receipts", True)
        self.receipt_timeout_s = s.number("receipt_timeout_s", 60.0, 0.5, 86400)
        s.check_unknown()

    def _reporting(self, s: _Section) -> None:
        self.heartbeat_s = s.number("heartbeat_s", 30.0, 1, 86400)
        self.snapshot_s = s.number("snapshot_s", 300.0, 0.1, 86400)
        self.poll_s = s.number("poll_s", 5.0, 0.05, 3600)
        self.jitter = s.number("jitter", 0.1, 0.0, 0.5)
        self.probe_timeout_s = s.number("probe_timeout_s", 10.0, 0.1, 600)
        bands = s.get("deadbands", {})
        if not isinstance(bands, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in bands.values()
        ):
            raise s._fail("deadbands", "a table of field = non-negative number", bands)
        self.deadbands = {str(k): float(v) for k, v in bands.items()}
        s.check_unknown()

    def _queue(self, s: _Section) -> None:
        self.queue_max_messages = s.integer("max_messages", 100_000, 10, 10_000_000)
        self.batch_threshold = s.integer("batch_threshold", 50, 1, 1_000_000)
        self.batch_max_items = s.integer("batch_max_items", 100, 1, payloads.MAX_BATCH_ITEMS)
        self.batch_max_bytes = s.integer("batch_max_bytes", 204_800, 8192, payloads.MAX_BATCH_BYTES)
        self.inflight = s.integer("inflight", 10, 1, 1000)
        s.check_unknown()

    def _clock(self, s: _Section) -> None:
        self.min_epoch_s = s.integer("min_epoch_s", 1_735_689_600, 0, 2**40)
        check = s.string("sync_check", "adjtimex")
        if check not in ("adjtimex", "timedatectl", "none"):
            raise s._fail("sync_check", "one of adjtimex, timedatectl, none", check)
        self.sync_check: str = check
        # Simulation only: shift the wall clock (HIL rig's "device clock a day wrong").
        self.clock_offset_s = s.number("offset_s", 0.0, -10 * 365 * 86400, 10 * 365 * 86400)
        s.check_unknown()

    def _commands(self, s: _Section) -> None:
        self.player = s.command("player", ["aplay", "-q", "{wav}"])
        self.set_volume = s.command("set_volume", ["amixer", "-q", "sset", "Master", "{level}%"])
        self.reboot = s.command("reboot", ["systemctl", "reboot"])
        self.allow_reboot = s.boolean("allow_reboot", False)
        self.command_timeout_s = s.number("timeout_s", 90.0, 1, 3600)
        s.check_unknown()


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_host(host: str) -> str:
    """Return ``host`` if it is a host name or an IP address, else raise ``ConfigError``.

    A URL (``mqtt://broker:1883``) or a ``host:port`` was accepted before and then printed
    as ``mqtt://broker:1883:8883``; the message says where the port goes instead.
    """
    if "://" in host:
        raise ConfigError(
            f"[mqtt] host must be a host name or IP address, not a URL: got {host!r} "
            "(write the name alone and the port in [mqtt] port)"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    if ":" in host:
        raise ConfigError(f"[mqtt] host must not carry a port: got {host!r} (the port goes in [mqtt] port)")
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
        raise ConfigError(
            f"[mqtt] host must be a host name (letters, digits, '-', dots) or an IP address, got {host!r}"
        )
    return host


def mqtt_password(config: AgentConfig) -> str | None:
    """The MQTT password, read from ``password_file`` at connect time (it may be rotated).

    Raises:
        ConfigError: the password file cannot be read.
    """
    if config.mqtt_password_file is None:
        return config.mqtt_password
    try:
        return Path(config.mqtt_password_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"[mqtt] password_file cannot be read: {exc}") from None


def load(path: str | Path) -> AgentConfig:
    """Read and validate a TOML config file.

    Raises:
        ConfigError: the file cannot be read or parsed, or a value is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc
        raise ConfigError(f"cannot read config {path}: {reason} (examples: agent/examples/*.toml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    return AgentConfig(raw, str(path))
