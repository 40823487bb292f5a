# mypy: ignore-errors
# ruff: noqa: E402
# (MicroPython-only APIs such as machine and time.ticks_ms have no CPython stubs; the
# portable core it uses is type-checked and tested on both ports.)
#
# tincoso agent entry point for MicroPython boards (ESP32 with Wi-Fi or a 4G modem).
#
# Copy protocols/, agent/core/ and this file to the board (see agent/README.md); put a
# config.json beside it. Needs an mqtt_as-like or umqtt.simple-like client:
#   mpremote mip install umqtt.simple
# Messages go to a flash ring buffer first and leave it only after the broker's PUBACK
# (umqtt.simple's publish(qos=1) waits for it), so an outage or a power cut loses
# nothing but what the ring's cap drops (counted in heartbeat queue_dropped).
#
# This file is not imported on CPython: it uses MicroPython's machine/network/time APIs.
TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

import binascii
import json
import os
import time

try:
    import machine
except ImportError:  # a CPython import (docs tooling): nothing to run
    machine = None

from agent.core.backlog import batch_payload, plan_sends
from agent.core.messages import MessageBuilder, clock_ok, heartbeat_fields, result_fields
from agent.core.policy import ReportingPolicy
from agent.core.ring import RingBuffer
from protocols import payloads, topics

CONFIG_FILE = "config.json"
RING_FILE = "queue.ring"
EPOCH_OFFSET_S = 946684800  # MicroPython's embedded epoch is 2000-01-01


def load_config() -> "dict[str, Any]":
    with open(CONFIG_FILE) as f:
        cfg = json.load(f)
    topics.check_device_id(cfg["device"])
    return cfg


def boot_id() -> str:
    # No kernel boot id on a microcontroller: a random one per boot.
    return binascii.hexlify(os.urandom(8)).decode()


def wall_ms() -> int:
    return int((time.time() + EPOCH_OFFSET_S) * 1000)


class Agent:
    """The portable core wired to a flash ring and an umqtt.simple-style client."""

    def __init__(self, cfg: "dict[str, Any]", client_factory: "Any") -> None:
        self.cfg = cfg
        self.device = cfg["device"]
        self.ring = RingBuffer(RING_FILE, cfg.get("ring_records", 256), cfg.get("record_size", 1024))
        self.builder = MessageBuilder(self.device, boot_id())
        self.policy = ReportingPolicy(self.device, cfg.get("heartbeat_s", 30), cfg.get("snapshot_s", 300))
        self.seq = 0
        self.bdseq = 0
        self.client_factory = client_factory
        self.client = None  # type: Any
        self.start_ms = time.ticks_ms()

    def mono_ms(self) -> int:
        return time.ticks_diff(time.ticks_ms(), self.start_ms)

    def emit(self, kind: str, fields: "dict[str, Any]") -> None:
        ts = wall_ms()
        ok = clock_ok(ts, None, self.cfg.get("min_epoch_ms", 1735689600000))
        msg = self.builder.build(kind, fields, self.seq, ts, ok, self.mono_ms())
        self.seq += 1
        data = payloads.encode(msg)
        try:
            self.ring.append(data)
        except ValueError as exc:  # larger than a record: report it instead of losing it silently
            print("dropped", kind, exc)

    def heartbeat(self) -> None:
        fields = {"uptime_s": self.mono_ms() / 1000, "reboot_reason": _reset_cause(), "net_type": "wifi"}
        self.emit("heartbeat", heartbeat_fields(fields, self.ring.count, self.ring.dropped, 0))

    def connect(self) -> None:
        self.bdseq += 1
        ts = wall_ms()
        will = payloads.encode(payloads.death(self.device, ts, clock_ok(ts, None), self.bdseq, "lwt"))
        client = self.client_factory(self.device)
        client.set_last_will(topics.state_topic(self.device), will, retain=True, qos=1)
        client.set_callback(self.on_command)
        client.connect(clean_session=False)
        client.subscribe(topics.command_topic(self.device), qos=1)
        birth = self.builder.build(
            "birth",
            {
                "bdseq": self.bdseq,
                "device_kind": self.cfg.get("kind", "speaker_cluster"),
                "agent_version": "0.1.0-mpy",
                "heartbeat_s": self.policy.heartbeat_s,
                "platform": "micropython",
            },
            self.seq,
            ts,
            clock_ok(ts, None),
            self.mono_ms(),
        )
        self.seq += 1
        client.publish(topics.state_topic(self.device), payloads.encode(birth), retain=True, qos=1)
        self.client = client

    def drain(self, window: int = 8) -> None:
        # Oldest first; each publish returns after its PUBACK, then the record is popped.
        rows = self.ring.peek(window * 20)
        kinds = []
        for i, data in enumerate(rows):
            kind = "torn"
            if data:
                try:  # noqa: SIM105 -- MicroPython has no contextlib by default
                    kind = json.loads(data)["kind"]
                except ValueError:
                    pass
            kinds.append((i, kind, len(data)))
        for group in plan_sends(kinds, self.ring.count, 50, 20, 16384)[:window]:
            items = [rows[i] for i in group if rows[i]]
            if len(items) == 1:
                msg = json.loads(items[0])
                self.client.publish(topics.topic_for(msg), items[0], qos=1)
            elif items:
                self.client.publish(topics.batch_topic(self.device), batch_payload(self.device, items), qos=1)
            self.ring.pop(len(group))

    def on_command(self, topic: bytes, data: bytes) -> None:
        cid = payloads.command_id_of(data) or "unknown"
        try:
            cmd = payloads.decode(data)
        except ValueError as exc:
            self.emit("result", result_fields(cid, "unknown", False, str(exc), {}))
            return
        if cmd["cmd"] == "report_now":
            self.policy.force()
            self.emit("result", result_fields(cid, cmd["cmd"], True, None, {}))
        else:
            self.emit("result", result_fields(cid, cmd["cmd"], False, "not supported on this board", {}))

    def run(self) -> None:
        backoff = 1
        while True:
            now = self.mono_ms() / 1000
            if self.policy.heartbeat_due(now):
                self.heartbeat()
                self.policy.heartbeat_sent(now)
            try:
                if self.client is None:
                    self.connect()
                    backoff = 1
                self.client.check_msg()
                self.drain()
            except OSError as exc:
                print("mqtt:", exc)
                self.client = None
                time.sleep(backoff)
                backoff = min(backoff * 2, 60)
            time.sleep(self.cfg.get("poll_s", 1))


def _reset_cause() -> str:
    if machine is None:
        return "unknown"
    cause = machine.reset_cause()
    if cause == machine.PWRON_RESET:
        return "power_loss"
    if cause in (machine.WDT_RESET,):
        return "watchdog"
    if cause == machine.SOFT_RESET:
        return "clean"
    return "unknown"


def umqtt_factory(cfg: "dict[str, Any]") -> "Any":
    from umqtt.simple import MQTTClient

    def make(device: str) -> "Any":
        return MQTTClient(
            device,
            cfg["mqtt_host"],
            port=cfg.get("mqtt_port", 1883),
            user=cfg.get("mqtt_username"),
            password=cfg.get("mqtt_password"),
            keepalive=cfg.get("keepalive_s", 30),
            ssl=cfg.get("mqtt_tls", False),
        )

    return make


if machine is not None and __name__ == "__main__":
    _cfg = load_config()
    Agent(_cfg, umqtt_factory(_cfg)).run()
