"""The monitor as ``tincoso backend`` starts it: from ``backend.toml`` sections, real broker and database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.config import ConfigError, config_from_dict
from backend.influx import InfluxClient, rows
from backend.localservices import LocalMosquitto
from backend.monitor.clock import SystemClock
from backend.monitor.config import MonitorConfig
from backend.monitor.service import run_monitor
from backend.registry import load_registry
from protocols import payloads, topics
from tests.monitor_support import ScriptedDevice
from tests.services_fixtures import InfluxDatabase
from tests.test_registry import EXAMPLE


def _raw(
    mosquitto: LocalMosquitto, influx_db: InfluxDatabase, tmp_path: Path, root: str
) -> dict[str, object]:
    return {
        "mqtt": {"url": mosquitto.url, "topic_root": root},
        "influx": {"url": influx_db.base_url, "database": influx_db.name},
        "registry": {"path": str(EXAMPLE)},
        "monitor": {
            "client_id": f"monitor-{root[:9]}",
            "state_dir": str(tmp_path / "state"),
            "tick_s": 0.1,
            "website_check_s": 0,
            "rules": {"amp_idle": {"for_s": 10, "eboard": {"enabled": False}}},
        },
        "alerts": {"remind_s": 3600, "attempts": 2},
    }


def test_monitor_sections_are_typed_and_checked(
    mosquitto: LocalMosquitto, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    config = MonitorConfig.from_backend(config_from_dict(_raw(mosquitto, influx_db, tmp_path, "t/v1")))
    assert config.monitor.tick_s == 0.1
    assert config.rules.settings("amp_idle", "speaker_cluster").for_s == 10
    assert config.rules.settings("amp_idle", "eboard").enabled is False
    assert config.alerts.attempts == 2
    bad = _raw(mosquitto, influx_db, tmp_path, "t/v1")
    bad["alerts"] = {"smtp_prot": 25}
    with pytest.raises(ConfigError, match=r"alerts\.smtp_prot is not a known setting"):
        MonitorConfig.from_backend(config_from_dict(bad))
    bad["alerts"] = {}
    bad["monitor"] = {"rules": {"offline": {"for_s": "1 min"}}}
    with pytest.raises(ConfigError, match=r"rules\.offline\.for_s must be float"):
        MonitorConfig.from_backend(config_from_dict(bad))


async def test_run_monitor_as_the_backend_calls_it_writes_state(
    mosquitto: LocalMosquitto, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    root = f"m{tmp_path.name[-8:].replace('_', '')}/v1"
    config = config_from_dict(_raw(mosquitto, influx_db, tmp_path, root))
    stop = asyncio.Event()
    influx_client = InfluxClient(influx_db.base_url, influx_db.name)
    task = asyncio.create_task(run_monitor(config, load_registry(EXAMPLE), influx_client, stop))
    dev = ScriptedDevice("vn-trangxa-loa-02", SystemClock())
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{root[:9]}")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        birth = dev.birth()
        client.publish(topics.state_topic(dev.device, root), payloads.encode(birth), qos=1, retain=True)
        async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
            async with asyncio.timeout(10):
                while not rows(await influx.query("SELECT * FROM state")):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                while not rows(await influx.query("SELECT * FROM device_info")):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
    finally:
        # Clear the retained birth: the session broker is shared with other tests.
        client.publish(topics.state_topic(dev.device, root), b"", qos=1, retain=True).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        stop.set()
        await task
        await influx_client.aclose()
    # Read again once the monitor has stopped: InfluxDB 1.x makes a write's fields and
    # points visible one by one, so a query racing a write can see part of it.
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        states = rows(await influx.query("SELECT * FROM state"))
        infos = rows(await influx.query("SELECT * FROM device_info"))
    registry = load_registry(EXAMPLE)
    placed = {d.id for d in registry.devices.values() if d.lat is not None and d.lon is not None}
    assert placed
    # Every registered device is counted, with or without coordinates.
    assert {info["device"] for info in infos} == set(registry.devices)
    assert all(info["registered"] is True for info in infos)
    assert {info["device"] for info in infos if info["lat"] is not None} == placed
    trang_xa = next(info for info in infos if info["device"] == "vn-trangxa-loa-02")
    assert (trang_xa["lat"], trang_xa["lon"]) == (
        registry.devices["vn-trangxa-loa-02"].lat,
        registry.devices["vn-trangxa-loa-02"].lon,
    )
    [state] = states
    assert (state["device"], state["commune"], state["online"], state["reason"]) == (
        "vn-trangxa-loa-02",
        "trang-xa",
        True,
        "birth",
    )
