"""Mosquitto and InfluxDB together, with their state kept in ``DIR/services.json``.

The state file lets one process start the services (``tincoso services up``) and a later
one report on them or stop them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.localservices._process import LocalService, ServiceError
from backend.localservices.influxdb import LocalInflux
from backend.localservices.mosquitto import LocalMosquitto

STATE_FILE_NAME = "services.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class ServiceStatus:
    """What is known about one service right now.

    Attributes:
        name: ``mosquitto`` or ``influxdb``.
        pid: Process id, or None when it is not running.
        port: Its port on 127.0.0.1.
        url: Where clients reach it.
        running: The process is alive.
        answering: It answered its protocol's probe just now.
    """

    name: str
    pid: int | None
    port: int
    url: str
    running: bool
    answering: bool


class LocalServices:
    """The broker and the database of one directory, started and stopped together.

    Args:
        root: Directory holding ``mosquitto/``, ``influxdb/`` and ``services.json``.
        mqtt_port: Mosquitto port; None picks a free one.
        influx_port: InfluxDB HTTP port; None picks a free one.
        influx_rpc_port: InfluxDB RPC port; None picks a free one.
        secure: Run Mosquitto the secure way (backend/provision/broker.py): no anonymous
            access, TLS, per-device passwords and ACLs, credentials under ``ROOT/secrets``;
            ``mqtt_port`` is then the backend listener and ``device_port`` the devices' one.
        device_port: The secure mode's device listener port; None picks a free one.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        mqtt_port: int | None = None,
        influx_port: int | None = None,
        influx_rpc_port: int | None = None,
        secure: bool = False,
        device_port: int | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.secure = secure
        self.device_port: int | None = None
        if secure:
            # Imported here: provisioning builds on this package.
            from backend.provision.broker import secure_mosquitto
            from backend.provision.store import ProvisionStore

            self.secrets: ProvisionStore | None = ProvisionStore(self.root / "secrets")
            self.mosquitto, self.device_port = secure_mosquitto(
                self.root, self.secrets, backend_port=mqtt_port, device_port=device_port
            )
        else:
            self.secrets = None
            self.mosquitto = LocalMosquitto(self.root, port=mqtt_port)
        self.influxdb = LocalInflux(self.root, port=influx_port, rpc_port=influx_rpc_port)

    @property
    def services(self) -> tuple[LocalService, ...]:
        """Both services, in start order."""
        return (self.mosquitto, self.influxdb)

    @property
    def state_file(self) -> Path:
        """``ROOT/services.json``."""
        return self.root / STATE_FILE_NAME

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        *,
        mqtt_port: int | None = None,
        influx_port: int | None = None,
        secure: bool | None = None,
    ) -> LocalServices:
        """The services of ``root``, reusing recorded ports and adopting live processes.

        Args:
            root: Directory as for the constructor.
            mqtt_port: Port wanted for Mosquitto instead of the recorded one.
            influx_port: Port wanted for InfluxDB instead of the recorded one.
            secure: Secure mode wanted; None keeps the recorded mode.

        Returns:
            The services, some possibly already running.

        Raises:
            ServiceError: The state file is unreadable, or a service already runs on
                another port than the one asked for.
        """
        recorded = read_state(root) or {}
        mosquitto, influxdb = recorded.get("mosquitto", {}), recorded.get("influxdb", {})
        local = cls(
            root,
            mqtt_port=mqtt_port or mosquitto.get("port"),
            influx_port=influx_port or influxdb.get("port"),
            influx_rpc_port=influxdb.get("rpc_port"),
            secure=bool(mosquitto.get("secure", False)) if secure is None else secure,
            device_port=mosquitto.get("device_port"),
        )
        for service in local.services:
            entry = recorded.get(service.name, {})
            if entry.get("pid") is None:
                continue
            service.attach(entry["pid"], entry.get("create_time"))
            if service.running and service.port != entry["port"]:
                raise ServiceError(
                    f"{service.name} already runs on port {entry['port']} (pid {service.pid}); "
                    f"stop it before asking for port {service.port}"
                )
        return local

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> LocalServices | None:
        """Like `open`, but None when ``root`` has no state file.

        Args:
            root: Directory as for the constructor.

        Returns:
            The recorded services, or None.
        """
        if not (Path(root) / STATE_FILE_NAME).exists():
            return None
        return cls.open(root)

    def start(self, *, detach: bool = False) -> list[LocalService]:
        """Start every service that is not running, then record the state.

        If one fails, those started by this call are stopped again.

        Args:
            detach: Let the processes outlive this one.

        Returns:
            The services this call started.

        Raises:
            ServiceError: A service could not start.
        """
        started: list[LocalService] = []
        try:
            for service in self.services:
                if not service.running:
                    service.start(detach=detach)
                    started.append(service)
        except ServiceError:
            for service in reversed(started):
                service.stop()
            raise
        finally:
            self.save_state()
        return started

    def stop(self) -> list[tuple[str, int]]:
        """Stop every running service, then record the state.

        Returns:
            ``(name, pid)`` of each service stopped.
        """
        stopped = []
        try:
            for service in reversed(self.services):
                pid = service.pid
                if pid is not None:
                    service.stop()
                    stopped.append((service.name, pid))
        finally:
            self.save_state()
        return stopped

    def status(self) -> list[ServiceStatus]:
        """Probe each service now."""
        return [
            ServiceStatus(
                name=service.name,
                pid=service.pid,
                port=service.port,
                url=service.url,
                running=service.running,
                answering=service.running and service.answers(timeout=1.0),
            )
            for service in self.services
        ]

    def save_state(self) -> None:
        """Write ``services.json`` atomically (pids are null for stopped services)."""
        state = {
            "version": STATE_VERSION,
            "root": str(self.root),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "services": {service.name: service.state() for service in self.services},
        }
        if self.secure:
            entries: dict[str, dict[str, Any]] = state["services"]  # type: ignore[assignment]
            entries["mosquitto"].update(secure=True, device_port=self.device_port)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".services.", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, self.state_file)


def read_state(root: str | os.PathLike[str]) -> dict[str, dict[str, Any]] | None:
    """The per-service entries of ``ROOT/services.json``.

    Args:
        root: Directory holding the state file.

    Returns:
        Service name to recorded state, or None when there is no state file.

    Raises:
        ServiceError: The file exists but is not a state file this version understands.
    """
    path = Path(root) / STATE_FILE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ServiceError(f"cannot read {path}: {error}") from error
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ServiceError(f"{path} is not a tincoso services file (version {STATE_VERSION})")
    services = state.get("services")
    if not isinstance(services, dict):
        raise ServiceError(f"{path} has no 'services' object")
    for name, entry in services.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("port"), int):
            raise ServiceError(f"{path}: services.{name}.port must be an integer")
        if not isinstance(entry.get("pid"), int | None):
            raise ServiceError(f"{path}: services.{name}.pid must be an integer or null")
    return services
