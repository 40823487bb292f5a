"""Fetch what the KPI computation reads from InfluxDB (InfluxQL over `InfluxClient`).

Readings come from the default retention policy (where ingest writes raw points), in
chunks of a few days so a month-long report never asks for one huge answer. Heartbeats
are only counted per bucket (``GROUP BY time``): the report needs to know that a device
was talking, not every heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.influx import InfluxClient, rows
from backend.kpi.definitions import Definitions
from backend.kpi.model import (
    AudioReading,
    DisplayReading,
    DownInterval,
    Measurements,
    OutageRecord,
    Period,
    WebsiteCheck,
)
from protocols.stored_data import CRASH_REBOOT_REASONS

__all__ = ["CHUNK_MS", "DOWN_LOOKBACK_MS", "fetch_measurements"]

CHUNK_MS = 7 * 86_400_000
# A down interval is stamped at its start: look this far back for one still open at the start.
DOWN_LOOKBACK_MS = 60 * 86_400_000


def _where(start_ms: int, end_ms: int) -> str:
    return f"time >= {start_ms}ms AND time < {end_ms}ms"


def _chunks(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    return [(s, min(s + CHUNK_MS, end_ms)) for s in range(start_ms, end_ms, CHUNK_MS)]


async def _grouped(influx: InfluxClient, query: str) -> list[dict[str, Any]]:
    return rows(await influx.query(query, epoch="ms"))


def _num(value: Any) -> float | None:
    return None if value is None or isinstance(value, bool) else float(value)


async def fetch_measurements(
    influx: InfluxClient,
    period: Period,
    defs: Definitions,
    *,
    progress: Callable[[str], None] | None = None,
) -> Measurements:
    """Read audio, display, heartbeat presence, website checks and down intervals of the period.

    Raises:
        InfluxError: a query failed (the message names the statement).
    """
    say = progress or (lambda _line: None)
    m = Measurements()
    hold_ms = int(max(defs.audio_hold_s, defs.display_hold_s) * 1000)
    start, end = period.start_ms, period.end_ms
    bucket = defs.bucket_s
    for chunk_start, chunk_end in _chunks(start - hold_ms, end):
        say(f"reading {chunk_start}..{chunk_end} (ms)")
        where = _where(chunk_start, chunk_end)
        audio_query = (
            'SELECT "rms_dbfs", "window_s", "playing", "dead_air" FROM "audio" '
            f'WHERE {where} GROUP BY "device"'
        )
        for row in await _grouped(influx, audio_query):
            if row.get("rms_dbfs") is None:
                continue
            window_s = float(row.get("window_s") or 0.0)
            playing, dead_air = row.get("playing") is True, row.get("dead_air") is True
            reading = AudioReading(int(row["time"]), float(row["rms_dbfs"]), window_s, playing, dead_air)
            m.audio.setdefault(row["device"], []).append(reading)
        display_query = (
            'SELECT "power", "blank", "frozen", "source_sync_age_s" FROM "display" '
            f'WHERE {where} GROUP BY "device"'
        )
        for row in await _grouped(influx, display_query):
            display = DisplayReading(
                int(row["time"]),
                row.get("power") is True,
                row.get("blank") is True,
                row.get("frozen") is True,
                _num(row.get("source_sync_age_s")),
            )
            m.display.setdefault(row["device"], []).append(display)
        heartbeat_query = (
            f'SELECT count("uptime_s") FROM "heartbeat" WHERE {where} '
            f'GROUP BY time({bucket}s), "device" fill(none)'
        )
        for row in await _grouped(influx, heartbeat_query):
            if row.get("count"):
                m.heartbeat_buckets.setdefault(row["device"], set()).add(int(row["time"]))
    say("reading crash boots")
    crash_query = (
        'SELECT "uptime_s", "reboot_reason", "boot_id" FROM "heartbeat" '
        f'WHERE {_where(start, end + 3_600_000)} AND "uptime_s" < 3600 GROUP BY "device"'
    )
    for row in await _grouped(influx, crash_query):
        if row.get("reboot_reason") in CRASH_REBOOT_REASONS and row.get("uptime_s") is not None:
            boots = m.crashes.setdefault(row["device"], {})
            booted = int(row["time"]) - int(float(row["uptime_s"]) * 1000)
            boots[str(row.get("boot_id"))] = min(booted, boots.get(str(row.get("boot_id")), booted))
    say("reading website checks and down intervals")
    website_query = (
        'SELECT "ok", "status", "latency_ms", "tls_days_left", "error" FROM "website_check" '
        f'WHERE {_where(start, end)} GROUP BY "commune", "url"'
    )
    for row in await _grouped(influx, website_query):
        status = row.get("status")
        check = WebsiteCheck(
            int(row["time"]),
            str(row.get("url", "")),
            row.get("ok") is True,
            int(status) if isinstance(status, int | float) and not isinstance(status, bool) else None,
            _num(row.get("latency_ms")),
            _num(row.get("tls_days_left")),
            row.get("error"),
        )
        m.websites.setdefault(row["commune"], []).append(check)
    down_query = (
        f'SELECT "start_ms", "end_ms" FROM "down_interval" WHERE {_where(start - DOWN_LOOKBACK_MS, end)} '
        'GROUP BY "device"'
    )
    for row in await _grouped(influx, down_query):
        down_start = row.get("start_ms")
        down_end = row.get("end_ms")
        if down_start is None:
            continue
        interval = DownInterval(int(down_start), int(down_end) if down_end is not None else end)
        if interval.end_ms > start and interval.start_ms < end:
            m.down.setdefault(row["device"], []).append(interval)
    await _fetch_outages(influx, m, start, end)
    return m


async def _fetch_outages(influx: InfluxClient, m: Measurements, start: int, end: int) -> None:
    """The monitor's settled outages (``outage`` points with ``duration_s``), by cause."""
    query = (
        f'SELECT "duration_s" FROM "outage" WHERE {_where(start - DOWN_LOOKBACK_MS, end)} '
        'AND "duration_s" > 0 GROUP BY "device", "cause"'
    )
    for row in await _grouped(influx, query):
        duration = _num(row.get("duration_s"))
        if duration is None or row.get("device") is None:
            continue
        record = OutageRecord(int(row["time"]), duration, str(row.get("cause") or "unknown"))
        m.outages.setdefault(row["device"], []).append(record)
