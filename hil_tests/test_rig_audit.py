"""The audit finds lost, duplicated, late and unexpected seqs in a hand-made InfluxDB dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.influx import line
from backend.localservices import LocalMosquitto
from hil_tests.audit import (
    CapturedMessage,
    MqttCapture,
    audit,
    compare,
    query_stored,
    read_agent_queue,
)
from tests.services_fixtures import InfluxDatabase

T0 = 1_764_126_000_000
TAGS = {"device": "vn-trangxa-loa-03", "commune": "trang-xa", "hamlet": "Na Hoc", "kind": "speaker_cluster"}


def _write(db: InfluxDatabase, lines: list[str]) -> None:
    response = httpx.post(
        db.base_url + "/write", params={"db": db.name, "precision": "ms"}, content="\n".join(lines)
    )
    assert response.status_code == 204, response.text


def _captured(
    seq: int, kind: str = "heartbeat", *, ts: int = T0, received_at: float | None = None
) -> CapturedMessage:
    body = {"device": TAGS["device"], "kind": kind, "boot_id": "b1", "seq": seq, "ts": ts, "clock_ok": True}
    return CapturedMessage(
        TAGS["device"], kind, "b1", seq, ts, True, received_at if received_at is not None else ts / 1000, body
    )


def _hand_made_dataset(db: InfluxDatabase) -> None:
    lines = [
        line("heartbeat", TAGS, {"seq": s, "boot_id": "b1", "uptime_s": 1.0}, T0 + s * 1000) for s in range(4)
    ]
    lines += [
        line("audio", TAGS, {"seq": s, "boot_id": "b1", "rms_dbfs": -18.0}, T0 + s * 1000) for s in (4, 5, 6)
    ]
    lines.append(
        line(
            "event",
            {**TAGS, "event": "fault_start", "code": "dead_air"},
            {"seq": 7, "boot_id": "b1"},
            T0 + 7000,
        )
    )
    # Seq 3 again, placed at another time: a replay the backend failed to recognise.
    lines.append(line("heartbeat", TAGS, {"seq": 3, "boot_id": "b1", "uptime_s": 1.0}, T0 + 60_000))
    # `result` points carry no boot_id; the audit places them in the boot that produced the seq.
    lines.append(line("result", {**TAGS, "cmd": "report_now"}, {"seq": 8, "id": "c1", "ok": True}, T0 + 8000))
    other = {**TAGS, "device": "vn-trangxa-loa-04"}
    lines += [
        line("heartbeat", other, {"seq": s, "boot_id": "b2", "uptime_s": 1.0}, T0 + s * 1000)
        for s in (0, 1, 2, 5)
    ]
    _write(db, lines)


def test_audit_counts_lost_duplicated_and_unexpected_seqs(influx_db: InfluxDatabase) -> None:
    _hand_made_dataset(influx_db)
    produced = {"vn-trangxa-loa-03": {"b1": range(11)}, "vn-trangxa-loa-04": {"b2": range(3)}}
    # The broker saw seq 9 (so ingest lost it) and the birth took seq 10 (never stored by seq).
    captured = [_captured(9), _captured(10, "birth")]

    result = compare(query_stored(influx_db.base_url, influx_db.name), produced=produced, captured=captured)

    loa03, loa04 = result.devices["vn-trangxa-loa-03"], result.devices["vn-trangxa-loa-04"]
    assert loa03.produced == 10
    assert loa03.stored == 9
    assert loa03.lost == [("b1", 9)]
    assert loa03.lost_in_backend == [("b1", 9)]
    assert loa03.duplicated == [("b1", 3)]
    assert loa03.unexpected == []
    assert loa04.lost == []
    assert loa04.unexpected == [("b2", 5)]
    assert result.totals()["lost"] == 1
    assert not result.clean
    assert "vn-trangxa-loa-03" in str(result)


def test_audit_without_capture_counts_birth_seq_as_lost_before_broker(influx_db: InfluxDatabase) -> None:
    _hand_made_dataset(influx_db)
    result = audit(
        influx_db.base_url, influx_db.name, produced={"vn-trangxa-loa-03": {"b1": range(11)}}, echo=False
    )
    loa03 = result.devices["vn-trangxa-loa-03"]
    assert loa03.lost_before_broker == [("b1", 9), ("b1", 10)]
    assert loa03.lost_in_backend == []
    assert set(result.devices) == {"vn-trangxa-loa-03"}


def test_late_is_first_arrival_long_after_device_time() -> None:
    captured = [
        _captured(0, received_at=T0 / 1000 + 1),
        _captured(1, received_at=T0 / 1000 + 600),  # replayed from the queue after an outage
        _captured(1, received_at=T0 / 1000 + 900),  # QoS 1 duplicate of the same message
    ]
    result = compare([], captured=captured, late_after_s=60)
    assert result.devices["vn-trangxa-loa-03"].late == [("b1", 1)]
    assert result.devices["vn-trangxa-loa-03"].lost_in_backend == [("b1", 0), ("b1", 1)]


def test_capture_unpacks_batches(mosquitto: LocalMosquitto) -> None:
    items = [
        {
            "device": "vn-trangxa-loa-03",
            "kind": "heartbeat",
            "boot_id": "b1",
            "seq": s,
            "ts": T0,
            "clock_ok": True,
        }
        for s in range(3)
    ]
    with MqttCapture("127.0.0.1", mosquitto.port, client_id=f"audit-test-{time.monotonic_ns()}") as capture:
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2)
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        batch = {"v": 1, "kind": "batch", "device": "vn-trangxa-loa-03", "items": items}
        publisher.publish("tincoso/v1/vn-trangxa-loa-03/batch", json.dumps(batch), qos=1).wait_for_publish(5)
        publisher.publish("tincoso/v1/vn-trangxa-loa-03/event", b"not json", qos=1).wait_for_publish(5)
        publisher.disconnect()
        publisher.loop_stop()
        deadline = time.monotonic() + 5
        while (
            len([m for m in capture.snapshot() if m.device == "vn-trangxa-loa-03" and m.kind == "heartbeat"])
            < 3
            or capture.invalid < 1
        ) and time.monotonic() < deadline:
            time.sleep(0.02)
    # Retained births of other tests' devices (this id too) arrive as well: look at these heartbeats only.
    ours = [m for m in capture.snapshot() if m.device == "vn-trangxa-loa-03" and m.kind == "heartbeat"]
    assert sorted(m.seq or 0 for m in ours) == [0, 1, 2]
    assert capture.invalid == 1


def test_read_agent_queue_reports_the_high_water_mark(tmp_path: Path) -> None:
    queue_module = pytest.importorskip("agent.queue", reason="agent.queue is not written yet")
    queue = queue_module.DurableQueue(tmp_path / "queue.db", boot_id="b1", max_messages=10)
    for _ in range(3):
        queue.append(lambda seq: ("t", "heartbeat", b"{}"))
    queue.take_seq()
    mark = read_agent_queue(tmp_path / "queue.db")
    queue.close()
    assert mark is not None
    assert (mark.boot_id, mark.next_seq, mark.dropped, mark.depth) == ("b1", 4, 0, 3)
