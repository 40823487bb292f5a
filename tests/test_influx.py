"""The ingest's InfluxDB side against a real InfluxDB 1.6: schema types, refusals, lost database."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from backend.influx import InfluxClient, InfluxError, InfluxUnavailable, rows
from backend.ingest import ClockPlacer, DurableWriter, IngestStats, message_lines
from backend.localservices import free_port
from backend.registry import parse_registry
from backend.spool import Spool
from protocols import payloads, topics
from protocols.examples import EXAMPLES

REGISTRY = parse_registry(
    "district: Võ Nhai\ncommunes:\n  - {id: trang-xa, name: Tràng Xá, type: commune, radio_system: ip}\n"
    "devices:\n  - {id: vn-trangxa-loa-03, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm Đồng Mỏ}\n"
)


def _lines_of(msg: dict[str, Any]) -> list[str]:
    return message_lines(
        topics.topic_for(msg),
        payloads.encode(msg),
        1_764_126_001_000,
        registry=REGISTRY,
        placer=ClockPlacer(),
    )


async def _field_types(influx: InfluxClient, measurement: str) -> dict[str, str]:
    return {
        r["fieldKey"]: r["fieldType"]
        for r in rows(await influx.query(f'SHOW FIELD KEYS FROM "{measurement}"'))
    }


async def test_every_payload_kind_is_accepted_with_schema_types(influx_db: Any) -> None:
    lines = [
        line
        for kind in ("heartbeat", "audio", "display", "event", "result")
        for line in _lines_of(EXAMPLES[kind])
    ]
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        assert await influx.write(lines, precision="ns") == 5
        heartbeat = await _field_types(influx, "heartbeat")
        assert heartbeat["signal_dbm"] == "float"
        assert heartbeat["queue_depth"] == "integer"
        assert heartbeat["placed"] == "string"
        assert heartbeat["clock_ok"] == "boolean"
        assert (await _field_types(influx, "result"))["measured_freq_hz"] == "float"
        [event] = rows(await influx.query("SELECT * FROM event"))
        assert (event["event"], event["code"], event["commune"]) == ("fault_start", "dead_air", "trang-xa")
        assert event["time"] == 1_764_126_000_000
        # A later reading with a fractional value of an integer-looking field must not conflict.
        later = copy.deepcopy(EXAMPLES["heartbeat"])
        later.update(seq=1043, ts=1_764_126_030_000, signal_dbm=-87.5, uptime_s=86430)
        assert await influx.write(_lines_of(later), precision="ns") == 1


async def test_unreachable_influx_is_unavailable_and_a_bad_line_is_refused(influx_db: Any) -> None:
    async with InfluxClient(f"http://127.0.0.1:{free_port()}", "tincoso", timeout=2) as nowhere:
        with pytest.raises(InfluxUnavailable, match="unreachable"):
            await nowhere.write(["audio rms_dbfs=-18.4 1"])
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        with pytest.raises(InfluxError, match="HTTP 400"):
            await influx.write(["audio rms_dbfs=-18.4 not-a-timestamp"])


async def _run_writer(writer: DurableWriter) -> asyncio.Task[None]:
    assert await writer.connect()
    return asyncio.create_task(writer.run())


async def _wait(predicate: Any, limit_s: float = 15.0) -> Any:
    deadline = time.monotonic() + limit_s
    while not (result := await predicate()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return result


async def test_a_refused_point_is_isolated_and_the_rest_of_the_batch_is_written(
    influx_db: Any, tmp_path: Path
) -> None:
    stats = IngestStats()
    acked: list[int] = []
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        await influx.write(['result,device=vn-trangxa-loa-03 measured_note="ok" 1000'])
        spool = Spool(tmp_path)
        writer = DurableWriter(influx, spool, stats, batch_ms=20)
        task = await _run_writer(writer)
        good = [f'result,device=vn-trangxa-loa-03 measured_note="ok",seq={i}i {2000 + i}' for i in range(7)]
        bad = "result,device=vn-trangxa-loa-03 measured_note=12.5 5000"  # was a string: type conflict
        writer.add([*good[:3], bad, *good[3:]], lambda: acked.append(1))
        await _wait(lambda: _true(bool(acked)))
        await _stop(task)
        found = rows(await influx.query("SELECT count(measured_note) FROM result"))
    spool.close()
    assert found[0]["count"] == 8
    assert stats.rejected == 1
    assert stats.written == 7


async def test_a_dropped_database_is_recreated_and_nothing_is_lost(influx_db: Any, tmp_path: Path) -> None:
    stats = IngestStats()
    spool = Spool(tmp_path)
    try:
        async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
            writer = DurableWriter(influx, spool, stats, batch_ms=20)
            task = await _run_writer(writer)
            await influx.query(f'DROP DATABASE "{influx_db.name}"')
            acked: list[int] = []
            for i in range(5):
                writer.add(
                    [f"audio,device=vn-trangxa-loa-03 rms_dbfs=-18.4,seq={i}i {1000 + i}"],
                    lambda: acked.append(1),
                )
            await _wait(lambda: _count(influx, 5))
            # The drainer commits the spool after the write lands: wait for that too.
            await _wait(lambda: _true(stats.drained == 5))
            await _stop(task)
    finally:
        spool.close()
    assert len(acked) == 5
    assert stats.spooled == 5
    assert stats.drained == 5


async def _count(influx: InfluxClient, n: int) -> bool:
    try:
        found = rows(await influx.query("SELECT count(seq) FROM audio"))
    except InfluxError:
        return False
    return bool(found) and found[0]["count"] == n


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _true(value: bool) -> bool:
    return value


def test_schema_types_helper_reads_influx_answers() -> None:
    # SHOW FIELD KEYS answers with these columns; guard against a silently empty mapping.
    series = json.loads('[{"name":"x","columns":["fieldKey","fieldType"],"values":[["a","float"]]}]')
    assert {r["fieldKey"]: r["fieldType"] for r in rows(series)} == {"a": "float"}
