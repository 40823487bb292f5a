"""HIL fixtures: simulated hardware, the rig, network and disk faults, the audit capture.

The service fixtures (``mosquitto``, ``influxdb``, ``influx_db``, ``fresh_mosquitto``,
``fresh_influx``) come from tests/services_fixtures.py, loaded by the root conftest.py.

- ``rig``: an empty :class:`~hil_tests.rig.Rig` on the session broker; add devices, then
  ``rig.start()``; everything is stopped after the test.
- ``require_agent``: fails the test, naming the reason, when the agent CLI cannot run.
- ``speaker_cluster``, ``board``: started simulated hardware without an agent.
- ``tcp_proxy(port)``: factory of started proxies (stopped after the test).
- ``mqtt_capture``: a started capture of every device topic on the session broker.
- ``tiny_disk(size)``: factory of tmpfs mounts (skips when mounting is not permitted).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.localservices import LocalMosquitto
from hil_tests.audit import MqttCapture
from hil_tests.faults.agent import AgentUnavailable, agent_command
from hil_tests.faults.disk import DiskFaultUnavailable, tiny_filesystem
from hil_tests.faults.proxy import TcpProxy
from hil_tests.rig import Rig
from hil_tests.scenarios import District, open_district
from hil_tests.simulators.board import Board
from hil_tests.simulators.speaker_cluster import SpeakerCluster
from tests.services_fixtures import InfluxDatabase

__all__ = [
    "board",
    "district",
    "mqtt_capture",
    "require_agent",
    "rig",
    "speaker_cluster",
    "tcp_proxy",
    "tiny_disk",
]


@pytest.fixture
def require_agent() -> None:
    """Fail (naming the reason) when the agent CLI cannot run."""
    try:
        agent_command()
    except AgentUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture
def rig(tmp_path: Path, mosquitto: LocalMosquitto, require_agent: None) -> Iterator[Rig]:
    """An empty rig on the session broker, every device behind its own proxy."""
    with Rig(tmp_path / "rig", broker_port=mosquitto.port) as running:
        yield running


@pytest.fixture
def speaker_cluster(tmp_path: Path) -> Iterator[SpeakerCluster]:
    """A started speaker cluster's hardware (audio, power meter, modem) without an agent."""
    with SpeakerCluster(tmp_path / "speaker_cluster") as cluster:
        yield cluster


@pytest.fixture
def board() -> Iterator[Board]:
    """A started commune e-board's hardware (display controller, modem) without an agent."""
    with Board("eboard") as running:
        yield running


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[..., TcpProxy]]:
    """Factory: ``tcp_proxy(target_port, target_host="127.0.0.1")`` -> a started proxy."""
    proxies: list[TcpProxy] = []

    def start(target_port: int, target_host: str = "127.0.0.1") -> TcpProxy:
        proxy = TcpProxy(target_host, target_port).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def mqtt_capture(mosquitto: LocalMosquitto) -> Iterator[MqttCapture]:
    """A capture of every device message on the session broker (unique client id)."""
    capture = MqttCapture("127.0.0.1", mosquitto.port, client_id=f"hil-audit-{secrets.token_hex(4)}")
    capture.start()
    yield capture
    capture.stop()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Factory: ``tiny_disk(size="256k")`` -> a mounted tmpfs directory (skips if not permitted)."""
    with contextlib.ExitStack() as mounts:
        count = 0

        def mount(size: str = "256k") -> Path:
            nonlocal count
            count += 1
            try:
                return mounts.enter_context(tiny_filesystem(tmp_path / f"tiny-disk-{count}", size))
            except DiskFaultUnavailable as exc:
                pytest.skip(str(exc))

        yield mount


@pytest.fixture
def district(
    tmp_path: Path,
    influx_db: InfluxDatabase,
    fresh_mosquitto: Callable[..., LocalMosquitto],
    require_agent: None,
) -> Iterator[District]:
    """A scenario's district: its own broker, the session InfluxDB, backend, mail and webhook inboxes."""
    with open_district(tmp_path, influx_db, fresh_mosquitto) as opened:
        yield opened
