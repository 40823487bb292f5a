"""The real backend as a child process, its generated config and registry, and service outages.

* :func:`write_registry`: ``registry.yaml`` for the simulated fleet;
* :class:`BackendProcess`: ``tincoso backend --config backend.toml`` with ``crash()``
  (SIGKILL, nothing flushed), ``stop()`` (SIGTERM) and ``start()``;
* :func:`broker_restart`, :func:`influx_outage`: outages of the local services
  (``backend.localservices``), as a context manager or a timed call.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Self

import yaml

from backend.localservices import LocalInflux, LocalMosquitto
from backend.registry import LOCAL_TZ
from hil_tests.faults._process import ChildProcess
from hil_tests.faults._toml import dumps

# Stable ASCII ids and the names people read, from the Võ Nhai plan.
COMMUNE_NAMES = {
    "dinh-ca": "Đình Cả",
    "trang-xa": "Tràng Xá",
    "la-hien": "La Hiên",
    "lau-thuong": "Lâu Thượng",
    "phu-thuong": "Phú Thượng",
    "binh-long": "Bình Long",
    "cuc-duong": "Cúc Đường",
    "dan-tien": "Dân Tiến",
    "lien-minh": "Liên Minh",
    "nghinh-tuong": "Nghinh Tường",
    "phuong-giao": "Phương Giao",
    "sang-moc": "Sảng Mộc",
    "than-sa": "Thần Sa",
    "thuong-nung": "Thượng Nung",
    "vu-chan": "Vũ Chấn",
}
DEFAULT_SCHEDULE = (("Bản tin sáng", "05:30", "06:30"), ("Bản tin chiều", "17:00", "18:00"))


class FleetDevice(NamedTuple):
    """One device of the simulated fleet, as the registry lists it."""

    id: str
    kind: str
    commune: str
    hamlet: str


def bulletin_window_now(minutes: int = 30, name: str = "Bản tin thử nghiệm") -> tuple[str, str, str]:
    """A schedule entry that runs from a minute ago for ``minutes`` (local time, UTC+7)."""
    start = datetime.now(LOCAL_TZ) - timedelta(minutes=1)
    end = start + timedelta(minutes=minutes)
    return (name, start.strftime("%H:%M"), end.strftime("%H:%M"))


def write_registry(
    path: str | os.PathLike[str],
    devices: Iterable[FleetDevice],
    *,
    district: str = "Võ Nhai",
    schedule: Sequence[tuple[str, str, str]] = DEFAULT_SCHEDULE,
    board_hours: Sequence[tuple[str, str]] = (("00:00", "23:59"),),
    technicians: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    district_contacts: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write ``registry.yaml`` for ``devices``; every commune they name is listed once.

    Args:
        path: the file to write.
        devices: the fleet.
        district: district name.
        schedule: ``(name, "HH:MM", "HH:MM")`` bulletins of every commune (local time).
        board_hours: ``("HH:MM", "HH:MM")`` windows boards must be on.
        technicians: commune id -> technician entries (default: one e-mail contact each).
        district_contacts: entries told about the district as a whole (server health).
    """
    fleet = list(devices)
    communes = []
    for commune in dict.fromkeys(d.commune for d in fleet):
        people = (technicians or {}).get(commune) or [
            {
                "name": f"Kỹ thuật viên {COMMUNE_NAMES.get(commune, commune)}",
                "email": f"ktv.{commune}@example.invalid",
            }
        ]
        communes.append(
            {
                "id": commune,
                "name": COMMUNE_NAMES.get(commune, commune),
                "type": "town" if commune == "dinh-ca" else "commune",
                "radio_system": "ip",
                "schedule": [{"name": n, "start": s, "end": e} for n, s, e in schedule],
                "board_hours": [{"start": s, "end": e} for s, e in board_hours],
                "technicians": [dict(t) for t in people],
            }
        )
    document: dict[str, Any] = {
        "district": district,
        **({"district_contacts": [dict(c) for c in district_contacts]} if district_contacts else {}),
        "communes": communes,
        "devices": [{"id": d.id, "kind": d.kind, "commune": d.commune, "hamlet": d.hamlet} for d in fleet],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


def backend_command() -> list[str]:
    """The ``tincoso`` script beside this Python, or ``python -m backend.cli``."""
    script = Path(sys.executable).with_name("tincoso")
    return [str(script)] if script.exists() else [sys.executable, "-m", "backend.cli"]


class BackendProcess:
    """``tincoso backend`` for the rig, with its config and registry generated.

    Args:
        workdir: holds ``backend.toml``, ``registry.yaml``, ``backend.log``, spool and state.
        mqtt_port: the broker's port.
        influx_url: InfluxDB base URL.
        database: InfluxDB database.
        devices: the fleet for the registry (or pass ``registry_path``).
        registry_path: an existing registry file instead of a generated one.
        role: ``all``, ``ingest`` or ``monitor``.
        name: distinguishes several backends in one workdir (client ids, spool, log).
        sections: sections merged over the generated ones (``ingest``, ``monitor``, ``alerts``...).
        schedule: the communes' bulletins for a generated registry.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        mqtt_port: int,
        influx_url: str,
        database: str = "tincoso",
        devices: Iterable[FleetDevice] = (),
        registry_path: str | os.PathLike[str] | None = None,
        role: str = "all",
        name: str = "backend",
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        schedule: Sequence[tuple[str, str, str]] = DEFAULT_SCHEDULE,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mqtt_port = mqtt_port
        self.influx_url = influx_url
        self.database = database
        self.role = role
        self.name = name
        self.devices = list(devices)
        self.schedule = schedule
        self.registry_path = Path(registry_path) if registry_path else self.workdir / "registry.yaml"
        self._own_registry = registry_path is None
        self.config_path = self.workdir / (f"{name}.toml")
        self.sections: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (sections or {}).items()}
        self.process = ChildProcess(name, self.workdir / (f"{name}.log"), self.workdir)

    def config(self) -> dict[str, Any]:
        """The ``backend.toml`` content as a dict (short intervals for tests)."""
        config: dict[str, Any] = {
            "mqtt": {
                "url": f"mqtt://127.0.0.1:{self.mqtt_port}",
                "client_id": f"hil-{self.name}-ingest",
                "keepalive_s": 5,
                "reconnect_max_s": 1.0,
            },
            "influx": {"url": self.influx_url, "database": self.database, "timeout_s": 5.0},
            "ingest": {"batch_ms": 50, "stats_interval_s": 2.0, "process_name": self.name},
            "spool": {"dir": str(self.workdir / (f"{self.name}-spool"))},
            "registry": {"path": str(self.registry_path)},
            "monitor": {
                "client_id": f"hil-{self.name}-monitor",
                "state_dir": str(self.workdir / (f"{self.name}-state")),
                "tick_s": 0.5,
                "gap_grace_s": 5.0,
                "stats_interval_s": 2.0,
            },
            "alerts": {"backoff_s": 0.5, "backoff_max_s": 2.0},
        }
        for section, values in self.sections.items():
            config.setdefault(section, {}).update(values)
        return config

    def write_config(self) -> Path:
        """Write the config (and the registry, when generated); return the config path."""
        if self._own_registry:
            write_registry(self.registry_path, self.devices, schedule=self.schedule)
        self.config_path.write_text(dumps(self.config()), encoding="utf-8")
        return self.config_path

    @property
    def running(self) -> bool:
        """The backend process is alive."""
        return self.process.running

    def start(self, *, wait: bool = True, timeout: float = 20.0) -> Self:
        """Launch the backend; with ``wait``, return once its MQTT sessions are up."""
        if self.running:
            return self
        command = [*backend_command(), "backend", "--config", str(self.write_config()), "--role", self.role]
        self.process.launch(command, self.role)
        if wait:
            if self.role in ("all", "ingest"):
                self.process.wait_for_log(r"event=mqtt_connected", timeout)
            if self.role in ("all", "monitor"):
                self.process.wait_for_log(r"monitor subscribed", timeout)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (flush, acknowledge, close the sessions) and wait."""
        return self.process.terminate(timeout)

    def crash(self) -> None:
        """SIGKILL: whatever was not yet durable is up to the broker's redelivery."""
        self.process.kill()

    def restart(self, *, wait: bool = True) -> Self:
        """Stop cleanly (if running) and start again."""
        self.stop()
        return self.start(wait=wait)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the backend's log."""
        return self.process.log_tail(lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Block until the log since the last start matches ``pattern``."""
        return self.process.wait_for_log(pattern, timeout)


@contextlib.contextmanager
def broker_down(broker: LocalMosquitto, *, crash: bool = False) -> Iterator[None]:
    """The broker is away inside the block (SIGTERM, or SIGKILL with ``crash``), then back
    on the same port with its persisted sessions."""
    if crash:
        broker.kill()
    else:
        broker.stop()
    try:
        yield
    finally:
        broker.start()


def broker_restart(broker: LocalMosquitto, *, down_s: float = 0.0, crash: bool = False) -> None:
    """Take the broker away for ``down_s`` seconds and bring it back."""
    with broker_down(broker, crash=crash):
        time.sleep(down_s)


@contextlib.contextmanager
def influx_down(database: LocalInflux, *, crash: bool = False) -> Iterator[None]:
    """InfluxDB is away inside the block (ingest must spool), then back with its data."""
    if crash:
        database.kill()
    else:
        database.stop()
    try:
        yield
    finally:
        database.start()


def influx_outage(database: LocalInflux, *, down_s: float, crash: bool = False) -> None:
    """Take InfluxDB away for ``down_s`` seconds and bring it back."""
    with influx_down(database, crash=crash):
        time.sleep(down_s)
