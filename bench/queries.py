"""Dashboard queries over a 10,000-device, 30-day district: raw points versus rollups.

The dataset is generated, not simulated: 10,000 devices × 30 days of heartbeats every
30 s would be 864 million raw points. So it holds

* the fleet overview's inputs at full size: ``device_info``, ``state`` (every device;
  5 % offline), ``alert`` (5 % of devices with an open alert), the last two minutes of
  ``audio`` (written last, so they are recent when the timing starts);
* ``rollup_1h.heartbeat`` and ``rollup_1d.heartbeat`` for the last 30 whole Vietnam days,
  written directly in the shape the continuous queries produce (backend/rollups.py:
  mean/max/min fields, ``samples``, and ``hours`` on the daily level), the daily points
  summarising exactly the hourly ones;
* one hour of raw heartbeats (every 30 s) for every device: the raw 30-day figure is the
  measured one-hour time × 720, since a raw scan's cost grows with the points it reads.

Timed: every panel query of the generated fleet dashboard (``dashboards/generated``, with
Grafana's macros replaced by `dashboards.querytools`), and the 30-day availability per
device (hours with heartbeats) from ``rollup_1d``, ``rollup_1h`` and ``raw``. Each query
runs a few times; the median is reported. The two rollup answers are compared device by
device. The daily points are also written to a policy with InfluxDB's default one-week
shard groups (``rollup_1d`` keeps a year per shard group) to time the same query there.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from typing import Any

from backend.influx import FieldValue, InfluxClient, line
from backend.rollups import RAW_RP, ROLLUP_1D_RP, ROLLUP_1H_RP, ensure_retention_and_rollups
from bench.common import influx_query, say, services, table, workdir, write_result
from bench.messages import COMMUNES
from dashboards.build import render
from dashboards.querytools import panel_queries, substitute

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DB = "tincoso"
HAMLETS = 40
VN_OFFSET_MS = 7 * HOUR_MS
MISS_EVERY = 50  # a device misses 1 hour in 50
WEEKLY_SHARDS_RP = "rollup_1d_weekly_shards"


def vn_midnight(ms: int) -> int:
    """Epoch ms of the 00:00 Vietnam time (UTC+7) at or before ``ms``."""
    return (ms + VN_OFFSET_MS) // DAY_MS * DAY_MS - VN_OFFSET_MS


def first_day(days: int, now_ms: int) -> int:
    """Start of the rolled-up range: ``days`` whole Vietnam days ending at today's midnight."""
    return vn_midnight(now_ms) - days * DAY_MS


def missed(n: int, hour: int) -> bool:
    """Whether device ``n`` has no heartbeat in hour ``hour`` of the range."""
    return (n + hour) % MISS_EVERY == 0


def _tags(n: int) -> dict[str, str]:
    return {
        "device": f"vn-bench-{n:05d}",
        "commune": COMMUNES[n % len(COMMUNES)],
        "hamlet": f"xom-{n % HAMLETS + 1}",
        "kind": "speaker_cluster",
    }


def fleet_points(devices: int, now_ms: int) -> Iterator[str]:
    """device_info, state and alert of every device."""
    for n in range(devices):
        tags = _tags(n)
        yield line(
            "device_info",
            tags,
            {"registered": True, "lat": 21.6 + n % 100 / 500, "lon": 106.0 + n % 97 / 500},
            now_ms - DAY_MS,
        )
        yield line("state", tags, {"online": True, "bdseq": 1, "reason": "birth"}, now_ms - 30 * DAY_MS)
        if n % 20 == 7:
            yield line("state", tags, {"online": False, "bdseq": 1, "reason": "lwt"}, now_ms - HOUR_MS)
        if n % 20 == 3:
            alert_tags = {**tags, "fault": "dead_air", "status": "open"}
            yield line(
                "alert", alert_tags, {"message": "Mất tiếng", "since_ms": now_ms - HOUR_MS}, now_ms - HOUR_MS
            )


def recent_audio(devices: int, now_ms: int) -> Iterator[str]:
    """The last two minutes of audio snapshots (the fleet overview's "playing" reads 5 minutes)."""
    for n in range(devices):
        for k in range(2):
            fields: dict[str, FieldValue] = {
                "seq": k,
                "boot_id": "b",
                "playing": n % 3 == 0,
                "rms_dbfs": -20.0,
                "dead_air": False,
            }
            yield line("audio", _tags(n), fields, now_ms - 60_000 * (k + 1))


# The steady readings behind every hourly and daily heartbeat summary (rollups.py fields).
_ROLLUP_HEARTBEAT: dict[str, FieldValue] = {
    "signal_dbm": -80.0,
    "signal_dbm_max": -75.0,
    "signal_dbm_min": -85.0,
    "temp_c": 45.0,
    "temp_c_max": 47.0,
    "temp_c_min": 43.0,
    "queue_depth": 0.0,
}


def rollup_points(devices: int, days: int, now_ms: int) -> Iterator[str]:
    """``rollup_1h.heartbeat`` as the continuous queries write it (a device misses 1 hour in 50)."""
    first = first_day(days, now_ms)
    for hour in range(days * 24):
        ts = first + hour * HOUR_MS
        for n in range(devices):
            if missed(n, hour):
                continue
            fields = {**_ROLLUP_HEARTBEAT, "uptime_s": 3600.0 * hour, "samples": 120}
            yield line("heartbeat", _tags(n), fields, ts)


def daily_points(devices: int, days: int, now_ms: int) -> Iterator[str]:
    """``rollup_1d.heartbeat`` as the daily continuous queries write it from `rollup_points`."""
    first = first_day(days, now_ms)
    for day in range(days):
        for n in range(devices):
            hours = [h for h in range(day * 24, day * 24 + 24) if not missed(n, h)]
            fields = {
                **_ROLLUP_HEARTBEAT,
                "uptime_s": 3600.0 * hours[-1],
                "samples": 120 * len(hours),
                "hours": len(hours),
            }
            yield line("heartbeat", _tags(n), fields, first + day * DAY_MS)


def raw_points(devices: int, now_ms: int) -> Iterator[str]:
    """One hour of raw heartbeats every 30 s per device."""
    for step in range(120):
        ts = now_ms - HOUR_MS + step * 30_000
        for n in range(devices):
            fields: dict[str, FieldValue] = {
                "seq": step,
                "boot_id": "b",
                "uptime_s": 3600.0 + step * 30,
                "temp_c": 45.0,
                "signal_dbm": -80.0,
                "net_type": "4g",
                "queue_depth": 0,
            }
            yield line("heartbeat", _tags(n), fields, ts + n % 30_000)


async def _write(url: str, points: Iterator[str], rp: str, writers: int = 2, batch: int = 5000) -> int:
    """Write through ``writers`` concurrent clients; return the points written."""
    queue: asyncio.Queue[list[str] | None] = asyncio.Queue(maxsize=writers * 2)
    written = 0

    async def worker() -> None:
        nonlocal written
        async with InfluxClient(url, DB, gzip_writes=True) as client:
            while (chunk := await queue.get()) is not None:
                count = await client.write(chunk, retention_policy=rp)
                written += count

    tasks = [asyncio.create_task(worker()) for _ in range(writers)]
    chunk: list[str] = []
    for point in points:
        chunk.append(point)
        if len(chunk) >= batch:
            await queue.put(chunk)
            chunk = []
    if chunk:
        await queue.put(chunk)
    for _ in tasks:
        await queue.put(None)
    await asyncio.gather(*tasks)
    return written


async def load(url: str, devices: int, days: int, now_ms: int) -> dict[str, int]:
    """Create the database with its policies and write the dataset."""
    async with InfluxClient(url, DB) as client:
        await client.create_database()
        await ensure_retention_and_rollups(client)
        # The continuous queries would summarise the raw hour into rollup_1m as it is
        # written; they are not what is measured here.
        for series in await client.query("SHOW CONTINUOUS QUERIES"):
            for row in series.get("values", []):
                if series.get("name") == DB:
                    await client.query(f'DROP CONTINUOUS QUERY "{row[0]}" ON "{DB}"')
        await client.query(
            f'CREATE RETENTION POLICY "{WEEKLY_SHARDS_RP}" ON "{DB}" DURATION INF REPLICATION 1'
        )
    return {
        "fleet": await _write(url, fleet_points(devices, now_ms), RAW_RP),
        "raw_heartbeat": await _write(url, raw_points(devices, now_ms), RAW_RP),
        "rollup_1h_heartbeat": await _write(url, rollup_points(devices, days, now_ms), ROLLUP_1H_RP),
        "rollup_1d_heartbeat": await _write(url, daily_points(devices, days, now_ms), ROLLUP_1D_RP),
        "rollup_1d_weekly_shards_heartbeat": await _write(
            url, daily_points(devices, days, now_ms), WEEKLY_SHARDS_RP
        ),
        # Written last, stamped when the load ends, so they are recent when the timing starts.
        "audio": await _write(url, recent_audio(devices, int(time.time() * 1000)), RAW_RP),
    }


def timed(url: str, query: str, repeats: int) -> tuple[float, int]:
    """Median seconds of ``repeats`` runs, and the rows of the answer."""
    times, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        series = influx_query(url, DB, query, timeout=600)
        times.append(time.perf_counter() - started)
        rows = sum(len(s.get("values", [])) for s in series)
    return statistics.median(times), rows


def availability(rp: str, days: int, now_ms: int) -> str:
    """Hours with heartbeats per device over ``days``.

    From rollups over the last ``days`` whole Vietnam days: a count of hourly points, or a
    sum of the daily points' ``hours``. From raw points over the last ``days`` × 24 hours:
    heartbeats per hour, hours without any left out.
    """
    first = first_day(days, now_ms)
    days_range = f"time >= {first}ms AND time < {first + days * DAY_MS}ms"
    if rp == ROLLUP_1H_RP:
        return (
            f'SELECT count("samples") AS "hours" FROM "{rp}"."heartbeat" WHERE {days_range} GROUP BY "device"'
        )
    if rp in (ROLLUP_1D_RP, WEEKLY_SHARDS_RP):
        return f'SELECT sum("hours") AS "hours" FROM "{rp}"."heartbeat" WHERE {days_range} GROUP BY "device"'
    return (
        f'SELECT count("uptime_s") AS "heartbeats" FROM "{rp}"."heartbeat" '
        f"WHERE time >= {now_ms - days * DAY_MS}ms AND time <= {now_ms}ms "
        'GROUP BY time(1h), "device" fill(none)'
    )


def hours_per_device(url: str, query: str) -> dict[str, int]:
    """Device -> hours, from an `availability` query on the rollups."""
    return {s["tags"]["device"]: int(s["values"][0][1]) for s in influx_query(url, DB, query, timeout=600)}


def run(quick: bool) -> dict[str, Any]:
    """Measure and print; returns what goes into ``bench/results/queries.json``."""
    devices, days, repeats = (1000, 30, 3) if quick else (10_000, 30, 3)
    now_ms = int(time.time() * 1000)
    results: dict[str, Any] = {"devices": devices, "days": days, "repeats": repeats}
    with workdir("queries") as root, services(root, mosquitto=False) as (_, influx):
        say(f"queries: writing the dataset ({devices:,} devices, {days} days of 1-hour and daily rollups)")
        started = time.monotonic()
        results["points"] = asyncio.run(load(influx.url, devices, days, now_ms))
        results["load_s"] = round(time.monotonic() - started, 1)
        say(f"queries: {sum(results['points'].values()):,} points in {results['load_s']} s; timing")
        fleet = render("vi")["tincoso-fleet.json"]
        values = {
            "commune": list(COMMUNES),
            "hamlet": [f"xom-{h + 1}" for h in range(HAMLETS)],
            "kind": ["speaker_cluster", "eboard", "district_led"],
        }
        panels: list[dict[str, Any]] = []
        for title, ref, query in panel_queries(fleet):
            q = substitute(query, values, start_ms=now_ms - 24 * HOUR_MS, end_ms=now_ms)
            seconds, answer_rows = timed(influx.url, q, repeats)
            panels.append({"panel": title, "ref": ref, "seconds": round(seconds, 4), "rows": answer_rows})
        results["fleet_overview"] = panels
        daily_s, daily_rows = timed(influx.url, availability(ROLLUP_1D_RP, days, now_ms), repeats)
        weekly_s, weekly_rows = timed(influx.url, availability(WEEKLY_SHARDS_RP, days, now_ms), repeats)
        rolled_s, rolled_rows = timed(influx.url, availability(ROLLUP_1H_RP, days, now_ms), repeats)
        raw_hour_s, raw_rows = timed(influx.url, availability(RAW_RP, days, now_ms), repeats)
        from_daily = hours_per_device(influx.url, availability(ROLLUP_1D_RP, days, now_ms))
        from_hourly = hours_per_device(influx.url, availability(ROLLUP_1H_RP, days, now_ms))
        online = influx_query(
            influx.url,
            DB,
            substitute(fleet["panels"][0]["targets"][0]["query"], values, start_ms=0, end_ms=now_ms),
        )
    total = sum(p["seconds"] for p in panels)
    slowest = max(panels, key=lambda p: p["seconds"])
    results["availability"] = {
        "rollup_1d_s": round(daily_s, 3),
        "rollup_1d_rows": daily_rows,
        "rollup_1d_equals_rollup_1h": from_daily == from_hourly and len(from_daily) == devices,
        "rollup_1d_weekly_shards_s": round(weekly_s, 3),
        "rollup_1d_weekly_shards_rows": weekly_rows,
        "rollup_1h_s": round(rolled_s, 3),
        "rollup_1h_rows": rolled_rows,
        "raw_one_hour_s": round(raw_hour_s, 3),
        "raw_rows_one_hour": raw_rows,
        "raw_30d_extrapolated_s": round(raw_hour_s * days * 24, 1),
    }
    results["fleet_overview_total_s"] = round(total, 3)
    results["online_count_check"] = online[0]["values"][0][1] if online else None
    rows = [
        [f"fleet overview: all {len(panels)} panel queries (sum)", "raw (latest state)", total, "-"],
        [f"fleet overview: slowest ({slowest['panel']} {slowest['ref']})", "raw", slowest["seconds"], "-"],
        ["30-day availability per device", "rollup_1d", daily_s, f"{daily_rows:,} devices"],
        [
            "30-day availability per device",
            "rollup_1d, 1-week shard groups",
            weekly_s,
            f"{weekly_rows:,} devices",
        ],
        ["30-day availability per device", "rollup_1h", rolled_s, f"{rolled_rows:,} devices"],
        ["30-day availability per device", "raw, 1 hour measured", raw_hour_s, f"{raw_rows:,} rows"],
        ["30-day availability per device", "raw, 30 days (× 720, extrapolated)", raw_hour_s * days * 24, "-"],
    ]
    results["table"] = table(
        f"Dashboard queries ({devices:,} devices, {days} days; median of {repeats})",
        ["query", "reads", "seconds", "answer"],
        rows,
    )
    write_result("queries", quick, results)
    return results
