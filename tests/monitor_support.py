"""Helpers for monitor and alert tests: a scripted device that builds valid v1 messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backend.alerts.messages import Notice
from backend.monitor.clock import Clock
from backend.registry import LOCAL_TZ, Technician
from protocols import payloads, topics

AUDIO_OK: dict[str, Any] = {
    "window_s": 1,
    "playing": True,
    "rms_dbfs": -18.0,
    "peak_dbfs": -3.0,
    "dead_air": False,
    "dead_air_s": 0,
    "clipping": False,
    "amp_power_w": 60.0,
}
HEARTBEAT_OK: dict[str, Any] = {
    "uptime_s": 100,
    "reboot_reason": "clean",
    "temp_c": 45.0,
    "disk_free_mb": 900.0,
    "disk_ro": False,
    "net_type": "4g",
    "signal_dbm": -80,
    "queue_depth": 0,
    "queue_dropped": 0,
}
DISPLAY_OK: dict[str, Any] = {
    "power": True,
    "brightness": 70,
    "content_id": "thong-bao-01",
    "blank": False,
    "frozen": False,
    "failed_modules": 0,
    "temp_c": 40.0,
    "source_sync_age_s": 60,
}


def local_ts(hour: int, minute: int, second: int = 0) -> float:
    """Epoch seconds of a Vietnam local time on 26/11/2025."""
    return datetime(2025, 11, 26, hour, minute, second, tzinfo=LOCAL_TZ).timestamp()


@dataclass
class ScriptedDevice:
    """Builds the messages one device would send, with a running ``seq``."""

    device: str
    clock: Clock
    boot_id: str = "boot-1"
    bdseq: int = 1
    heartbeat_s: float = 3600
    kind: str = "speaker_cluster"
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    def _build(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        env = payloads.envelope(
            self.device, int(self.clock.now() * 1000), True, self.seq * 1000, self.boot_id, self.seq
        )
        msg = payloads.build(kind, env, fields)
        self.sent.append(msg)
        return msg

    def birth(self) -> dict[str, Any]:
        fields = {"bdseq": self.bdseq, "device_kind": self.kind, "agent_version": "0.1.0"}
        return self._build("birth", {**fields, "heartbeat_s": self.heartbeat_s})

    def heartbeat(self, **changes: Any) -> dict[str, Any]:
        return self._build("heartbeat", {**HEARTBEAT_OK, **changes})

    def audio(self, **changes: Any) -> dict[str, Any]:
        return self._build("audio", {**AUDIO_OK, **changes})

    def display(self, **changes: Any) -> dict[str, Any]:
        return self._build("display", {**DISPLAY_OK, **changes})

    def event(self, event: str, code: str) -> dict[str, Any]:
        return self._build("event", {"event": event, "code": code})

    def death(self, bdseq: int | None = None, reason: str = "lwt") -> dict[str, Any]:
        ts = int(self.clock.now() * 1000)
        return payloads.death(self.device, ts, True, self.bdseq if bdseq is None else bdseq, reason)

    def reboot(self) -> None:
        self.boot_id = f"boot-{int(self.boot_id.split('-')[1]) + 1}"
        self.bdseq += 1
        self.seq = 0


def wire(msg: dict[str, Any]) -> tuple[str, bytes]:
    """``(topic, payload)`` as the device would publish ``msg``."""
    return topics.topic_for(msg), payloads.encode(msg)


class RecordingChannel:
    """A channel that remembers what it was asked to send (pure unit tests only)."""

    def __init__(self, name: str = "email", fail_times: int = 0) -> None:
        self.name = name
        self.fail_times = fail_times
        self.sent: list[tuple[Technician, Notice]] = []
        self.calls = 0

    def reaches(self, technician: Technician) -> bool:
        return technician.email is not None

    async def send(self, technician: Technician, notice: Notice) -> None:
        from backend.alerts.channels import DeliveryError

        self.calls += 1
        if self.calls <= self.fail_times:
            raise DeliveryError("recording channel told to fail")
        self.sent.append((technician, notice))
