"""Readings of one device and kind made in the same millisecond are two points, and a replay
of a reading is still one (real Mosquitto, the real ingest, real InfluxDB, the sequence audit
of hil_tests/audit.py).

InfluxDB keeps one point per series and timestamp: with millisecond timestamps the second
reading of a millisecond overwrote the first. Ingest stores nanoseconds with the seq in the
sub-millisecond digits (protocols.stored_data.stored_ns), so a replay of the same (boot_id,
seq) still lands on its twin. The strict xfail variant stores without the seq digits.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.config import config_from_dict
from backend.influx import InfluxClient, rows
from backend.ingest import IngestStats
from backend.ingest import points as ingest_points
from backend.ingest.writer import DurableWriter, record_lines, spool_record
from backend.localservices import LocalMosquitto
from backend.registry import parse_registry
from backend.rollups import backfill
from backend.spool import Spool
from hil_tests.audit import compare, query_stored_async
from protocols import payloads
from protocols.examples import EXAMPLES
from protocols.stored_data import NS_PER_MS
from tests.integrity_support import BASE_TS
from tests.test_ingest_integration import (
    DEVICES,
    REGISTRY_YAML,
    Publisher,
    _config,
    _wait_for,
    running_ingest,
)

pytestmark = pytest.mark.slow

BOOT = "b-same-ms"
TS = BASE_TS + 17_123  # one millisecond for every reading below
DEVICE = DEVICES[0]


class ReadingsOverwritten(AssertionError):
    """Readings made in one millisecond were not all stored (or a replay was doubled)."""


def _reading(kind: str, seq: int, **changes: Any) -> dict[str, Any]:
    msg = dict(EXAMPLES[kind], device=DEVICE, boot_id=BOOT, seq=seq, ts=TS, clock_ok=True)
    msg.update(mono_ms=600_000, **changes)
    return payloads.validate(msg)


# Two of each stored kind in the same millisecond; the audio levels differ.
READINGS = [
    _reading("heartbeat", 1),
    _reading("heartbeat", 2, uptime_s=86_401),
    _reading("audio", 3, rms_dbfs=-18.0),
    _reading("audio", 4, rms_dbfs=-30.0),
    _reading("event", 5),
    _reading("event", 6),
]


async def _messages_in(service: Any, n: int) -> bool:
    return bool(service.stats.messages_in >= n)


def _without_seq_digits(ts_ms: int, seq: int) -> int:
    return ts_ms * NS_PER_MS


@pytest.mark.parametrize(
    "seq_digits",
    [
        True,
        pytest.param(
            False,
            marks=pytest.mark.xfail(
                strict=True, raises=ReadingsOverwritten, reason="millisecond timestamps overwrite"
            ),
        ),
    ],
    ids=["seq-in-ns", "ms-only"],
)
async def test_readings_in_one_millisecond_are_all_stored_and_a_replay_once(
    seq_digits: bool,
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not seq_digits:
        monkeypatch.setattr(ingest_points, "stored_ns", _without_seq_digits)
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(_config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root))
    publisher = Publisher(mosquitto, root)
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)) as service,
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        for msg in READINGS:
            publisher.send(msg)
        # What an agent resends when a receipt is late: a batch of unreceipted readings, and
        # a QoS-1 duplicate after a lost PUBACK.
        publisher.send(payloads.batch(DEVICE, [READINGS[0], READINGS[2], READINGS[4]]))
        publisher.send(READINGS[3])
        await asyncio.to_thread(publisher.flush)
        await _wait_for(lambda: _messages_in(service, len(READINGS) + 2), what="every delivery")
        assert service.writer is not None
        await service.writer.flush()  # every handled message is durable once this returns

        stored = await query_stored_async(influx, devices=[DEVICE])
        result = compare(stored, produced={DEVICE: {BOOT: range(1, len(READINGS) + 1)}})
        times = rows(
            await influx.query(f"SELECT \"seq\" FROM heartbeat,audio,event WHERE device = '{DEVICE}'")
        )
        await backfill(influx, TS - 3_600_000, TS + 3_600_000, levels=("1m",))
        minute = rows(
            await influx.query(
                f'SELECT "samples", "sounded_s", "rms_dbfs" FROM "rollup_1m"."audio" '
                f"WHERE device = '{DEVICE}'"
            )
        )
    publisher.close()

    totals = result.totals()
    if (totals["produced"], totals["stored"], totals["lost"], totals["duplicated"]) != (6, 6, 0, 0):
        raise ReadingsOverwritten(f"same-millisecond readings:\n{result}")
    assert result.clean, result
    # Every consumer reads milliseconds (epoch=ms): the sub-millisecond digits change no time.
    assert sorted(r["seq"] for r in times) == [1, 2, 3, 4, 5, 6]
    assert {r["time"] for r in times} == {TS}
    # The 1-minute rollup (the continuous queries' SELECT) counts both levels of the millisecond.
    [rolled] = minute
    assert rolled["samples"] == 2
    assert rolled["sounded_s"] == 20.0
    assert rolled["rms_dbfs"] == pytest.approx(-24.0)


def test_spool_records_carry_their_precision_and_old_ones_are_read_as_milliseconds() -> None:
    lines = [
        "audio,device=d rms_dbfs=-20 1764126000000000007",
        "audio,device=d rms_dbfs=-21 1764126000000000008",
    ]
    assert spool_record(lines, "ns").startswith(b"#precision=ns\n")
    assert record_lines(spool_record(lines, "ns"), "ns") == lines
    assert record_lines(spool_record(lines, "ns"), "ms") == [
        "audio,device=d rms_dbfs=-20 1764126000000",
        "audio,device=d rms_dbfs=-21 1764126000000",
    ]
    # A spool written before nanoseconds: no mark, milliseconds.
    assert record_lines(b"audio,device=d rms_dbfs=-20 1764126000000", "ns") == [
        "audio,device=d rms_dbfs=-20 1764126000000000000"
    ]


async def test_a_spool_from_before_nanoseconds_drains_at_its_milliseconds(
    influx_db: Any, tmp_path: Path
) -> None:
    spool = Spool(tmp_path)
    spool.append(f"audio,device=d rms_dbfs=-20,seq=1i {TS}".encode())  # the old ingest's record
    try:
        async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
            writer = DurableWriter(influx, spool, IngestStats(), batch_ms=20, precision="ns")
            assert await writer.connect()
            task = asyncio.create_task(writer.run())
            try:
                writer.add([f"audio,device=d rms_dbfs=-21,seq=2i {TS * NS_PER_MS + 2}"])
                await writer.flush()

                async def both() -> list[dict[str, Any]] | None:
                    found = rows(await influx.query('SELECT "seq" FROM "audio" WHERE device = \'d\''))
                    return found if len(found) == 2 else None

                stored = await _wait_for(both, what="the old spool record and a new point")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        spool.close()
    assert [(r["seq"], r["time"]) for r in stored] == [(1, TS), (2, TS)]
