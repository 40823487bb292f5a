"""Fault drill with receipts: time to recover, and what the receipts cost.

* The drill (hil_tests/drill.py) with each subscription mode: agents publish every second
  while the broker is SIGKILLed (once while the ingest is down), the ingest is SIGKILLed
  and InfluxDB is down; the audit counts produced, stored, lost and duplicated readings,
  and the time from the last repair until every agent's queue is empty.
* Receipts on the wire: messages and payload bytes the backend published per reading in
  the drill, and per device and day at the shipped heartbeat (30 s) with the same ratio.
* CPU per message: the ingest's receipt work (collect, merge, encode) against the work it
  does for the message anyway (``message_lines``), in this process, same messages.
"""

from __future__ import annotations

import time
from typing import Any

from backend.ingest.placement import ClockPlacer
from backend.ingest.points import message_lines
from backend.ingest.receipts import ReceiptBook
from bench.common import say, table, workdir, write_result
from bench.messages import SimDevice, heartbeat
from hil_tests.drill import run_drill

HEARTBEATS_PER_DAY = 86_400 // 30


class _Registry:
    def __init__(self, devices: list[str]) -> None:
        self._devices = {d: _Device(d) for d in devices}

    def device(self, device_id: str) -> Any:
        return self._devices.get(device_id)


class _Device:
    def __init__(self, device_id: str) -> None:
        self.id = device_id
        self.kind = "speaker_cluster"
        self.commune = "trang-xa"
        self.hamlet = "Xóm 1"


def cpu_per_message(devices: int, per_device: int, flush_every: int) -> dict[str, float]:
    """Microseconds of CPU per message: message_lines (baseline) and receipt work."""
    sims = [SimDevice(f"vn-bench-loa-{i:04d}") for i in range(devices)]
    messages = []
    for n in range(per_device):
        for sim in sims:
            messages.append(sim.message("heartbeat", heartbeat(1000.0 + n)))
    registry = _Registry([s.device for s in sims])
    placer = ClockPlacer()
    now_ms = int(time.time() * 1000)
    started = time.process_time()
    for topic, data in messages:
        message_lines(topic, data, now_ms, registry=registry, placer=placer)
    baseline = time.process_time() - started
    placer = ClockPlacer()
    book = ReceiptBook()
    started = time.process_time()
    sent = 0
    for i, (topic, data) in enumerate(messages, 1):
        held: list[tuple[str, str, int]] = []
        message_lines(topic, data, now_ms, registry=registry, placer=placer, sequenced=held)
        book.add(held, [])
        if i % flush_every == 0:
            sent += len(book.take(now_ms))
    sent += len(book.take(now_ms))
    with_receipts = time.process_time() - started
    count = len(messages)
    return {
        "messages": count,
        "message_lines_us": round(baseline / count * 1e6, 2),
        "receipts_us": round((with_receipts - baseline) / count * 1e6, 2),
        "ratio": round((with_receipts - baseline) / baseline, 3),
        "receipts_sent": sent,
    }


def run(quick: bool) -> dict[str, Any]:
    """Run the drills and the CPU measurement; print tables; write bench/results/drill.json."""
    settings: dict[str, Any] = (
        {"devices": 3, "broker_kills": 2, "database_down_s": 10.0, "steady_s": 2.0}
        if quick
        else {"devices": 5, "broker_kills": 3, "database_down_s": 180.0, "steady_s": 5.0}
    )
    drills = {}
    for shared in (False, True):
        mode = "shared" if shared else "plain"
        say(f"drill: {mode} subscription, {settings}")
        with workdir(f"drill-{mode}") as root:
            report = run_drill(root, shared=shared, **settings)
        totals = report.audit.totals()
        per_reading = report.receipts / max(1, totals.get("produced", 0))
        drills[mode] = {
            "faults": report.faults,
            **totals,
            "recover_s": round(report.recover_s, 1),
            "duration_s": round(report.duration_s, 1),
            "receipts": report.receipts,
            "receipt_bytes": report.receipt_bytes,
            "receipts_per_reading": round(per_reading, 3),
            "bytes_per_receipt": round(report.receipt_bytes / max(1, report.receipts), 1),
            "receipts_per_device_day_at_30s": round(per_reading * HEARTBEATS_PER_DAY),
            "receipt_kb_per_device_day_at_30s": round(
                per_reading * HEARTBEATS_PER_DAY * report.receipt_bytes / max(1, report.receipts) / 1024, 1
            ),
        }
    table(
        "Fault drill: every reading accounted for",
        [
            "subscription",
            "produced",
            "stored",
            "lost",
            "duplicated",
            "recovered in (s)",
            "receipts per reading",
        ],
        [
            [
                m,
                d["produced"],
                d["stored"],
                d["lost"],
                d["duplicated"],
                d["recover_s"],
                d["receipts_per_reading"],
            ]
            for m, d in drills.items()
        ],
    )
    cpu = cpu_per_message(devices=100 if quick else 1000, per_device=20 if quick else 50, flush_every=500)
    table(
        "Receipts: CPU per message in the ingest",
        ["messages", "message_lines (us)", "receipt work (us)", "ratio"],
        [[cpu["messages"], cpu["message_lines_us"], cpu["receipts_us"], cpu["ratio"]]],
    )
    result = {"settings": settings, "drills": drills, "cpu": cpu}
    write_result("drill", quick, result)
    return result
