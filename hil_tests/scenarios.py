"""What every ``hil`` scenario shares: the district server, the technicians' inboxes, the
evidence switch, and the vendor's real-hardware config.

A scenario builds a :class:`District`: a rig of real agent processes (simulated hardware
behind a :class:`~hil_tests.faults.proxy.TcpProxy` 4G link), the real ``tincoso backend``
process on a private broker and its own InfluxDB database, and technicians reached by real
e-mail (aiosmtpd) and a real JSON webhook (:class:`~tests.alert_receivers.HttpReceiver`).
It then asserts what a technician or the district would see: a notice in both channels,
an ``alert`` point, readings at the right time, a clean sequence audit.

Evidence: each scenario runs once more with its detection switched off (a rule disabled, a
check loosened, a queue made tiny) and must then raise :class:`DetectionMissed`, so a
scenario that cannot notice its fault fails the suite (``xfail_strict``).

Real hardware: ``TINCOSO_HIL_DEVICES=path/to/devices.toml`` names the broker and, per
device id, probe keys that replace the simulator URLs (see :func:`load_hil_devices` and
hil_tests/README.md).
"""

from __future__ import annotations

import contextlib
import os
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from backend.alerts.messages import FAULT_TEXT
from backend.localservices import LocalMosquitto
from backend.registry import LOCAL_TZ
from hil_tests.audit import MqttCapture
from hil_tests.faults.backend import DEFAULT_SCHEDULE, BackendProcess, write_registry
from hil_tests.rig import Rig, RigDevice
from protocols import topics
from tests.alert_receivers import HttpReceiver, SmtpInbox
from tests.services_fixtures import InfluxDatabase

__all__ = [
    "DEVICES_ENV",
    "AlertChannels",
    "DetectionMissed",
    "DevicesConfigError",
    "District",
    "HilDevices",
    "at_least",
    "detection_switch",
    "eventually",
    "load_hil_devices",
    "local_window",
    "open_district",
]

DEVICES_ENV = "TINCOSO_HIL_DEVICES"
PROBE_NAMES = ("system", "audio", "power_meter", "display", "modem")
# Every agent of a scenario: heartbeats each second, snapshots every two (scaled field rates).
FAST_REPORTING = {"heartbeat_s": 1.0, "snapshot_s": 2.0, "poll_s": 0.25}
_SUBJECT_EVENT = {"open": "SỰ CỐ", "recovery": "ĐÃ KHẮC PHỤC", "reminder": "NHẮC LẠI"}

T = TypeVar("T")


class DetectionMissed(AssertionError):
    """The observation that proves a fault was detected (alert, placement, audit) did not happen."""


def detection_switch(
    reason: str, *, on: Any = True, off: Any = False, raises: type[BaseException] = DetectionMissed
) -> list[Any]:
    """Two parameters: detection on (``on``), and off (``off``) as a strict xfail on ``raises``.

    Args:
        reason: what is switched off and why the test must then miss its fault.
        on: the parameter with the detection on.
        off: the parameter with it off (a setting, a threshold).
        raises: what the test raises when it misses.
    """
    return [pytest.param(on, id="detection-on"), switched_off(off, "detection-off", reason, raises=raises)]


def switched_off(value: Any, id: str, reason: str, *, raises: type[BaseException] = DetectionMissed) -> Any:
    """One parameter with a detection (or a safeguard) off: a strict xfail on ``raises``.

    For scenarios with more than one switch (``detection_switch`` makes the usual pair).
    """
    return pytest.param(value, id=id, marks=pytest.mark.xfail(raises=raises, strict=True, reason=reason))


def eventually(
    check: Callable[[], T],
    timeout: float,
    what: str,
    *,
    missed: type[AssertionError] = AssertionError,
    context: Callable[[], str] | None = None,
    interval: float = 0.2,
) -> T:
    """Poll ``check`` until it returns something truthy; return that.

    Raises:
        AssertionError: (or ``missed``) nothing truthy in ``timeout`` seconds; the message
            says ``what`` was awaited, plus ``context()`` (log tails) when given.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise missed(f"{what}: not seen within {timeout:g} s{extra}")
        time.sleep(interval)


def at_least(count: int, fetch: Callable[[], list[T]]) -> Callable[[], list[T]]:
    """A check for :func:`eventually`: what ``fetch`` returns, once it holds ``count`` items."""

    def check() -> list[T]:
        items = fetch()
        return items if len(items) >= count else []

    return check


# -- the vendor's real hardware -----------------------------------------------------------


class DevicesConfigError(ValueError):
    """``devices.toml`` is unreadable or wrong; the message names the file, table and key."""


@dataclass(frozen=True)
class HilDevices:
    """Real hardware for the scenarios, from ``devices.toml``.

    Attributes:
        broker: ``(host, port)`` of the broker agents and backend use, or None for a
            private local Mosquitto per scenario.
        probes: device id -> probe name -> keys replacing the simulator's (``url``,
            ``source``, ``baudrate``...).
        source: the file it came from.
    """

    broker: tuple[str, int] | None = None
    probes: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    source: str = ""

    def real_parts(self, device_id: str) -> set[str]:
        """The probes of ``device_id`` that talk to real hardware."""
        return set(self.probes.get(device_id, {}))


def load_hil_devices(path: str | os.PathLike[str] | None) -> HilDevices:
    """Read ``devices.toml`` (``None`` or an empty path: everything simulated).

    Raises:
        DevicesConfigError: the file is missing, not TOML, or a table or key is wrong.
    """
    if path is None or str(path) == "":
        return HilDevices()
    where = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DevicesConfigError(f"{where} does not exist ({DEVICES_ENV} names it)") from None
    except (OSError, UnicodeError) as exc:
        raise DevicesConfigError(f"cannot read {where}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DevicesConfigError(f"{where} is not valid TOML: {exc}") from None
    return parse_hil_devices(raw, where)


def parse_hil_devices(raw: Mapping[str, Any], where: str = "devices.toml") -> HilDevices:
    """Validate an already-parsed ``devices.toml`` (see :func:`load_hil_devices`)."""
    for key in raw:
        if key not in ("broker", "devices"):
            raise DevicesConfigError(f"{where}: [{key}] is not a known table (known: broker, devices)")
    return HilDevices(_broker(raw.get("broker"), where), _devices(raw.get("devices", {}), where), where)


def _broker(table: Any, where: str) -> tuple[str, int] | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise DevicesConfigError(f"{where}: [broker] must be a table")
    for key in table:
        if key not in ("host", "port"):
            raise DevicesConfigError(f"{where}: [broker] {key} is not a known key (known: host, port)")
    host, port = table.get("host"), table.get("port", 1883)
    if not isinstance(host, str) or not host:
        raise DevicesConfigError(f"{where}: [broker] host must be a non-empty string, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise DevicesConfigError(f"{where}: [broker] port must be an integer 1-65535, got {port!r}")
    return host, port


def _devices(table: Any, where: str) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(table, dict):
        raise DevicesConfigError(f"{where}: [devices] must be a table of [devices.<device id>.<probe>]")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for device_id, probes in table.items():
        try:
            topics.check_device_id(device_id)
        except ValueError as exc:
            raise DevicesConfigError(f"{where}: [devices.{device_id}]: {exc}") from None
        if not isinstance(probes, dict) or not probes:
            raise DevicesConfigError(
                f"{where}: [devices.{device_id}] must hold [devices.{device_id}.<probe>] tables"
            )
        out[device_id] = {}
        for probe, keys in probes.items():
            name = f"[devices.{device_id}.{probe}]"
            if probe not in PROBE_NAMES:
                raise DevicesConfigError(
                    f"{where}: {name}: {probe!r} is not a probe ({', '.join(PROBE_NAMES)})"
                )
            if not isinstance(keys, dict) or not keys:
                raise DevicesConfigError(f"{where}: {name} must be a table of probe keys (url = ...)")
            for key, value in keys.items():
                if isinstance(value, dict | list) or (isinstance(value, str) and not value):
                    raise DevicesConfigError(
                        f"{where}: {name} {key} must be a non-empty scalar, got {value!r}"
                    )
            out[device_id][probe] = dict(keys)
    return out


def local_window(start_in_min: float, minutes: float) -> tuple[str, str]:
    """``("HH:MM", "HH:MM")`` in Vietnam time (UTC+7), starting ``start_in_min`` minutes from
    now (negative: already running) and lasting ``minutes``: registry hours relative to now."""
    start = datetime.now(LOCAL_TZ) + timedelta(minutes=start_in_min)
    return start.strftime("%H:%M"), (start + timedelta(minutes=minutes)).strftime("%H:%M")


# -- the technicians' inboxes -------------------------------------------------------------


@dataclass
class Notices:
    """One alert notice as both channels delivered it."""

    emails: list[EmailMessage]
    webhooks: list[dict[str, Any]]
    first_at: float  # time.monotonic() of the first webhook delivery


class AlertChannels:
    """A real SMTP server and a real HTTP webhook receiver, one technician per commune on both."""

    def __init__(self) -> None:
        self.inbox = SmtpInbox()
        self.http = HttpReceiver()

    def start(self) -> AlertChannels:
        """Start both receivers."""
        self.inbox.start()
        self.http.start()
        return self

    def stop(self) -> None:
        """Stop both receivers."""
        self.http.stop()
        self.inbox.stop()

    def technicians(self, commune: str) -> list[dict[str, str]]:
        """The registry's technician entries of ``commune`` (e-mail and webhook)."""
        return [
            {
                "name": f"Kỹ thuật viên {commune}",
                "email": f"ktv.{commune}@example.invalid",
                "webhook": f"{self.http.url}/hook/{commune}",
            }
        ]

    def district_contact(self) -> dict[str, str]:
        """The district office's entry (``district_contacts``): e-mail and webhook."""
        return {
            "name": "Phòng Văn hóa và Thông tin huyện",
            "email": "vhtt.district@example.invalid",
            "webhook": f"{self.http.url}/hook/district",
        }

    def server_notices(self) -> list[dict[str, Any]]:
        """Backend-health webhook bodies the district contact received."""
        return [
            body
            for _, path, body, status in self._requests()
            if status == 200 and path.endswith("/hook/district") and body.get("fault") == "server_health"
        ]

    def device_notices(self) -> list[dict[str, Any]]:
        """Every webhook body about a device (any fault, any event)."""
        return [body for _, _, body, status in self._requests() if status == 200 and body.get("device")]

    def emails(self, device: str, fault: str, event: str) -> list[EmailMessage]:
        """E-mails about ``fault`` of ``device`` for ``event`` (``open``, ``recovery``)."""
        title = FAULT_TEXT[fault]["vi"][0]
        head = f"[tincoso] {_SUBJECT_EVENT[event]}: {title} -"
        return [
            m
            for m in self.inbox.messages
            if str(m["Subject"]).startswith(head) and f"({device})" in str(m["Subject"])
        ]

    def webhooks(self, device: str, fault: str, event: str) -> list[dict[str, Any]]:
        """Webhook bodies about ``fault`` of ``device`` for ``event``, in arrival order."""
        return [
            body
            for _, path, body, status in self._requests()
            if status == 200
            and body.get("device") == device
            and body.get("fault") == fault
            and body.get("event") == event
        ]

    def any_notice(self, device: str, fault: str) -> bool:
        """Anything at all about ``fault`` of ``device``, on either channel."""
        return bool(
            self.emails(device, fault, "open")
            or self.webhooks(device, fault, "open")
            or self.emails(device, fault, "recovery")
            or self.webhooks(device, fault, "recovery")
        )

    def wait(
        self, device: str, fault: str, event: str, timeout: float, *, context: Callable[[], str] | None = None
    ) -> Notices:
        """Block until both channels delivered the notice.

        Raises:
            DetectionMissed: neither channel got it (the fault went unnoticed).
            AssertionError: only one channel got it (a delivery problem, not a missed fault).
        """

        def report() -> str:
            return self.summary() + (f"\n{context()}" if context is not None else "")

        eventually(
            lambda: self.emails(device, fault, event) or self.webhooks(device, fault, event),
            timeout,
            f"{fault} {event} notice for {device}",
            missed=DetectionMissed,
            context=report,
        )
        eventually(
            lambda: self.emails(device, fault, event) and self.webhooks(device, fault, event),
            10.0,
            f"{fault} {event} notice for {device} on both e-mail and webhook",
            context=report,
        )
        first = min(
            at
            for at, _, body, status in self._requests()
            if status == 200
            and body.get("device") == device
            and body.get("fault") == fault
            and body.get("event") == event
        )
        return Notices(self.emails(device, fault, event), self.webhooks(device, fault, event), first)

    def summary(self) -> str:
        """What both channels received so far (for failure messages)."""
        mails = [str(m["Subject"]) for m in self.inbox.messages]
        hooks = [
            f"{b.get('event')} {b.get('fault')} {b.get('device')} -> {s}" for _, _, b, s in self._requests()
        ]
        return "--- e-mail ---\n{}\n--- webhook ---\n{}".format("\n".join(mails), "\n".join(hooks))

    def _requests(self) -> list[tuple[float, str, dict[str, Any], int]]:
        with self.http.lock:
            return list(self.http.requests)


# -- the district server --------------------------------------------------------------------


@dataclass
class District:
    """Agents, backend, InfluxDB database and technicians of one scenario.

    Attributes:
        rig: the simulated (or partly real) devices and their agents.
        influx: the scenario's own InfluxDB database.
        alerts: the technicians' e-mail and webhook receivers.
        capture: every device message on the broker, from before the agents start.
        hardware: the vendor's real-hardware config (empty: everything simulated).
        workdir: where the backend's config, registry and logs go.
    """

    rig: Rig
    influx: InfluxDatabase
    alerts: AlertChannels
    capture: MqttCapture
    hardware: HilDevices
    workdir: Path
    backend_process: BackendProcess | None = None
    broker: LocalMosquitto | None = None  # the private broker (None: real hardware's broker)

    def start_backend(
        self,
        *,
        rules: Mapping[str, Mapping[str, Any]] | None = None,
        ingest: Mapping[str, Any] | None = None,
        monitor: Mapping[str, Any] | None = None,
        schedule: tuple[tuple[str, str, str], ...] = DEFAULT_SCHEDULE,
        board_hours: tuple[tuple[str, str], ...] = (("00:00", "23:59"),),
    ) -> BackendProcess:
        """Write the registry (every commune's technician on e-mail and webhook) and start
        ``tincoso backend`` (ingest and monitor) against the rig's broker."""
        devices = [d.fleet_device for d in self.rig]
        registry = write_registry(
            self.workdir / "registry.yaml",
            devices,
            schedule=schedule,
            board_hours=board_hours,
            technicians={d.commune: self.alerts.technicians(d.commune) for d in devices},
            district_contacts=[self.alerts.district_contact()],
        )
        sections: dict[str, dict[str, Any]] = {
            "mqtt": {"url": f"mqtt://{self.rig.broker_host}:{self.rig.broker_port}"},
            "monitor": {"website_check_s": 0, **(monitor or {})},
            "alerts": {
                "smtp_host": "127.0.0.1",
                "smtp_port": self.alerts.inbox.port,
                "smtp_starttls": False,
                "send_timeout_s": 5.0,
            },
            "ingest": dict(ingest or {}),
        }
        if rules:
            sections["rules"] = {name: dict(values) for name, values in rules.items()}
        self.backend_process = self.rig.backend(
            self.influx.base_url,
            self.influx.name,
            workdir=self.workdir,
            registry_path=registry,
            sections=sections,
        )
        return self.backend_process.start()

    @property
    def backend(self) -> BackendProcess:
        """The started backend."""
        assert self.backend_process is not None, "start_backend() first"
        return self.backend_process

    def simulated(self, device: RigDevice, part: str) -> None:
        """Skip the scenario when ``part`` of ``device`` is real hardware: its fault is
        injected through the simulator."""
        if part in self.hardware.real_parts(device.id):
            pytest.skip(
                f"{device.id} {part} is real hardware ({self.hardware.source}): this scenario injects "
                "its fault through the simulator"
            )

    def logs(self, device: RigDevice | None = None) -> str:
        """Backend (and agent) log tails, for failure messages."""
        parts = [f"--- backend ---\n{self.backend.log_tail(40)}"] if self.backend_process else []
        if device is not None:
            parts.append(f"--- agent {device.id} ---\n{device.agent.log_tail(20)}")
        return "\n".join(parts)

    def query(self, q: str) -> list[dict[str, Any]]:
        """Rows of an InfluxQL query (times in epoch ms), every series flattened with its tags."""
        response = httpx.post(
            self.influx.base_url + "/query", data={"db": self.influx.name, "q": q, "epoch": "ms"}, timeout=10
        )
        response.raise_for_status()
        out: list[dict[str, Any]] = []
        for result in response.json().get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxQL error in {q!r}: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                out.extend({**tags, **dict(zip(series["columns"], v, strict=True))} for v in series["values"])
        return out

    def points(self, measurement: str, device: RigDevice, where: str = "") -> list[dict[str, Any]]:
        """Every ``measurement`` point of ``device`` (with ``AND``-ed ``where``), oldest first."""
        extra = f" AND {where}" if where else ""
        return self.query(f'SELECT * FROM "{measurement}" WHERE "device" = \'{device.id}\'{extra}')

    def alert_points(self, device: RigDevice, fault: str, status: str | None = None) -> list[dict[str, Any]]:
        """The monitor's ``alert`` points of ``fault`` on ``device`` (``open``/``closed``)."""
        where = f"\"fault\" = '{fault}'" + (f" AND \"status\" = '{status}'" if status else "")
        return self.points("alert", device, where)


@contextlib.contextmanager
def open_district(
    workdir: Path,
    influx: InfluxDatabase,
    fresh_broker: Callable[..., LocalMosquitto],
    *,
    devices_file: str | None = None,
) -> Iterator[District]:
    """A district for one scenario; everything it started is stopped on the way out.

    Args:
        workdir: the scenario's directory.
        influx: its InfluxDB database.
        fresh_broker: the ``fresh_mosquitto`` factory: a private broker, so no retained
            birth or queued session of another test reaches this backend.
        devices_file: ``devices.toml`` (default: ``$TINCOSO_HIL_DEVICES``, if set).
    """
    hardware = load_hil_devices(devices_file if devices_file is not None else os.environ.get(DEVICES_ENV))
    broker = None
    if hardware.broker is not None:
        host, port = hardware.broker
    else:
        broker = fresh_broker()
        host, port = "127.0.0.1", broker.port
    alerts = AlertChannels().start()
    rig = Rig(
        workdir / "rig",
        broker_host=host,
        broker_port=port,
        sections={"reporting": FAST_REPORTING},
        device_probes=hardware.probes,
    )
    capture = rig.capture()
    try:
        capture.start()
        yield District(rig, influx, alerts, capture, hardware, workdir / "district", broker=broker)
    finally:
        rig.stop()
        capture.stop()
        alerts.stop()
