"""Shared pieces of the integrity tests: a district of devices on a real broker, the real
ingest in this process, and counts read back from the real InfluxDB."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.config import BackendConfig, config_from_dict
from backend.influx import InfluxClient, rows
from backend.ingest import IngestService
from backend.registry import Registry, parse_registry
from protocols import payloads, topics
from protocols.examples import EXAMPLES

HOST = "127.0.0.1"
# Recent enough to lie inside the raw retention policy the backend creates.
BASE_TS = (int(time.time()) // 60 - 60) * 60_000


def registry_yaml(devices: list[str]) -> str:
    text = (
        "district: Võ Nhai\ncommunes:\n  - {id: trang-xa, name: Tràng Xá, type: commune, radio_system: ip}\n"
    )
    text += "devices:\n" + "".join(
        f"  - {{id: {d}, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm {i}}}\n"
        for i, d in enumerate(devices)
    )
    return text


def registry(devices: list[str]) -> Registry:
    return parse_registry(registry_yaml(devices))


def ingest_config(
    tmp_path: Path,
    *,
    mqtt_settings: dict[str, Any],
    influx_url: str,
    database: str,
    devices: list[str],
    **ingest: Any,
) -> BackendConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "registry.yaml").write_text(registry_yaml(devices), encoding="utf-8")
    return config_from_dict(
        {
            "mqtt": {"client_id": f"ingest-{uuid.uuid4().hex[:8]}", "receive_maximum": 200, **mqtt_settings},
            "influx": {"url": influx_url, "database": database, "timeout_s": 2.0},
            "ingest": {"batch_ms": 50, "stats_interval_s": 0.5, "process_name": "test-ingest", **ingest},
            "spool": {"dir": str(tmp_path / "spool"), "drain_records": 5},
            "registry": {"path": str(tmp_path / "registry.yaml")},
        }
    )


@contextlib.asynccontextmanager
async def running_ingest(config: BackendConfig, devices: Registry) -> AsyncIterator[IngestService]:
    """The ingest service, connected, for the body of the ``async with``; stopped after it."""
    service = IngestService(config, devices)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.connected.wait(), 15)
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def heartbeat(device: str, seq: int, boot_id: str = "b0000001") -> dict[str, Any]:
    msg = dict(
        EXAMPLES["heartbeat"],
        device=device,
        seq=seq,
        boot_id=boot_id,
        ts=BASE_TS + seq * 1000,
        mono_ms=1_000_000 + seq * 1000,
    )
    return payloads.validate(msg)


class DeviceClient:
    """A device-side paho client (its own network thread) that records what it gets."""

    def __init__(self, client_id: str) -> None:
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.paho.max_queued_messages_set(0)
        self.messages: list[mqtt.MQTTMessage] = []
        self.granted: dict[str, bool] = {}
        self._filters: dict[int, list[str]] = {}
        self.paho.on_message = lambda _c, _u, msg: self.messages.append(msg)
        self.paho.on_subscribe = self._on_subscribe
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        for topic_filter, code in zip(self._filters.pop(mid, []), codes, strict=False):
            self.granted[topic_filter] = not code.is_failure

    def connect(self, port: int, username: str | None, password: str | None, ca: Path | None) -> None:
        if username is not None:
            self.paho.username_pw_set(username, password)
        if ca is not None:
            self.paho.tls_set(ca_certs=str(ca))
        self.paho.connect(HOST, port, keepalive=10)
        self.paho.loop_start()

    def subscribe(self, filters: list[str]) -> None:
        for topic_filter in filters:
            _rc, mid = self.paho.subscribe(topic_filter, qos=1)
            if mid is not None:
                self._filters[mid] = [topic_filter]

    def send(self, msg: dict[str, Any], root: str = topics.ROOT) -> None:
        self.infos.append(self.paho.publish(topics.topic_for(msg, root), payloads.encode(msg), qos=1))

    def flush(self, timeout: float = 30.0) -> None:
        for info in self.infos:
            info.wait_for_publish(timeout)
        self.infos.clear()

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


async def stored_seqs(influx: InfluxClient, measurement: str = "heartbeat") -> dict[str, list[int]]:
    """Every stored ``seq`` of ``measurement`` (or a quoted, comma-separated list of
    measurements), by device (duplicates kept)."""
    source = measurement if measurement.startswith('"') else f'"{measurement}"'
    try:
        series = await influx.query(f'SELECT "seq", "device" FROM {source}')
    except Exception:
        return {}
    out: dict[str, list[int]] = {}
    for row in rows(series):
        out.setdefault(row["device"], []).append(row["seq"])
    return {d: sorted(s) for d, s in out.items()}


async def wait_for(
    check: Callable[[], Awaitable[Any]], limit_s: float = 30.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last result {result!r}")
        await asyncio.sleep(0.2)
