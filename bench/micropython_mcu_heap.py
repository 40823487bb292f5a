# Runs under MicroPython's unix port (bench/mcu_heap.py), not CPython: no __future__ import.
"""MicroPython heap of the MCU agent over one reporting cycle, from precompiled .mpy files.

One cycle: read a 1-s audio window at 16 kHz (PCM from memory), read the PZEM-004T (a
reply from memory), build heartbeat and audio messages into the flash ring, send them
(to a client that only takes the bytes), then take the backend's delivery receipt that
clears them from the ring. Prints one JSON line: ``after_imports``,
``after_agent`` (agent built, ring open), ``cycle_alloc`` (bytes allocated by one cycle,
collector off), ``peak_cycle_collector_off`` (in use at its end, nothing collected),
``peak_cycle_collector_on`` (most in use at any audio chunk or publish of the same cycle
with the collector running every 8 KiB), ``after_cycle`` (in use once collected).

The unix port is 64-bit: a pointer is 8 bytes, on an ESP32 4, so pointer-heavy objects
(tuples, dicts) take up to twice what they take on the board; byte buffers the same.
"""

import gc
import json
import math
import os
import sys
import time

gc.collect()
BEFORE = gc.mem_alloc()  # type: ignore[attr-defined]
from agent.micropython.mcu_agent import McuAgent  # noqa: E402
from protocols import modbus  # noqa: E402

gc.collect()
AFTER_IMPORTS = gc.mem_alloc()  # type: ignore[attr-defined]

RATE = 16000
_TONE = bytearray(RATE * 2)
for _i in range(RATE):
    _v = int(8000 * math.sin(2 * math.pi * 440 * _i / RATE))
    _TONE[2 * _i] = _v & 0xFF
    _TONE[2 * _i + 1] = (_v >> 8) & 0xFF
PCM = bytes(_TONE)
del _TONE
REPLY = modbus.build_pzem_response(
    1,
    {
        "voltage_v": 221.4,
        "current_a": 0.31,
        "power_w": 64.0,
        "energy_wh": 15230,
        "frequency_hz": 50.0,
        "power_factor": 0.9,
        "alarm": False,
    },
)


PEAK = [0]


def sample() -> None:
    """Note the heap in use (the collector runs often: see main)."""
    PEAK[0] = max(PEAK[0], gc.mem_alloc())  # type: ignore[attr-defined]


class MemoryBoard:
    platform = "micropython-unix"
    net_type = "wifi"
    audio_rate = RATE

    def __init__(self, flash: str) -> None:
        self.flash_dir = flash

    def ticks_ms(self) -> int:
        return int(time.ticks_ms())  # type: ignore[attr-defined]

    def ticks_diff(self, a: int, b: int) -> int:
        return int(time.ticks_diff(a, b))  # type: ignore[attr-defined]

    def wall_ms(self) -> int:
        return int(time.time() * 1000)

    def reset_cause(self) -> str:
        return "power_loss"

    def watchdog(self, timeout_ms: int) -> "MemoryBoard":
        return self

    def feed(self) -> None:
        pass

    def signal_dbm(self) -> float:
        return -67.0

    def network_up(self) -> bool:
        return True

    def read_audio(self, nbytes: int) -> bytes:
        sample()
        return PCM[:nbytes]

    def uart_exchange(self, request: bytes, find: object, timeout_ms: int) -> bytes:
        return REPLY


class SinkClient:
    sent = 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        sample()
        self.sent += len(payload)

    def check_msg(self) -> None:
        pass


def main() -> None:
    flash = sys.argv[1]
    agent = McuAgent({"device": "vn-trangxa-loa-03", "window_s": 1.0, "ring_records": 64}, MemoryBoard(flash))
    agent.client = SinkClient()
    receipt = json.dumps(
        {
            "v": 1,
            "kind": "receipt",
            "device": agent.device,
            "boot_id": agent.builder.boot_id,
            "stored": [[0, 1000]],
            "rejected": [],
            "ts": 1764126000000,
        }
    ).encode()
    topic = agent.reporter.receipt_topic
    gc.collect()
    after_agent = gc.mem_alloc()  # type: ignore[attr-defined]
    agent.step()  # warm-up: first-use allocations (policy tables, file buffers)
    agent.on_message(topic, receipt)
    agent.policy.force()
    gc.collect()
    start = gc.mem_alloc()  # type: ignore[attr-defined]
    gc.disable()
    agent.measure(force=True)
    agent.serve_mqtt()
    agent.on_message(topic, receipt)
    peak = gc.mem_alloc()  # type: ignore[attr-defined]
    gc.enable()
    gc.collect()
    after = gc.mem_alloc()  # type: ignore[attr-defined]
    assert agent.ring.count == 0, agent.ring.count
    # The same cycle with the collector on and running every 8 KiB allocated, as a busy
    # board's would: the most the heap held at any audio chunk or publish.
    agent.policy.force()
    gc.threshold(8192)  # type: ignore[attr-defined]
    PEAK[0] = 0
    agent.measure(force=True)
    agent.serve_mqtt()
    agent.on_message(topic, receipt)
    gc.threshold(-1)  # type: ignore[attr-defined]
    report = {
        "before_imports": BEFORE,
        "after_imports": AFTER_IMPORTS,
        "after_agent": after_agent,
        "cycle_alloc": peak - start,
        "peak_cycle_collector_off": peak,
        "peak_cycle_collector_on": PEAK[0],
        "after_cycle": after,
        "pcm_bytes": len(PCM),
        "sent_bytes": agent.client.sent,
    }
    print(json.dumps(report))
    for name in os.listdir(flash):
        os.remove(flash + "/" + name)


main()
