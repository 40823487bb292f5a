"""Realistic device messages for the benchmarks, built by the agent's own portable core.

`agent.core.messages.MessageBuilder` wraps the fields in the same sequenced envelope the
agent sends, and `protocols.payloads.encode` gives the same bytes, so the backend cannot
tell these from a real agent's messages.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from agent.core.messages import MessageBuilder, heartbeat_fields
from hil_tests.faults.backend import FleetDevice
from protocols import payloads, topics

COMMUNES = ("trang-xa", "la-hien", "binh-long", "cuc-duong", "dan-tien", "lau-thuong", "dinh-ca")


def fleet(count: int, prefix: str = "vn-bench") -> list[FleetDevice]:
    """``count`` speaker clusters spread over the Võ Nhai communes, as registry entries."""
    return [
        FleetDevice(f"{prefix}-{n:05d}", "speaker_cluster", COMMUNES[n % len(COMMUNES)], f"Xóm {n % 40 + 1}")
        for n in range(count)
    ]


def heartbeat(uptime_s: float, signal_dbm: float = -79.0) -> dict[str, Any]:
    """A speaker cluster controller's heartbeat fields (system and modem probes)."""
    return heartbeat_fields(
        {
            "uptime_s": round(uptime_s, 1),
            "reboot_reason": "power_loss",
            "temp_c": 47.5,
            "disk_free_mb": 1843.0,
            "disk_ro": False,
            "net_type": "4g",
            "signal_dbm": signal_dbm,
            "operator": "Viettel",
            "mains": True,
        },
        0,
        0,
        0,
    )


def audio(playing: bool) -> dict[str, Any]:
    """An audio snapshot (audio and power-meter probes) of an idle or playing cluster."""
    return {
        "window_s": 1.0,
        "playing": playing,
        "rms_dbfs": -18.5 if playing else -71.0,
        "peak_dbfs": -3.2 if playing else -60.0,
        "dead_air": False,
        "dead_air_s": 0.0,
        "clipping": False,
        "programme": "ban-tin-chieu" if playing else None,
        "volume": 80,
        "amp_power_w": 64.0 if playing else 3.1,
        "amp_voltage_v": 221.4,
        "amp_current_a": 0.31 if playing else 0.02,
        "amp_energy_wh": 15230.0,
    }


class SimDevice:
    """One simulated device's envelope state: boot id, seq, and message building."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.boot_id = str(uuid.uuid4())
        self.builder = MessageBuilder(device, self.boot_id)
        self.seq = 0
        self.started = time.monotonic()

    def message(self, kind: str, fields: dict[str, Any]) -> tuple[str, bytes]:
        """(topic, payload) of the next message of this device."""
        self.seq += 1
        mono_ms = int((time.monotonic() - self.started) * 1000) + 3_600_000
        msg = self.builder.build(kind, fields, self.seq, int(time.time() * 1000), True, mono_ms)
        return topics.topic_for(msg), payloads.encode(msg)

    def birth(self, bdseq: int, heartbeat_s: float) -> tuple[str, bytes]:
        """(topic, payload) of the retained birth."""
        fields = {
            "bdseq": bdseq,
            "device_kind": "speaker_cluster",
            "agent_version": "0.1.0",
            "heartbeat_s": heartbeat_s,
            "platform": "bench-sim",
        }
        return self.message("birth", fields)

    def death(self, bdseq: int) -> tuple[str, bytes]:
        """(topic, payload) of the Last Will."""
        msg = payloads.death(self.device, int(time.time() * 1000), True, bdseq, "lwt")
        return topics.state_topic(self.device), payloads.encode(msg)


def stream(devices: list[SimDevice], count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` messages round-robin over ``devices``: heartbeats and audio snapshots alternately."""
    for n in range(count):
        device = devices[n % len(devices)]
        if (n // len(devices)) % 2 == 0:
            yield device.message("heartbeat", heartbeat(3600.0 + n))
        else:
            yield device.message("audio", audio(playing=n % 3 == 0))
