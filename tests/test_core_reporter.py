"""The reporting loop's decisions (agent/core/reporter.py) under CPython, with the Linux
agent's SQLite queue and with the MCU agent's flash ring as the store (the same Reporter
runs under MicroPython in tests/micropython/mp_reporter.py and mcu_outbox.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.core.outbox import RingOutbox
from agent.core.policy import ReportingPolicy
from agent.core.reporter import Reporter
from agent.core.ring import RingBuffer
from agent.queue import DurableQueue
from protocols import payloads
from protocols.errors import InvalidPayload

DEVICE = "vn-trangxa-loa-05"
BOOT = "d" * 16


def _reporter(store: object, receipts: bool = True, threshold: int = 50) -> Reporter:
    policy = ReportingPolicy(DEVICE, 30, 300, now_s=0.0)
    return Reporter(DEVICE, policy, store, receipts=receipts, batch_threshold=threshold, batch_max_items=20)


def _event(seq: int) -> tuple[str, str, bytes]:
    env = payloads.envelope(DEVICE, 1764126000000 + seq, True, seq, BOOT, seq)
    msg = payloads.build("event", env, {"event": "fault_start", "code": "dead_air"})
    return f"tincoso/v1/{DEVICE}/event", "event", payloads.encode(msg)


def _receipt(first: int, last: int, device: str = DEVICE) -> bytes:
    body = {"v": 1, "kind": "receipt", "device": device, "boot_id": BOOT, "stored": [[first, last]]}
    body.update({"rejected": [], "ts": 1764126000000})
    return json.dumps(body).encode()


def _send(rep: Reporter, rows: list[tuple[object, str | None, str | None, bytes]], now: float) -> list[str]:
    topics = []
    for keys, topic, _data in rep.publications(rows, len(rows), 8):
        topics.append(topic or "")
        rep.published(keys, now)
    return topics


@pytest.mark.parametrize("receipts", [True, False])
def test_sqlite_queue_keeps_a_reading_until_its_receipt_or_its_puback_without(
    tmp_path: Path, receipts: bool
) -> None:
    queue = DurableQueue(tmp_path / "q.db", BOOT)
    for _ in range(4):
        queue.append(_event)
    rep = _reporter(queue, receipts)
    rows = queue.peek(10)
    assert _send(rep, [(r.id, r.topic, r.kind, r.payload) for r in rows], 100.0) == [rows[0].topic] * 4
    if not receipts:
        assert queue.depth == 0
        return
    assert queue.depth == 4
    assert queue.in_flight == 4
    assert rep.on_receipt(_receipt(0, 2)) == 3
    assert queue.depth == 1
    with pytest.raises(InvalidPayload, match="not 'vn-trangxa-loa-05'"):
        rep.on_receipt(_receipt(3, 3, "vn-other-loa-01"))
    assert (rep.receipts_received, rep.receipts_invalid) == (1, 1)
    rep.connected()  # a new connection: the unreceipted reading goes again
    assert queue.in_flight == 0
    assert queue.unsent == 1
    queue.close()


def test_flash_ring_under_cpython_matches_the_sqlite_queue(tmp_path: Path) -> None:
    ring = RingBuffer(str(tmp_path / "queue.ring"), 8, 512)
    box = RingOutbox(ring, 5000)
    for seq in range(4):
        box.append(_event(seq)[2])
    rep = _reporter(box)
    rows = box.unsent(8)
    assert _send(rep, [(d, None, None, d) for d in rows], 1000) == [f"tincoso/v1/{DEVICE}/event"] * 4
    assert box.depth == 4
    assert rep.on_receipt(_receipt(0, 2)) == 3
    assert box.depth == 1
    assert not box.check_timeout(5999)
    assert box.check_timeout(6000)
    assert box.unsent(8) == [rows[3]]
    ring.close()


def test_a_long_backlog_is_batched_in_order() -> None:
    rep = _reporter(None, threshold=2)
    rows: list[tuple[object, str | None, str | None, bytes]] = [(i, *_event(i)) for i in range(5)]
    [(keys, topic, data)] = rep.publications(rows, 60, 8)
    assert keys == [0, 1, 2, 3, 4]
    assert topic == f"tincoso/v1/{DEVICE}/batch"
    assert data is not None
    assert [m["seq"] for m in json.loads(data)["items"]] == [0, 1, 2, 3, 4]


def test_probe_fault_edges_and_the_heartbeat_counter() -> None:
    rep = _reporter(None)
    assert rep.probe_failed("display", "timeout") == {
        "event": "fault_start",
        "code": "probe.display",
        "detail": "timeout",
    }
    assert rep.probe_failed("display", "timeout") is None
    [(kind, beat)] = rep.due({"heartbeat": {"uptime_s": 1.0}}, 0.0, False, 0, 0)
    assert kind == "heartbeat"
    assert beat["probe_faults"] == 1
    assert rep.probe_read("display") == {"event": "fault_end", "code": "probe.display"}
    assert rep.probe_faults == 0
