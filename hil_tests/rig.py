"""The HIL rig as a library: N simulated devices, each with its own real agent process.

For each device the rig starts the simulated hardware (:class:`SpeakerCluster` or
:class:`Board`), optionally a :class:`TcpProxy` standing for its 4G link, and an
:class:`AgentProcess` whose config points at those simulators and at the proxy (or the
broker). The demo, the benchmarks and the ``hil`` scenarios drive it the same way::

    with Rig(tmp_path, broker_port=mosquitto.port) as rig:
        loa = rig.add_speaker_cluster(commune="trang-xa", hamlet="Nà Hốc")
        rig.start()
        loa.hardware.start_bulletin("ban-tin-chieu")
        loa.proxy.cut(); ...; loa.proxy.restore()
        result = rig.audit(influxdb.url, "tincoso", capture=capture)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from hil_tests.audit import AuditResult, MqttCapture, audit
from hil_tests.faults.agent import AgentProcess
from hil_tests.faults.backend import BackendProcess, FleetDevice
from hil_tests.faults.proxy import TcpProxy
from hil_tests.simulators.board import Board
from hil_tests.simulators.speaker_cluster import SpeakerCluster

# Short windows so a scenario sees dead air, recovery and amp faults within seconds.
FAST_AUDIO = {"window_s": 0.5, "dead_air_enter_s": 2.0, "dead_air_clear_s": 1.0}
FAST_POWER_METER = {"amp_idle_s": 2.0, "timeout_s": 0.5}
FAST_DISPLAY = {"frozen_after_s": 3.0}


def probe_sections(
    hardware: SpeakerCluster | Board, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The agent's ``[probes.*]`` sections for a piece of simulated hardware.

    Args:
        hardware: the simulators.
        overrides: probe name -> keys to add or replace (e.g. ``{"audio": {"window_s": 1.0}}``).
    """
    sections: dict[str, dict[str, Any]] = {}
    for name, where in hardware.probe_urls().items():
        if name == "audio":
            section: dict[str, Any] = {"source": where["url"], "rate": where["rate"], **FAST_AUDIO}
            section["programme_file"] = where["programme_file"]
        elif name == "power_meter":
            assert isinstance(hardware, SpeakerCluster)
            idle = hardware.power_meter.idle_w
            section = {"url": where["url"], "idle_power_w": idle + 2.0, **FAST_POWER_METER}
        elif name == "display":
            section = {"url": where["url"], **FAST_DISPLAY}
        else:
            section = {"url": where["url"]}
        sections[name] = section
    for name, values in (overrides or {}).items():
        sections.setdefault(name, {}).update(values)
    return sections


class RigDevice:
    """One simulated device: its hardware, its link and its agent.

    Attributes:
        id: device id.
        kind: ``speaker_cluster``, ``eboard`` or ``district_led``.
        commune: commune id.
        hamlet: hamlet (or office) name.
        hardware: the simulators.
        proxy: the device's network link, or None when the agent talks to the broker directly.
        agent: the agent process.
    """

    def __init__(
        self,
        device_id: str,
        kind: str,
        commune: str,
        hamlet: str,
        hardware: SpeakerCluster | Board,
        proxy: TcpProxy | None,
        agent: AgentProcess,
    ) -> None:
        self.id = device_id
        self.kind = kind
        self.commune = commune
        self.hamlet = hamlet
        self.hardware = hardware
        self.proxy = proxy
        self.agent = agent

    @property
    def fleet_device(self) -> FleetDevice:
        """The registry entry of this device."""
        return FleetDevice(self.id, self.kind, self.commune, self.hamlet)

    @property
    def speaker(self) -> SpeakerCluster:
        """The hardware as a speaker cluster (raises TypeError for a board)."""
        if not isinstance(self.hardware, SpeakerCluster):
            raise TypeError(f"{self.id} is a {self.kind}, not a speaker cluster")
        return self.hardware

    @property
    def board(self) -> Board:
        """The hardware as a board (raises TypeError for a speaker cluster)."""
        if not isinstance(self.hardware, Board):
            raise TypeError(f"{self.id} is a {self.kind}, not a board")
        return self.hardware

    def start(self, *, agent: bool = True) -> None:
        """Start the hardware and (unless ``agent=False``) the agent; the link runs from creation."""
        self.hardware.start()
        if agent:
            self.agent.start()

    def stop(self) -> None:
        """Stop the agent cleanly, then the link and the hardware."""
        self.agent.stop()
        if self.proxy is not None:
            self.proxy.stop()
        self.hardware.stop()


class Rig:
    """A simulated fleet against one broker.

    Args:
        workdir: one subdirectory per device (config, log, state, now-playing file).
        broker_port: the broker's port.
        broker_host: the broker's host.
        proxied: give every device a :class:`TcpProxy` (network faults need it).
        transport: ``"pty"`` or ``"tcp"`` for the serial simulators (``tcp`` scales to
            more devices: no PTY limit).
        audio_rate: sample rate of the simulated receivers (8000 for large fleets).
        sections: agent config sections merged into every agent (``reporting``, ``queue``...).
        probe_overrides: probe name -> keys merged into every agent's probe section.
        device_probes: device id -> probe name -> keys merged into that device's probe
            sections, after ``probe_overrides`` (real hardware instead of a simulator:
            ``{"vn-trangxa-loa-01": {"power_meter": {"url": "/dev/ttyUSB0"}}}``).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        broker_port: int,
        broker_host: str = "127.0.0.1",
        proxied: bool = True,
        transport: str = "pty",
        audio_rate: int = 16000,
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        probe_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        device_probes: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.proxied = proxied
        self.transport = transport
        self.audio_rate = audio_rate
        self.sections = sections or {}
        self.probe_overrides = probe_overrides or {}
        self.device_probes = device_probes or {}
        self.devices: dict[str, RigDevice] = {}
        self.backends: list[BackendProcess] = []
        self._started = False

    def __iter__(self) -> Iterator[RigDevice]:
        return iter(self.devices.values())

    def __getitem__(self, device_id: str) -> RigDevice:
        return self.devices[device_id]

    # -- building the fleet --------------------------------------------------------------

    def add_speaker_cluster(
        self,
        device_id: str | None = None,
        *,
        commune: str = "trang-xa",
        hamlet: str | None = None,
        **agent: Any,
    ) -> RigDevice:
        """Add a speaker cluster (``agent`` keywords go to :class:`AgentProcess`)."""
        number = sum(1 for d in self if d.kind == "speaker_cluster") + 1
        device_id = device_id or f"vn-{commune.replace('-', '')}-loa-{number:02d}"
        workdir = self.workdir / device_id
        seed = len(self.devices)
        hardware = SpeakerCluster(workdir, transport=self.transport, rate=self.audio_rate, seed=seed)
        return self._add(device_id, "speaker_cluster", commune, hamlet or f"Xóm {number}", hardware, agent)

    def add_board(
        self,
        kind: str = "eboard",
        device_id: str | None = None,
        *,
        commune: str = "dinh-ca",
        hamlet: str = "UBND",
        **agent: Any,
    ) -> RigDevice:
        """Add an e-board or the district LED board (``agent`` keywords go to :class:`AgentProcess`)."""
        number = sum(1 for d in self if d.kind == kind) + 1
        # The ids of backend/examples/registry.yaml: vn-<commune>-bangtin-NN, vn-huyen-led-NN.
        place = "huyen" if kind == "district_led" else commune.replace("-", "")
        label = "led" if kind == "district_led" else "bangtin"
        device_id = device_id or f"vn-{place}-{label}-{number:02d}"
        hardware = Board(kind, transport=self.transport, seed=len(self.devices))
        return self._add(device_id, kind, commune, hamlet, hardware, agent)

    def add_fleet(
        self, speakers: int, boards: int = 0, communes: tuple[str, ...] = ("trang-xa", "la-hien")
    ) -> list[RigDevice]:
        """Add ``speakers`` speaker clusters and ``boards`` e-boards spread over ``communes``."""
        added = [self.add_speaker_cluster(commune=communes[i % len(communes)]) for i in range(speakers)]
        added += [self.add_board("eboard", commune=communes[i % len(communes)]) for i in range(boards)]
        return added

    def _add(
        self,
        device_id: str,
        kind: str,
        commune: str,
        hamlet: str,
        hardware: SpeakerCluster | Board,
        agent_options: dict[str, Any],
    ) -> RigDevice:
        if device_id in self.devices:
            raise ValueError(f"device {device_id} is already in the rig")
        proxy = TcpProxy(self.broker_host, self.broker_port) if self.proxied else None
        if proxy is not None:
            # Bind now so the agent config can name the port before anything starts.
            proxy.start()
        sections = {k: dict(v) for k, v in self.sections.items()}
        for name, values in agent_options.pop("sections", {}).items():
            sections.setdefault(name, {}).update(values)
        agent = AgentProcess(
            self.workdir / device_id,
            device_id,
            kind,
            proxy.port if proxy is not None else self.broker_port,
            broker_host=proxy.host if proxy is not None else self.broker_host,
            probes=probe_sections(hardware, self._probe_overrides(device_id)),
            sections=sections,
            **agent_options,
        )
        device = RigDevice(device_id, kind, commune, hamlet, hardware, proxy, agent)
        self.devices[device_id] = device
        if self._started:
            device.hardware.start()
            agent.start()
        return device

    def _probe_overrides(self, device_id: str) -> dict[str, dict[str, Any]]:
        merged = {name: dict(values) for name, values in self.probe_overrides.items()}
        for name, values in self.device_probes.get(device_id, {}).items():
            merged.setdefault(name, {}).update(values)
        return merged

    # -- running -------------------------------------------------------------------------

    def start(self, *, agents: bool = True) -> Self:
        """Start every device's hardware and (unless ``agents=False``) its agent."""
        for device in self:
            device.hardware.start()
            if agents:
                device.agent.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop the agents cleanly, then links, hardware and backends the rig started."""
        self.stop_agents()
        for device in self:
            if device.proxy is not None:
                device.proxy.stop()
            device.hardware.stop()
        for backend in self.backends:
            backend.stop()
        self._started = False

    def stop_agents(self, timeout: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every running agent at once (each may take seconds to flush its queue and
        say its clean death) and wait; each one's exit code (SIGABRT, SIGKILL: it was stuck)."""
        running = [device for device in self if device.agent.running]
        if not running:
            return {}
        with ThreadPoolExecutor(max_workers=min(64, len(running))) as pool:
            codes = list(pool.map(lambda device: device.agent.stop(timeout), running))
        return {device.id: code for device, code in zip(running, codes, strict=True)}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def backend(self, influx_url: str, database: str, **options: Any) -> BackendProcess:
        """A :class:`BackendProcess` for this fleet on the rig's broker (not started)."""
        backend = BackendProcess(
            options.pop("workdir", self.workdir / "backend"),
            mqtt_port=self.broker_port,
            influx_url=influx_url,
            database=database,
            devices=[d.fleet_device for d in self],
            **options,
        )
        self.backends.append(backend)
        return backend

    def capture(self, client_id: str | None = None) -> MqttCapture:
        """An MQTT capture on the rig's broker (not started; a fresh client id by default,
        so no earlier run's queued session leaks in)."""
        client_id = client_id or f"tincoso-hil-audit-{secrets.token_hex(4)}"
        return MqttCapture(self.broker_host, self.broker_port, client_id=client_id)

    # -- accounts ------------------------------------------------------------------------

    def produced(self) -> dict[str, dict[str, range]]:
        """device -> boot id -> seqs its agent allocated (every boot so far)."""
        return {device.id: device.agent.produced() for device in self}

    def audit(
        self,
        influx_url: str,
        database: str,
        *,
        capture: MqttCapture | None = None,
        late_after_s: float = 60.0,
        echo: bool = True,
    ) -> AuditResult:
        """Compare what every agent produced with what InfluxDB holds (and the broker saw)."""
        return audit(
            influx_url,
            database,
            produced=self.produced(),
            capture=capture,
            devices=list(self.devices),
            late_after_s=late_after_s,
            echo=echo,
        )
