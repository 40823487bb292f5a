"""Per-device broker credentials kept under one directory (default ``var/secrets``).

Layout::

    manifest.json          devices, status (active/revoked), dates, certificate serials
    mosquitto.passwd       devices' password file ($7$ PBKDF2-SHA512 hashes)
    backend.passwd         the backend identity's password file (backend listener only)
    mosquitto.acl          ACL confining each device to its own subtree
    ca/                    private CA (ca.crt, ca.key, crl.pem)
    broker/                broker TLS certificate and key
    backend/credentials.toml   the backend's own MQTT identity (0600)
    devices/<id>/agent-mqtt.toml   the [mqtt] section to paste into the agent's config (0600)
    devices/<id>/client.crt, client.key   optional TLS client certificate

Passwords appear in exactly two places: the 0600 snippet for the device (it must present
the password) and nowhere else; the broker only ever sees hashes. Nothing here logs a secret.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.provision.acl import render_acl
from backend.provision.passwd import PasswordFile
from backend.provision.pki import CertificateAuthority
from protocols.topics import check_device_id

__all__ = ["BACKEND_USER", "DeviceCredentials", "ProvisionError", "ProvisionStore"]

BACKEND_USER = "tincoso-backend"
MANIFEST_VERSION = 1


class ProvisionError(Exception):
    """A provisioning request that cannot be carried out (unknown device, bad id)."""


@dataclass(frozen=True)
class DeviceCredentials:
    """What a device needs to connect: where its snippet and certificate files are."""

    device_id: str
    username: str
    snippet: Path
    client_cert: Path | None
    client_key: Path | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


class ProvisionStore:
    """Create, rotate and revoke device credentials under ``directory``.

    Args:
        directory: where the files above live.
        broker_host: host name devices use to reach the broker (written into snippets).
        broker_port: the broker's device listener port (written into snippets).
    """

    def __init__(self, directory: Path, *, broker_host: str = "127.0.0.1", broker_port: int = 8883) -> None:
        self.directory = directory
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.manifest_path = directory / "manifest.json"
        self.passwd_path = directory / "mosquitto.passwd"
        self.backend_passwd_path = directory / "backend.passwd"
        self.acl_path = directory / "mosquitto.acl"
        self.manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "devices": {}}
        if self.manifest_path.exists():
            self.manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)

    # -- identities ---------------------------------------------------------------------

    @property
    def ca(self) -> CertificateAuthority:
        """The private CA (created on first use)."""
        return CertificateAuthority(self.directory / "ca")

    def device_dir(self, device_id: str) -> Path:
        """Where one device's snippet and certificate live."""
        return self.directory / "devices" / device_id

    def devices(self) -> dict[str, dict[str, Any]]:
        """Manifest entries by device id."""
        devices: dict[str, dict[str, Any]] = self.manifest["devices"]
        return devices

    def active_devices(self) -> list[str]:
        """Ids of devices whose credentials are valid."""
        return sorted(d for d, e in self.devices().items() if e["status"] == "active")

    def ensure_backend(self) -> tuple[str, str]:
        """The backend's MQTT user and password, created once."""
        path = self.directory / "backend" / "credentials.toml"
        if path.exists():
            values = dict(
                line.split(" = ", 1)
                for line in path.read_text(encoding="utf-8").splitlines()
                if " = " in line
            )
            return json.loads(values["username"]), json.loads(values["password"])
        password = secrets.token_urlsafe(24)
        _write_private(
            path,
            "# The backend's MQTT identity; keep this file private.\n"
            f"username = {_toml_str(BACKEND_USER)}\npassword = {_toml_str(password)}\n",
        )
        self._sync(extra_passwords={BACKEND_USER: password})
        return BACKEND_USER, password

    def ensure_server_cert(self, hosts: list[str]) -> tuple[Path, Path]:
        """The broker's TLS certificate and key for ``hosts`` (issued once)."""
        cert, key = self.directory / "broker" / "server.crt", self.directory / "broker" / "server.key"
        if not cert.exists():
            self.ca.issue(hosts[0], cert, key, server_hosts=hosts)
        return cert, key

    # -- device lifecycle ---------------------------------------------------------------

    def provision(self, device_id: str, *, client_cert: bool = False) -> DeviceCredentials:
        """Create credentials for a new device (or return existing ones unchanged)."""
        try:
            check_device_id(device_id)
        except ValueError as exc:
            raise ProvisionError(str(exc)) from None
        entry = self.devices().get(device_id)
        if entry is not None and entry["status"] == "active":
            return self._credentials(device_id)
        return self._issue(device_id, client_cert=client_cert, created=True)

    def rotate(self, device_id: str) -> DeviceCredentials:
        """Replace a device's password (and certificate); the old ones stop working."""
        entry = self._entry(device_id)
        self._revoke_cert(entry)
        return self._issue(device_id, client_cert=entry.get("cert_serial") is not None, created=False)

    def revoke(self, device_id: str) -> None:
        """Revoke a device: it can no longer connect."""
        entry = self._entry(device_id)
        self._revoke_cert(entry)
        entry.update(status="revoked", revoked=_now(), cert_serial=None)
        for name in ("agent-mqtt.toml", "client.crt", "client.key"):
            (self.device_dir(device_id) / name).unlink(missing_ok=True)
        self._save()
        self._sync()

    # -- internals ----------------------------------------------------------------------

    def _entry(self, device_id: str) -> dict[str, Any]:
        entry = self.devices().get(device_id)
        if entry is None:
            raise ProvisionError(
                f"device {device_id!r} is not provisioned (run `tincoso provision {device_id}`)"
            )
        return entry

    def _revoke_cert(self, entry: dict[str, Any]) -> None:
        serial = entry.get("cert_serial")
        if serial is not None:
            revoked: list[int] = self.manifest.setdefault("revoked_serials", [])
            revoked.append(serial)
            self.ca.write_crl(revoked)

    def _issue(self, device_id: str, *, client_cert: bool, created: bool) -> DeviceCredentials:
        password = secrets.token_urlsafe(24)
        entry = self.devices().setdefault(device_id, {"created": _now()})
        entry.update(status="active", rotated=None if created else _now(), cert_serial=None)
        entry.pop("revoked", None)
        folder = self.device_dir(device_id)
        cert = key = None
        if client_cert:
            cert, key = folder / "client.crt", folder / "client.key"
            entry["cert_serial"] = self.ca.issue(device_id, cert, key)
        lines = [
            f"# MQTT identity of {device_id}, made by `tincoso provision`. Keep private.",
            "[mqtt]",
            f"host = {_toml_str(self.broker_host)}",
            f"port = {self.broker_port}",
            f"username = {_toml_str(device_id)}",
            f"password = {_toml_str(password)}",
            "tls = true",
            f"cafile = {_toml_str(str(self.ca.cert_path.resolve()))}",
        ]
        if cert and key:
            lines += [
                f"certfile = {_toml_str(str(cert.resolve()))}",
                f"keyfile = {_toml_str(str(key.resolve()))}",
            ]
        _write_private(folder / "agent-mqtt.toml", "\n".join(lines) + "\n")
        self._save()
        self._sync(extra_passwords={device_id: password})
        return self._credentials(device_id)

    def _credentials(self, device_id: str) -> DeviceCredentials:
        folder = self.device_dir(device_id)
        cert = folder / "client.crt"
        return DeviceCredentials(
            device_id=device_id,
            username=device_id,
            snippet=folder / "agent-mqtt.toml",
            client_cert=cert if cert.exists() else None,
            client_key=folder / "client.key" if cert.exists() else None,
        )

    def _save(self) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.manifest_path)

    def _sync(self, extra_passwords: dict[str, str] | None = None) -> None:
        """Rewrite the password files and ACL from the manifest."""
        passwd = PasswordFile(self.passwd_path)
        backend = PasswordFile(self.backend_passwd_path)
        active = set(self.active_devices())
        for user in list(passwd.entries):
            if user not in active:
                passwd.remove(user)
        for user, password in (extra_passwords or {}).items():
            (backend if user == BACKEND_USER else passwd).set(user, password)
        passwd.save()
        backend.save()
        backend_users = [BACKEND_USER] if BACKEND_USER in backend.entries else []
        self.acl_path.write_text(render_acl(sorted(active), backend_users), encoding="utf-8")
        os.chmod(self.acl_path, 0o600)


def reload_broker(pid: int) -> None:
    """Ask a running Mosquitto to re-read its password file, ACL and CRL (SIGHUP)."""
    os.kill(pid, signal.SIGHUP)
