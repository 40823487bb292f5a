"""Retention policies and continuous queries: created idempotently, and rollups agree with raw data."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.influx import InfluxClient, line, rows
from backend.rollups import (
    SOUNDED_WHERE,
    RetentionConfig,
    backfill,
    ensure_retention_and_rollups,
    rollups,
)

HOUR_MS = 3_600_000
DEVICES = (
    {"device": "vn-trangxa-loa-01", "commune": "trang-xa", "hamlet": "thon-na-ca", "kind": "speaker_cluster"},
    {"device": "vn-binhlong-loa-01", "commune": "binh-long", "hamlet": "ban-chu", "kind": "speaker_cluster"},
)


@pytest.fixture
async def influx(influx_db: Any) -> AsyncIterator[InfluxClient]:
    async with InfluxClient(influx_db.base_url, influx_db.name) as client:
        yield client


async def _policies(influx: InfluxClient) -> dict[str, tuple[str, bool]]:
    shown = rows(await influx.query(f'SHOW RETENTION POLICIES ON "{influx.database}"'))
    return {row["name"]: (row["duration"], row["default"]) for row in shown}


async def _continuous_queries(influx: InfluxClient) -> dict[str, str]:
    shown = await influx.query("SHOW CONTINUOUS QUERIES")
    return {v[0]: v[1] for s in shown if s["name"] == influx.database for v in s.get("values", [])}


async def test_policies_and_continuous_queries_are_created_once(influx: InfluxClient) -> None:
    await ensure_retention_and_rollups(influx)
    first = await _continuous_queries(influx)
    await ensure_retention_and_rollups(influx)
    policies = await _policies(influx)
    assert policies["raw"] == ("9600h0m0s", True)
    assert policies["rollup_1m"] == ("26400h0m0s", False)
    assert policies["rollup_1h"] == ("0s", False)
    assert await _continuous_queries(influx) == first
    assert sorted(first) == sorted(r.name for r in rollups())
    assert "GROUP BY time(1m), *" in first["tincoso_1m_audio"]
    assert "INTO " + influx.database + ".rollup_1h.audio" in first["tincoso_1h_audio"]


async def test_changed_retention_is_altered_and_stale_queries_replaced(influx: InfluxClient) -> None:
    await ensure_retention_and_rollups(influx)
    db = influx.database
    await influx.query(f'DROP CONTINUOUS QUERY "tincoso_1m_audio" ON "{db}"')
    await influx.query(
        f'CREATE CONTINUOUS QUERY "tincoso_1m_audio" ON "{db}" BEGIN SELECT mean("rms_dbfs") AS "rms_dbfs" '
        f'INTO "{db}"."rollup_1m"."audio" FROM "{db}"."raw"."audio" GROUP BY time(1m), * END'
    )
    await influx.query(
        f'CREATE CONTINUOUS QUERY "tincoso_old" ON "{db}" BEGIN SELECT mean("x") AS "x" '
        f'INTO "{db}"."rollup_1m"."old" FROM "{db}"."raw"."old" GROUP BY time(1m), * END'
    )
    await ensure_retention_and_rollups(influx, RetentionConfig(raw_days=30, rollup_1h_days=1825))
    policies = await _policies(influx)
    assert policies["raw"] == ("720h0m0s", True)
    assert policies["rollup_1h"] == ("43800h0m0s", False)
    queries = await _continuous_queries(influx)
    assert "tincoso_old" not in queries
    assert "samples" in queries["tincoso_1m_audio"]


def test_bad_retention_is_named() -> None:
    with pytest.raises(ValueError, match="raw_days must be a whole number of days"):
        RetentionConfig(raw_days=0)


async def test_backfill_rejects_empty_range_and_unknown_level(influx: InfluxClient) -> None:
    with pytest.raises(ValueError, match="empty"):
        await backfill(influx, 10, 10)
    with pytest.raises(ValueError, match="5m"):
        await backfill(influx, 0, 10, levels=("5m",))


def _seed_hour(hour_ms: int) -> list[str]:
    """Two speakers, an audio reading every 10 s for one hour, half of it a bulletin."""
    points = []
    for n, tags in enumerate(DEVICES):
        for i in range(360):
            playing = 90 <= i < 270
            dead = n == 1 and 200 <= i < 240
            rms = -70.0 if dead or not playing else -12.0 - (i * 7 + n * 3) % 23
            fields: dict[str, bool | int | float | str] = {
                "seq": i,
                "boot_id": "b1",
                "clock_ok": True,
                "window_s": 10.0,
                "playing": playing,
                "rms_dbfs": rms,
                "peak_dbfs": min(0.0, rms + 9 + i % 4),
                "dead_air": dead,
                "dead_air_s": 10.0 * (i - 199) if dead else 0.0,
                "clipping": False,
                "amp_power_w": 40.0 + (i % 13) if playing else 1.5,
            }
            points.append(line("audio", tags, fields, hour_ms + i * 10_000 + n * 7))
    return points


async def test_backfilled_rollups_agree_with_raw_data(influx: InfluxClient) -> None:
    await ensure_retention_and_rollups(influx)
    hour = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS
    await influx.write(_seed_hour(hour))
    written = await backfill(influx, hour, hour + HOUR_MS)
    assert written > 0
    window = f"time >= {hour}ms AND time < {hour + HOUR_MS}ms"

    raw = {
        r["device"]: r
        for r in rows(
            await influx.query(
                'SELECT mean("rms_dbfs") AS "mean", max("rms_dbfs") AS "max", min("rms_dbfs") AS "min", '
                'count("rms_dbfs") AS "count", max("peak_dbfs") AS "peak", mean("amp_power_w") AS "amp", '
                f'max("dead_air_s") AS "dead_air_s" FROM "raw"."audio" WHERE {window} GROUP BY "device"'
            )
        )
    }
    sounded = {
        r["device"]: r["sounded_s"]
        for r in rows(
            await influx.query(
                f'SELECT sum("window_s") AS "sounded_s" FROM "raw"."audio" '
                f'WHERE {window} AND ({SOUNDED_WHERE}) GROUP BY "device"'
            )
        )
    }
    hourly = {
        r["device"]: r
        for r in rows(
            await influx.query(f'SELECT * FROM "rollup_1h"."audio" WHERE {window} GROUP BY "device"')
        )
    }
    assert set(raw) == set(hourly) == {d["device"] for d in DEVICES}
    for device, r in raw.items():
        h = hourly[device]
        assert h["time"] == hour
        assert h["samples"] == r["count"] == 360
        assert h["rms_dbfs"] == pytest.approx(r["mean"])
        assert h["rms_dbfs_max"] == pytest.approx(r["max"])
        assert h["rms_dbfs_min"] == pytest.approx(r["min"])
        assert h["peak_dbfs"] == pytest.approx(r["peak"])
        assert h["amp_power_w"] == pytest.approx(r["amp"])
        assert h["dead_air_s"] == pytest.approx(r["dead_air_s"])
        assert h["played_s"] == pytest.approx(1800.0)
        assert h["sounded_s"] == pytest.approx(sounded[device])
        assert h["sounded_s"] + (h["silent_s"] or 0.0) == pytest.approx(h["played_s"])
    assert hourly["vn-binhlong-loa-01"]["silent_s"] == pytest.approx(400.0)

    # The minute level agrees minute by minute.
    per_minute_raw = rows(
        await influx.query(
            'SELECT mean("rms_dbfs") AS "mean", count("rms_dbfs") AS "count" FROM "raw"."audio" '
            f'WHERE {window} GROUP BY time(1m), "device" fill(none)'
        )
    )
    minutes = {
        (r["device"], r["time"]): r
        for r in rows(
            await influx.query(f'SELECT * FROM "rollup_1m"."audio" WHERE {window} GROUP BY "device"')
        )
    }
    assert len(per_minute_raw) == len(minutes) == 120
    for r in per_minute_raw:
        m = minutes[(r["device"], r["time"])]
        assert m["rms_dbfs"] == pytest.approx(r["mean"])
        assert m["samples"] == r["count"]


async def test_raw_points_go_to_the_raw_policy_by_default(influx: InfluxClient) -> None:
    await ensure_retention_and_rollups(influx)
    await influx.write([line("audio", DEVICES[0], {"rms_dbfs": -20.0}, int(time.time() * 1000))])
    assert rows(await influx.query('SELECT count("rms_dbfs") FROM "raw"."audio"'))[0]["count"] == 1
