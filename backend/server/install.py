"""``tincoso server install``: secrets, certificates, directories and files, idempotently.

Run again after a change to ``server.toml``: files whose text is unchanged are left alone
(their times too), changed ones are replaced atomically, data directories are never
touched beyond being created. A dry run creates nothing: it reads what exists and says
what would be created or changed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from backend.provision.store import ProvisionStore
from backend.provision.subscribe_guard import build_subscribe_guard
from backend.server.render import INFLUX_USERS, PlannedFile, ServerSecrets, device_tls_paths, plan
from backend.server.settings import ServerConfig

__all__ = [
    "CERT_RENEW_DAYS",
    "InstallResult",
    "certificate_hosts",
    "data_dirs",
    "give_to_service_user",
    "install",
    "load_secrets",
]

CERT_RENEW_DAYS = 30
PLACEHOLDER = "<generated at install>"


@dataclass(frozen=True)
class InstallResult:
    """What install did (or would do): each file with ``created``, ``changed`` or ``unchanged``."""

    files: list[tuple[PlannedFile, str]]
    notes: list[str]

    @property
    def changed(self) -> list[Path]:
        """Files created or changed."""
        return [f.path for f, status in self.files if status != "unchanged"]


def data_dirs(config: ServerConfig) -> list[Path]:
    """Directories the services write, owned by the service user."""
    data = config.data
    return [
        data / "mosquitto",
        data / "influxdb" / "meta",
        data / "influxdb" / "data",
        data / "influxdb" / "wal",
        data / "spool" / "ingest",
        data / "monitor",
        config.paths.path("log"),
        config.paths.path("backups"),
    ]


def _influx_secrets_path(config: ServerConfig) -> Path:
    return config.secrets_dir / "influx-users.json"


def load_secrets(config: ServerConfig, *, create: bool) -> ServerSecrets:
    """The backend's MQTT password and the InfluxDB users' passwords.

    With ``create`` missing ones are generated and stored (0600); without, missing ones
    are placeholders (a dry run).
    """
    path = _influx_secrets_path(config)
    influx: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    backend_creds = config.secrets_dir / "backend" / "credentials.toml"
    if not create:
        backend = PLACEHOLDER
        if backend_creds.exists():
            backend = ProvisionStore(config.secrets_dir).ensure_backend()[1]
        return ServerSecrets(backend, {role: influx.get(role, PLACEHOLDER) for role in INFLUX_USERS})
    missing = [role for role in INFLUX_USERS if role not in influx]
    for role in missing:
        influx[role] = secrets.token_urlsafe(24)
    if missing:
        _write(path, json.dumps(influx, indent=2, sort_keys=True) + "\n", 0o600)
    backend = ProvisionStore(config.secrets_dir).ensure_backend()[1]
    return ServerSecrets(backend, influx)


def certificate_hosts(cert_path: Path) -> tuple[list[str], dt.datetime]:
    """The DNS names and IP addresses a certificate is valid for, and its expiry (UTC)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], cert.not_valid_after_utc
    hosts = [str(name) for name in sans.get_values_for_type(x509.DNSName)]
    hosts += [str(address) for address in sans.get_values_for_type(x509.IPAddress)]
    return hosts, cert.not_valid_after_utc


def _normal(hosts: list[str]) -> set[str]:
    out = set()
    for host in hosts:
        try:
            out.add(str(ipaddress.ip_address(host)))
        except ValueError:
            out.add(host.lower())
    return out


def _device_cert_status(config: ServerConfig) -> str:
    """``ok``, or why the district CA must issue the device listener's certificate again."""
    cert, _key = device_tls_paths(config)
    if not cert.exists():
        return "missing"
    hosts, not_after = certificate_hosts(cert)
    if _normal(hosts) != _normal(config.cert_hosts):
        return f"names changed ({', '.join(sorted(hosts))} -> {', '.join(config.cert_hosts)})"
    if not_after - dt.datetime.now(dt.UTC) < dt.timedelta(days=CERT_RENEW_DAYS):
        return f"expires {not_after:%Y-%m-%d}"
    return "ok"


def _prepare_pki(config: ServerConfig) -> list[str]:
    """CA, the loopback certificate and the device listener's; returns notes."""
    store = ProvisionStore(config.secrets_dir)
    store.ensure_server_cert(["127.0.0.1", "localhost"])
    if config.cert:
        return [f"device listener certificate: {config.cert} (operator-supplied)"]
    status = _device_cert_status(config)
    cert, key = device_tls_paths(config)
    if status == "ok":
        return [f"device listener certificate: {cert} (valid for {', '.join(config.cert_hosts)})"]
    store.ca.issue(config.cert_hosts[0], cert, key, server_hosts=config.cert_hosts)
    return [f"device listener certificate issued ({status}): {cert} for {', '.join(config.cert_hosts)}"]


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _status(planned: PlannedFile) -> str:
    try:
        current = planned.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "created"
    except (OSError, UnicodeError):
        return "changed"
    return "unchanged" if current == planned.text else "changed"


def _owner(user: str) -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _chown_tree(root: Path, owner: tuple[int, int]) -> None:
    for directory, _dirs, names in os.walk(root):
        os.chown(directory, *owner)
        for name in names:
            os.chown(os.path.join(directory, name), *owner)


def give_to_service_user(config: ServerConfig) -> bool:
    """Hand the provisioning store to the service user (the broker reads it); False if no such user."""
    owner = _owner(config.user)
    if owner is not None:
        _chown_tree(config.secrets_dir, owner)
    return owner is not None


def install(config: ServerConfig, *, dry_run: bool) -> InstallResult:
    """Write everything ``config`` describes (or, with ``dry_run``, only say what would change).

    Args:
        config: The district server's settings (read from ``server.toml``).
        dry_run: Create nothing; report each file as created, changed or unchanged.

    Returns:
        Each planned file with its status, and notes for the operator.
    """
    if config.source is None:
        raise ValueError("install needs a config read from a file (load_server_config)")
    notes: list[str] = []
    if not dry_run:
        notes += _prepare_pki(config)
    elif not config.cert:
        status = _device_cert_status(config)
        if status != "ok":
            notes.append(
                f"would issue the device listener certificate ({status}) for {', '.join(config.cert_hosts)}"
            )
    secrets_ = load_secrets(config, create=not dry_run)
    files = plan(
        config,
        secrets_,
        server_toml=config.source.read_text(encoding="utf-8"),
        registry_yaml=Path(config.registry).read_text(encoding="utf-8"),
    )
    if config.source == config.config_path:
        files = [f for f in files if f.path != config.config_path]
    result = [(f, _status(f)) for f in files]
    if dry_run:
        return InstallResult(result, notes)
    for planned, status in result:
        if status != "unchanged":
            _write(planned.path, planned.text, planned.mode)
    # The device listener's subscribe guard, compiled where mosquitto.conf names it.
    build_subscribe_guard(config.secrets_dir / "broker")
    owner = _owner(config.user)
    for directory in data_dirs(config):
        directory.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(directory, *owner)
    if owner is not None:
        _chown_tree(config.secrets_dir, owner)
        _chown_tree(config.data, owner)
        for role in ("ingest", "monitor"):
            os.chown(config.etc / f"backend-{role}.toml", *owner)
    else:
        notes.append(
            f"user {config.user!r} does not exist: create it (useradd --system {config.user}) and run again"
        )
    return InstallResult(result, notes)
