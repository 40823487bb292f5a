"""What a device sends cannot corrupt storage: escaped tags, stable field types, bounded
integers, outlier-proof time anchors, and the small guards around them (real InfluxDB
where the database is the judge)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from backend.config import load_config
from backend.influx import InfluxClient, rows
from backend.ingest.placement import ClockPlacer
from backend.ingest.points import MessageRejected, message_lines
from backend.ingest.service import retry_delay
from protocols import payloads, topics
from protocols.errors import InvalidPayload
from protocols.examples import EXAMPLES
from tests.integrity_support import registry
from tests.services_fixtures import InfluxDatabase

NOW_MS = (int(time.time()) // 60 - 30) * 60_000
DEVICES = ["loa-a", "loa-b"]


def _msg(kind: str, device: str, seq: int, **changes: Any) -> dict[str, Any]:
    msg = dict(EXAMPLES[kind], device=device, seq=seq, boot_id="b1", ts=NOW_MS + seq, mono_ms=10_000 + seq)
    msg.update(changes)
    return msg


def _lines(msg: dict[str, Any], placer: ClockPlacer | None = None) -> list[str]:
    data = payloads.encode(msg)
    return message_lines(
        topics.topic_for(msg),
        data,
        NOW_MS + 1000,
        registry=registry(DEVICES),
        placer=placer or ClockPlacer(),
        sequenced=[],
    )


async def _write_and_count(influx_db: InfluxDatabase, lines: list[str], query: str) -> list[dict[str, Any]]:
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        for one in lines:  # one at a time: a refused point must not hide another
            await influx.write([one], precision="ns")
        return rows(await influx.query(query))


async def test_newline_in_an_event_code_cannot_add_a_point_elsewhere(influx_db: InfluxDatabase) -> None:
    hostile = "dead_air\nforged,device=loa-b value=1 1"
    lines = _lines(_msg("event", "loa-a", 1, code=hostile))
    assert len(lines) == 1
    assert "\n" not in lines[0]
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        await influx.write(lines, precision="ns")
        measurements = [r["name"] for r in rows(await influx.query("SHOW MEASUREMENTS"))]
        stored = rows(await influx.query('SELECT "seq", "code" FROM "event"'))
    assert measurements == ["event"]
    assert [r["code"] for r in stored] == ["dead_air?forged,device=loa-b value=1 1"]


@pytest.mark.parametrize("cmd", ["a b", "a,b", "a=b", 'a"b', "a\\", "a\\,b\\\\", "tôn\r", "x" * 32])
async def test_every_separator_in_a_tag_is_stored_by_the_database(
    cmd: str, influx_db: InfluxDatabase
) -> None:
    result = _msg("result", "loa-a", 1, cmd=cmd)
    (one,) = _lines(result)
    assert one.startswith("result,")
    assert "\n" not in one
    assert "\r" not in one
    stored = await _write_and_count(influx_db, [one], 'SELECT "seq" FROM "result"')
    assert [r["seq"] for r in stored] == [1]


async def test_a_string_result_from_one_device_does_not_poison_anothers_numbers(
    influx_db: InfluxDatabase,
) -> None:
    lines = _lines(_msg("result", "loa-a", 1, measured={"level": "loud", "ok_flag": True}))
    lines += [_lines(_msg("result", "loa-b", seq, measured={"level": -12.5 + seq}))[0] for seq in range(3)]
    stored = await _write_and_count(influx_db, lines, 'SELECT "seq", "device" FROM "result"')
    assert sorted((r["device"], r["seq"]) for r in stored) == [
        ("loa-a", 1),
        ("loa-b", 0),
        ("loa-b", 1),
        ("loa-b", 2),
    ]


@pytest.mark.parametrize(
    "key", ["bad key", "a.b", "a=b", "x\ny", "", "k" * 65, "măt"], ids=lambda k: repr(k)[:12]
)
def test_result_keys_that_cannot_be_field_names_are_refused(key: str) -> None:
    with pytest.raises(InvalidPayload, match="key"):
        payloads.validate(_msg("result", "loa-a", 1, measured={key: 1}))


def test_integers_beyond_what_the_database_holds_are_refused() -> None:
    with pytest.raises(InvalidPayload, match="queue_depth must be <="):
        payloads.validate(_msg("heartbeat", "loa-a", 1, queue_depth=2**70))
    with pytest.raises(InvalidPayload, match="out of range"):
        payloads.validate(_msg("result", "loa-a", 1, measured={"n": 2**70}))


@pytest.mark.parametrize("kind", [["heartbeat"], {"k": 1}, 3, None, True])
def test_a_kind_of_the_wrong_type_raises_the_documented_error(kind: Any) -> None:
    with pytest.raises(InvalidPayload, match=r"message\.kind must be one of"):
        payloads.validate(dict(EXAMPLES["heartbeat"], kind=kind))


def test_one_reading_with_a_wild_mono_ms_does_not_poison_its_boot() -> None:
    placer = ClockPlacer()
    received = NOW_MS + 1000
    placer.observe("loa-a", "b1", received - 10_000, received, live=True)
    poison = _msg("heartbeat", "loa-a", 5, mono_ms=2**53 - 1)
    placer.observe("loa-a", "b1", received - poison["mono_ms"], received, live=True)
    later = [
        _msg("heartbeat", "loa-a", 6 + i, mono_ms=10_000 + i * 1000, ts=NOW_MS + i * 1000) for i in range(20)
    ]
    for msg in later:
        placer.observe("loa-a", "b1", received + 1 - msg["mono_ms"], received + 1, live=True)
    assert [placer.place(m) for m in later] == [(m["ts"], "device") for m in later]
    assert placer.outliers >= 1


def test_the_poisoning_reading_itself_is_quarantined_not_refused_by_the_database() -> None:
    placer = ClockPlacer()
    _lines(_msg("heartbeat", "loa-a", 1), placer)
    with pytest.raises(MessageRejected) as refused:
        _lines(_msg("heartbeat", "loa-a", 2, mono_ms=2**53 - 1, clock_ok=False), placer)
    assert refused.value.reason == "bad_time"
    assert refused.value.sequenced == [("loa-a", "b1", 2)]


def test_after_an_outage_two_live_readings_move_the_anchor_earlier() -> None:
    placer = ClockPlacer()
    boot = NOW_MS - 3_600_000
    # first delivery an hour late (a backlog), then live readings
    placer.observe("loa-a", "b1", boot + 3_600_000, NOW_MS, live=True)
    placer.observe("loa-a", "b1", boot + 50, NOW_MS, live=True)
    assert placer.anchor("loa-a", "b1") == boot + 3_600_000
    placer.observe("loa-a", "b1", boot + 40, NOW_MS + 1000, live=True)
    assert placer.anchor("loa-a", "b1") == boot + 50


def test_spool_limits_are_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "backend.toml"
    path.write_text('[spool]\ndir = "spool"\nmax_mb = 1.0\nmin_free_mb = 64.0\nsegment_bytes = 4096\n')
    spool = load_config(path).spool
    assert (spool.max_mb, spool.min_free_mb, spool.segment_bytes) == (1.0, 64.0, 4096)
    assert spool.dir == str(tmp_path / "spool")


def test_ingest_reconnects_back_off_until_a_session_lasts() -> None:
    delays = []
    delay = None
    for _ in range(8):  # sessions the broker ends at once
        delay = retry_delay(delay, 0.1, 30.0)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert retry_delay(30.0, 45.0, 30.0) == 0.5
