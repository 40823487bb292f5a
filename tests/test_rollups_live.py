"""The rollups fill themselves: continuous queries and the late-data recompute fire on their own.

Nothing here calls ``backfill``. The real ingest stores, through the real broker, readings
of the last minutes (live) and a bulletin replayed a day late (a batch); then the test only
waits. InfluxDB's continuous query of the 1-minute level fires at the next minute boundary
on its own schedule and rolls the live minutes up; the ingest's debounced late-data task
recomputes the replayed bulletin's minutes, hour and day. Each level is then compared with
the same aggregate computed from ``raw``: per minute, per hour, per Vietnam day.

The hourly and daily continuous queries fire at the top of each hour, too rarely to wait
for in a test; the live hour reaches them then (their statements are the SELECTs that the
recompute runs, checked here on the replayed day).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.config import config_from_dict
from backend.influx import InfluxClient, rows
from backend.localservices import LocalMosquitto
from backend.registry import parse_registry
from protocols import payloads
from protocols.stored_data import ENERGY_MEAN_DBFS, local_day_start_s, sounded_where
from tests.test_ingest_integration import (
    DEVICES,
    REGISTRY_YAML,
    Publisher,
    _config,
    _wait_for,
    running_ingest,
)

pytestmark = pytest.mark.slow

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
LIVE_DEVICE, LATE_DEVICE = DEVICES[0], DEVICES[1]


def _audio(device: str, ts_ms: int, seq: int, boot: str, rms: float) -> dict[str, Any]:
    env = payloads.envelope(device, ts_ms, True, 5_000_000 + seq * 10_000, boot, seq)
    fields = {
        "window_s": 10.0,
        "playing": rms > -90,
        "rms_dbfs": rms,
        "peak_dbfs": min(0.0, rms + 12),
        "dead_air": rms <= -90,
        "dead_air_s": 10.0 if rms <= -90 else 0,
        "clipping": False,
    }
    return payloads.build("audio", env, fields)


def _level(seq: int) -> float:
    """A programme with a quiet passage near the threshold and a few silent readings."""
    return (-18.0, -24.0, -49.0, -95.0)[seq % 7 % 4]


async def _minutes(influx: InfluxClient, rp: str, where: str) -> dict[int, dict[str, Any]]:
    query = (
        f'SELECT count("rms_dbfs") AS "n", {ENERGY_MEAN_DBFS} AS "db", max("peak_dbfs") AS "peak" '
        f'FROM "{rp}"."audio" WHERE {where} GROUP BY time(1m) fill(none)'
    )
    if rp != "raw":
        query = (
            f'SELECT sum("samples") AS "n", {ENERGY_MEAN_DBFS} AS "db", max("peak_dbfs") AS "peak" '
            f'FROM "{rp}"."audio" WHERE {where} GROUP BY time(1m) fill(none)'
        )
    return {r["time"]: r for r in rows(await influx.query(query))}


async def _sums(influx: InfluxClient, rp: str, where: str) -> dict[str, float]:
    """Readings, seconds sounded and energy-mean level over ``where``, from raw or a rollup."""
    if rp == "raw":
        query = (
            f'SELECT count("rms_dbfs") AS "n", {ENERGY_MEAN_DBFS} AS "db" FROM "raw"."audio" WHERE {where}; '
            f'SELECT sum("window_s") AS "s" FROM "raw"."audio" WHERE {where} AND ({sounded_where()})'
        )
    else:
        query = (
            f'SELECT sum("samples") AS "n", {ENERGY_MEAN_DBFS} AS "db" FROM "{rp}"."audio" WHERE {where}; '
            f'SELECT sum("sounded_s") AS "s" FROM "{rp}"."audio" WHERE {where}'
        )
    out: dict[str, float] = {}
    for result in await influx.query_all(query):
        for r in rows(result):
            out.update({k: v for k, v in r.items() if k != "time"})
    return out


async def test_continuous_queries_and_late_recompute_fire_on_their_own_and_agree_with_raw(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(
        _config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root, late_debounce_s=1.0)
    )
    now_ms = int(time.time() * 1000)
    # Live: every 10 s of the last three minutes, up to now.
    live_start = (now_ms // MINUTE_MS - 3) * MINUTE_MS
    live = [
        _audio(LIVE_DEVICE, ts, n, "b-live", _level(n))
        for n, ts in enumerate(range(live_start, now_ms, 10_000))
    ]
    # Late: yesterday's 17:00 bulletin (local time), 30 minutes replayed in batches.
    day_s = local_day_start_s(now_ms / 1000) - 86_400
    late_start = (day_s + 17 * 3600) * 1000
    late = [_audio(LATE_DEVICE, late_start + n * 10_000, n, "b-late", _level(n)) for n in range(180)]
    publisher = Publisher(mosquitto, root)
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)) as service,
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        for msg in live:
            publisher.send(msg)
        for first in range(0, len(late), 90):
            publisher.send(payloads.batch(LATE_DEVICE, late[first : first + 90]))
        await asyncio.to_thread(publisher.flush)
        assert service.late_data is not None

        live_where = f"\"device\" = '{LIVE_DEVICE}' AND time >= {live_start}ms AND time < {now_ms + 1}ms"
        # Until the continuous query fires at the next minute boundary, rollup_1m lacks the last minute.
        await _wait_for(
            lambda: _rolled_up(influx, live_where, len(live)),
            limit_s=100,
            what="the 1-minute continuous query",
        )
        late_data = service.late_data
        await _wait_for(
            lambda: _true(late_data.recomputes > 0 and late_data.start_ms is None),
            limit_s=60,
            what="the late-data recompute",
        )
        # Only the replayed readings were late: the live minutes are the continuous query's work.
        assert late_data.late_points == len(late)

        # Minute by minute, live and late: readings, energy-mean level, peak.
        for where in (live_where, f"\"device\" = '{LATE_DEVICE}' AND time >= {late_start}ms"):
            raw, rolled = await _minutes(influx, "raw", where), await _minutes(influx, "rollup_1m", where)
            assert raw
            assert set(raw) == set(rolled)
            for minute, r in raw.items():
                assert rolled[minute]["n"] == r["n"], minute
                assert rolled[minute]["db"] == pytest.approx(r["db"]), minute
                assert rolled[minute]["peak"] == pytest.approx(r["peak"]), minute
        # The replayed hour and day: readings, seconds sounded, level, at every level.
        hour = f"\"device\" = '{LATE_DEVICE}' AND time >= {late_start}ms AND time < {late_start + HOUR_MS}ms"
        day_ms = day_s * 1000
        day = f"\"device\" = '{LATE_DEVICE}' AND time >= {day_ms}ms AND time < {day_ms + 86_400_000}ms"
        expected = await _sums(influx, "raw", hour)
        assert expected["n"] == len(late)
        assert 0 < expected["s"] < 1800
        for rp, where in (("rollup_1m", hour), ("rollup_1h", hour), ("rollup_1d", day)):
            got = await _sums(influx, rp, where)
            assert got["n"] == expected["n"], rp
            assert got["s"] == pytest.approx(expected["s"]), rp
            assert got["db"] == pytest.approx(expected["db"]), rp
    publisher.close()


async def _rolled_up(influx: InfluxClient, where: str, readings: int) -> bool:
    found = rows(await influx.query(f'SELECT sum("samples") AS "n" FROM "rollup_1m"."audio" WHERE {where}'))
    return bool(found) and found[0]["n"] == readings


async def _true(value: bool) -> bool:
    return value
