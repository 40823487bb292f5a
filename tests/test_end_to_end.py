"""The walking skeleton: one real heartbeat from an agent process, through Mosquitto and the
backend process, into InfluxDB, with the registry's tags and the agent's sequence number."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.localservices import LocalInflux, LocalMosquitto

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DEVICE = "vn-trangxa-loa-03"

REGISTRY = """\
district: Võ Nhai
communes:
  - id: trang-xa
    name: Tràng Xá
    type: commune
    radio_system: ip
    schedule:
      - {name: Bản tin chiều, start: "17:00", end: "18:00"}
    board_hours:
      - {start: "06:00", end: "22:00"}
    technicians:
      - {name: Hoàng Thị Bích, email: ktv.trangxa@example.invalid}
devices:
  - {id: vn-trangxa-loa-03, kind: speaker_cluster, commune: trang-xa, hamlet: Thôn Khuôn Vạng}
"""


def _agent_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[device]
id = "{DEVICE}"
kind = "speaker_cluster"
state_dir = "{tmp_path / "agent-state"}"

[mqtt]
port = {port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0

[reporting]
heartbeat_s = 1
poll_s = 0.2

[clock]
sync_check = "none"

[probes.system]
""",
        encoding="utf-8",
    )
    return path


def _backend_config(tmp_path: Path, mqtt_port: int, influx_url: str) -> Path:
    (tmp_path / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    path = tmp_path / "backend.toml"
    path.write_text(
        f"""
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
client_id = "e2e-ingest"

[influx]
url = "{influx_url}"
database = "tincoso"

[ingest]
batch_ms = 50

[spool]
dir = "spool"

[registry]
path = "registry.yaml"

[monitor]
state_dir = "state"
website_check_s = 0
""",
        encoding="utf-8",
    )
    return path


def _heartbeats(influx_url: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{influx_url}/query",
        params={"db": "tincoso", "q": f"SELECT * FROM heartbeat WHERE device = '{DEVICE}'", "epoch": "ms"},
        timeout=5,
    )
    series = response.json()["results"][0].get("series", [])
    return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_one_heartbeat_travels_from_agent_through_mosquitto_into_influxdb(
    fresh_mosquitto: Callable[..., LocalMosquitto], fresh_influx: Callable[..., LocalInflux], tmp_path: Path
) -> None:
    broker, database = fresh_mosquitto(), fresh_influx()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    backend_log = (tmp_path / "backend.log").open("wb")
    agent_log = (tmp_path / "agent.log").open("wb")
    backend = subprocess.Popen(
        [
            BIN / "tincoso",
            "backend",
            "--config",
            _backend_config(tmp_path, broker.port, database.url),
        ],
        stdout=backend_log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    agent = subprocess.Popen(
        [BIN / "tincoso-agent", "--config", _agent_config(tmp_path, broker.port)],
        stdout=agent_log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not rows:
            time.sleep(0.3)
            try:
                rows = _heartbeats(database.url)
            except (httpx.HTTPError, KeyError):
                rows = []
        logs = (tmp_path / "agent.log").read_text() + (tmp_path / "backend.log").read_text()
        assert rows, f"no heartbeat reached InfluxDB:\n{logs[-3000:]}"
    finally:
        _stop(agent)
        _stop(backend)
        backend_log.close()
        agent_log.close()
    first = rows[0]
    assert first["device"] == DEVICE
    assert first["commune"] == "trang-xa"
    assert first["hamlet"] == "Thôn Khuôn Vạng"
    assert first["kind"] == "speaker_cluster"
    assert isinstance(first["seq"], int)
    assert first["uptime_s"] > 0
    assert abs(first["time"] - time.time() * 1000) < 120_000
    seqs = [row["seq"] for row in rows]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
