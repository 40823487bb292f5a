"""A fault drill: agents publish steadily while the broker is SIGKILLed, the ingest process
is SIGKILLed and InfluxDB goes away; then a sequence audit says whether every reading the
agents produced is stored exactly once.

Everything is real and in its own process: Mosquitto and InfluxDB (backend/localservices),
the ingest (``tincoso backend --role ingest``), one ``tincoso-agent`` per device. A
receipt counter subscribed to ``<root>/+/receipt`` measures what the receipts cost.
``tests/test_fault_drill.py`` runs a short drill; ``python -m bench drill`` a longer one.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.localservices import LocalInflux, LocalMosquitto
from hil_tests.audit import AuditResult, compare, query_stored, read_agent_queue

AGENT = Path(sys.executable).parent / "tincoso-agent"
DATABASE = "tincoso"
SHARED_GROUP = "tincoso-ingest"


@dataclass
class DrillReport:
    """What a drill found."""

    audit: AuditResult
    recover_s: float
    """From the last fault's repair until every agent's queue was empty."""
    receipts: int
    receipt_bytes: int
    stored: int
    duration_s: float
    faults: list[str] = field(default_factory=list)


class ReceiptCounter:
    """Counts the receipts the backend publishes (messages and payload bytes)."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"receipts-{uuid.uuid4().hex[:8]}")
        self._client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("tincoso/v1/+/receipt", qos=0)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)
        self._client.connect("127.0.0.1", port, keepalive=5)
        self._client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.count += 1
            self.bytes += len(message.payload)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _registry(devices: list[str]) -> str:
    text = "district: Võ Nhai\ncommunes:\n"
    text += "  - {id: trang-xa, name: Tràng Xá, type: commune, radio_system: ip}\ndevices:\n"
    return text + "".join(
        f"  - {{id: {d}, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm {i}}}\n"
        for i, d in enumerate(devices)
    )


def _agent_config(root: Path, device: str, port: int, heartbeat_s: float, receipts: bool) -> Path:
    path = root / device / "agent.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""
[device]
id = "{device}"
kind = "speaker_cluster"
state_dir = "{root / device / "state"}"

[mqtt]
port = {port}
keepalive_s = 5
reconnect_min_s = 0.2
reconnect_max_s = 1.0
publish_timeout_s = 3
receipts = {"true" if receipts else "false"}
receipt_timeout_s = 5

[reporting]
heartbeat_s = {heartbeat_s}
poll_s = 0.2
jitter = 0.0

[clock]
sync_check = "none"

[probes.system]
""",
        encoding="utf-8",
    )
    return path


class Drill:
    """One district on local services, ready for faults.

    Args:
        root: Working directory (services, configs, logs, queues).
        devices: How many agents.
        shared: Ingest with a shared subscription (``$share/tincoso-ingest/...``).
        heartbeat_s: Each agent's heartbeat interval (its steady reading rate).
        receipts: Agents wait for delivery receipts (False: they forget a reading at PUBACK).
    """

    def __init__(
        self,
        root: Path,
        *,
        devices: int = 3,
        shared: bool = False,
        heartbeat_s: float = 1.0,
        receipts: bool = True,
    ) -> None:
        self.root = root
        self.devices = [f"vn-drill-loa-{i:02d}" for i in range(devices)]
        self.shared = shared
        self.heartbeat_s = heartbeat_s
        self.receipts = receipts
        self.broker = LocalMosquitto(root / "services")
        self.influx = LocalInflux(root / "services")
        self.ingest: subprocess.Popen[bytes] | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.faults: list[str] = []
        self._connects_at_kill = 0
        self.counter: ReceiptCounter | None = None
        self._config = root / "backend.toml"

    # -- processes ---------------------------------------------------------------------

    def _backend_config(self) -> Path:
        path = self._config
        (self.root / "registry.yaml").write_text(_registry(self.devices), encoding="utf-8")
        shared = f'shared_group = "{SHARED_GROUP}"\n' if self.shared else ""
        path.write_text(
            f"""
[mqtt]
url = "{self.broker.url}"
client_id = "drill-ingest"
receive_maximum = 200
{shared}
[influx]
url = "{self.influx.url}"
database = "{DATABASE}"
timeout_s = 2.0

[ingest]
batch_ms = 50
stats_interval_s = 1.0
process_name = "drill-ingest"

[spool]
dir = "spool"
drain_records = 5

[registry]
path = "registry.yaml"
""",
            encoding="utf-8",
        )
        return path

    def start_ingest(self) -> None:
        log = open(self.root / "ingest.log", "ab")  # noqa: SIM115 -- the child keeps it
        with log:
            self.ingest = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "backend.cli",
                    "backend",
                    "--role",
                    "ingest",
                    "--config",
                    str(self._config),
                ],
                stderr=log,
                stdout=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill_ingest(self) -> None:
        if self.ingest is not None and self.ingest.poll() is None:
            self.ingest.send_signal(signal.SIGKILL)
            self.ingest.wait(10)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.broker.start()
        self.influx.start()
        self._backend_config()
        self.counter = ReceiptCounter(self.broker.port)
        self.start_ingest()
        for device in self.devices:
            config = _agent_config(self.root, device, self.broker.port, self.heartbeat_s, self.receipts)
            with open(self.root / device / "agent.log", "ab") as log:
                self.agents[device] = subprocess.Popen(
                    [str(AGENT), "--config", str(config)],
                    stderr=log,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )

    def stop(self) -> None:
        for agent in self.agents.values():
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
        self.kill_ingest()
        if self.counter is not None:
            with contextlib.suppress(Exception):
                self.counter.stop()
        for service in (self.broker, self.influx):
            with contextlib.suppress(Exception):
                service.stop()

    # -- faults ------------------------------------------------------------------------

    def _ingest_connects(self) -> int:
        log = self.root / "ingest.log"
        return (
            log.read_text(encoding="utf-8", errors="replace").count("event=mqtt_connected")
            if log.exists()
            else 0
        )

    def _ingest_reconnected(self) -> bool:
        """The ingest connected to the broker since the broker's last SIGKILL."""
        return self._ingest_connects() > self._connects_at_kill

    def kill_broker(self, down_s: float = 0.5) -> None:
        """SIGKILL the broker (what it has not saved is gone), restart it on the same port."""
        self.faults.append("broker SIGKILL")
        self._connects_at_kill = self._ingest_connects()
        self.broker.kill()
        time.sleep(down_s)
        self.broker.start()

    def kill_backend(self, down_s: float = 1.0, *, broker_too: bool = False) -> None:
        """SIGKILL the ingest process, start it again; with ``broker_too`` the broker is
        SIGKILLed while it holds what came meanwhile for the ingest's session."""
        self.faults.append("ingest SIGKILL" + (", broker SIGKILL while it is down" if broker_too else ""))
        self.kill_ingest()
        time.sleep(down_s)
        if broker_too:
            self._connects_at_kill = self._ingest_connects()
            self.broker.kill()
            self.broker.start()
        self.start_ingest()

    def database_down(self, down_s: float) -> None:
        """SIGKILL InfluxDB for ``down_s`` seconds."""
        self.faults.append(f"InfluxDB down {down_s:.0f} s")
        self.influx.kill()
        time.sleep(down_s)
        self.influx.start()

    # -- the audit ---------------------------------------------------------------------

    def queues_empty(self) -> bool:
        for device in self.devices:
            mark = read_agent_queue(self.root / device / "state" / "queue.sqlite3")
            if mark is None or mark.depth:
                return False
        return True

    def finish(
        self,
        *,
        started: float,
        repaired: float,
        timeout_s: float = 90.0,
        store_wait_s: float = 60.0,
        settle_s: float | None = None,
    ) -> DrillReport:
        """Wait for the queues to empty, stop the agents, wait for every reading; audit.

        With ``settle_s``, stop waiting for storage also once the ingest has reconnected to
        the broker since its last restart and nothing more was stored for ``settle_s``: the
        broker then holds nothing more for it, so what is missing is lost, not late (a drill
        that loses need not wait ``store_wait_s``).
        """
        _wait(self.queues_empty, timeout_s, "every agent's queue to empty")
        recover_s = time.monotonic() - repaired
        for agent in self.agents.values():
            agent.send_signal(signal.SIGTERM)
        for agent in self.agents.values():
            agent.wait(30)
        produced = {device: self._produced(device) for device in self.devices}
        expected = sum(len(s) for boots in produced.values() for s in boots.values())

        def stored() -> list[Any]:
            try:
                return query_stored(self.influx.url, DATABASE, devices=self.devices)
            except Exception:
                return []

        with contextlib.suppress(AssertionError):
            watch = _StorageWatch(stored, expected, settle_s, self._ingest_reconnected)
            _wait(watch.done, store_wait_s, "storage")
        points = query_stored(self.influx.url, DATABASE, devices=self.devices)  # a failure is no loss
        assert self.counter is not None
        return DrillReport(
            audit=compare(points, produced=produced),
            recover_s=recover_s,
            receipts=self.counter.count,
            receipt_bytes=self.counter.bytes,
            stored=len(points),
            duration_s=time.monotonic() - started,
            faults=list(self.faults),
        )

    def _produced(self, device: str) -> dict[str, set[int]]:
        """Seqs this boot allocated, less births (not stored by ingest) and what is still
        queued (not lost: sent when the agent runs again)."""
        queue = self.root / device / "state" / "queue.sqlite3"
        mark = read_agent_queue(queue)
        if mark is None:
            return {}
        log = (self.root / device / "agent.log").read_text(encoding="utf-8", errors="replace")
        births = {int(s) for s in re.findall(r"birth seq (\d+)", log)}
        with contextlib.closing(sqlite3.connect(f"file:{queue}?mode=ro", uri=True)) as db:
            queued = {int(r[0]) for r in db.execute("SELECT seq FROM outbox WHERE seq IS NOT NULL")}
        return {mark.boot_id: set(range(mark.next_seq)) - births - queued}


class _StorageWatch:
    """Whether storage is complete, or (with ``settle_s``) has caught up and gone quiet."""

    def __init__(
        self,
        stored: Callable[[], list[Any]],
        expected: int,
        settle_s: float | None,
        ingest_ready: Callable[[], bool],
    ) -> None:
        self._stored = stored
        self._expected = expected
        self._settle_s = settle_s
        self._ingest_ready = ingest_ready
        self._count = -1
        self._since = time.monotonic()

    def done(self) -> bool:
        keys = {(p.device, p.boot_id, p.seq) for p in self._stored()}
        if len(keys) >= self._expected:
            return True
        if self._settle_s is None or not self._ingest_ready():
            return False
        if len(keys) != self._count:
            self._count, self._since = len(keys), time.monotonic()
        return time.monotonic() - self._since >= self._settle_s


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def run_drill(
    root: Path,
    *,
    shared: bool,
    devices: int = 3,
    broker_kills: int = 2,
    database_down_s: float = 5.0,
    steady_s: float = 1.5,
    receipts: bool = True,
    store_wait_s: float = 60.0,
    settle_s: float | None = None,
) -> DrillReport:
    """Steady publishing with every fault in turn; the report of the audit (waiting up to
    ``store_wait_s`` for every produced reading to be stored; see `Drill.finish` for
    ``settle_s``)."""
    drill = Drill(root, devices=devices, shared=shared, receipts=receipts)
    started = time.monotonic()
    drill.start()
    try:
        time.sleep(steady_s)
        for _ in range(broker_kills):
            drill.kill_broker()
            time.sleep(steady_s)
        drill.kill_backend(down_s=3.0, broker_too=True)
        time.sleep(steady_s)
        if database_down_s > 0:
            drill.database_down(database_down_s)
            time.sleep(steady_s)
        drill.kill_broker()
        repaired = time.monotonic()
        return drill.finish(started=started, repaired=repaired, store_wait_s=store_wait_s, settle_s=settle_s)
    finally:
        drill.stop()
