"""Every panel and variable query of every dashboard runs against a real InfluxDB with data.

The data follows the schema in docs/architecture.md. It is written as line protocol by
`seed_district` for now; a later step replaces that one function with a short simulation
through agent -> MQTT -> ingest.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from backend.influx import InfluxClient, line
from backend.rollups import (
    RAW_RP,
    ROLLUP_1D_RP,
    ROLLUP_1H_RP,
    ROLLUP_1M_RP,
    SOUNDED_WHERE,
    backfill,
    ensure_retention_and_rollups,
)
from dashboards import querytools
from dashboards.build import render

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
SEED_MINUTES = 150

# device, commune, hamlet, kind, lat, lon
FLEET = (
    ("vn-trangxa-loa-01", "trang-xa", "thon-na-ca", "speaker_cluster", 21.755, 106.075),
    ("vn-trangxa-loa-02", "trang-xa", "thon-khuon-vang", "speaker_cluster", 21.760, 106.081),
    ("vn-binhlong-loa-01", "binh-long", "ban-chu", "speaker_cluster", 21.650, 106.120),
    ("vn-trangxa-bangtin-01", "trang-xa", "trung-tam", "eboard", 21.757, 106.078),
    ("vn-huyen-led-01", "dinh-ca", "trung-tam", "district_led", 21.720, 106.110),
)
SPEAKERS = [d for d in FLEET if d[3] == "speaker_cluster"]
BOARDS = [d for d in FLEET if d[3] != "speaker_cluster"]
SILENT_SPEAKER = "vn-trangxa-loa-02"  # plays the bulletin but nothing comes out
DARK_BOARD = "vn-trangxa-bangtin-01"
OFFLINE_BOARD = "vn-huyen-led-01"


def _tags(device: tuple[Any, ...]) -> dict[str, str]:
    return {"device": device[0], "commune": device[1], "hamlet": device[2], "kind": device[3]}


def _envelope(seq: int) -> dict[str, Any]:
    return {"seq": seq, "boot_id": "5f0c2a9e", "clock_ok": True, "placed": "device"}


def seed_district(now_ms: int) -> Iterator[str]:
    """Readings of a small district over the last `SEED_MINUTES` minutes, as line protocol.

    The last 40 minutes are a bulletin: every speaker reports playing; one of them is silent.
    """
    start = now_ms - SEED_MINUTES * MINUTE_MS
    bulletin_from = now_ms - 40 * MINUTE_MS
    for n, device in enumerate(FLEET):
        tags = _tags(device)
        yield line("device_info", tags, {"registered": True, "lat": device[4], "lon": device[5]}, start)
        yield line("state", tags, {"online": True, "bdseq": 3, "reason": "birth"}, start + 1000)
        if device[0] == OFFLINE_BOARD:
            yield line("state", tags, {"online": False, "bdseq": 3, "reason": "lwt"}, now_ms - 5 * MINUTE_MS)
        for minute in range(SEED_MINUTES):
            ts = start + minute * MINUTE_MS + n * 100
            seq = minute * 10
            yield line(
                "heartbeat",
                tags,
                {
                    **_envelope(seq),
                    "uptime_s": 3600.0 + minute * 60,
                    "reboot_reason": "power_loss",
                    "temp_c": 45.0 + (minute % 7),
                    "disk_free_mb": 1800.0,
                    "disk_ro": False,
                    "net_type": "4g",
                    "signal_dbm": -80.0 - (minute % 5),
                    "queue_depth": minute % 3,
                    "queue_dropped": 0,
                },
                ts,
            )
            if device[3] == "speaker_cluster":
                yield from _audio(device, ts, seq, playing=ts >= bulletin_from)
            else:
                yield from _display(device, ts, seq, minute)
    yield from _monitor_and_backend(now_ms, start)


def _audio(device: tuple[Any, ...], ts: int, seq: int, *, playing: bool) -> Iterator[str]:
    silent = device[0] == SILENT_SPEAKER
    for window in range(6):
        rms = -70.0 if silent or not playing else -18.0 - window
        yield line(
            "audio",
            _tags(device),
            {
                **_envelope(seq + 1 + window),
                "window_s": 10.0,
                "playing": playing,
                "rms_dbfs": rms,
                "rms_power": 10 ** (rms / 10),  # what the ingest adds (energy averaging)
                "peak_dbfs": min(0.0, rms + 15),
                "dead_air": silent and playing,
                "dead_air_s": 30.0 if silent and playing else 0.0,
                "clipping": False,
                "programme": "ban-tin-chieu" if playing else None,
                "volume": 80,
                "amp_power_w": 64.0 if playing and not silent else 2.0,
                "amp_voltage_v": 221.0,
                "amp_current_a": 0.3,
                "amp_energy_wh": 15230.0,
            },
            ts + window * 10_000,
        )


def _display(device: tuple[Any, ...], ts: int, seq: int, minute: int) -> Iterator[str]:
    dark = device[0] == DARK_BOARD and minute % 10 == 0
    yield line(
        "display",
        _tags(device),
        {
            **_envelope(seq + 1),
            "power": not dark,
            "brightness": 0 if dark else 70,
            "content_id": "thong-bao-0412",
            "blank": device[0] == DARK_BOARD and minute % 10 == 3,
            "frozen": device[0] == DARK_BOARD and minute % 10 == 5,
            "failed_modules": minute % 2,
            "modules_total": 48,
            "temp_c": 40.0,
            "source_sync_age_s": 60.0 + minute,
        },
        ts,
    )


def _kpi(now_ms: int) -> Iterator[str]:
    """Stored KPI results in the shape backend/kpi/store.py writes them."""
    common = {"target_year": 2025, "period_from": "2025-01-01", "period_to": "2025-12-31"}
    for device in FLEET:
        health = {"operating_h": 720, "crash_free_h": 718, "crashes": 2, "crash_free_pct": 99.7, **common}
        where = {"device": device[0], "commune": device[1], "hamlet": device[2]}
        yield line("device_health", where, health, now_ms - 60_000)
    for indicator, value in (("1.1", 50.0), ("1.5", 100.0), ("2.2", 100.0)):
        met = value >= 90.0
        status = "met" if met else "not_met"
        yield line(
            "kpi",
            {"indicator": indicator, "commune": "_district"},
            {
                "value": value,
                "target": 100.0,
                "met": met,
                "status": status,
                "units": 2,
                "units_met": 1,
                "units_unknown": 0,
                **common,
            },
            now_ms - 60_000,
        )
        for commune in ("binh-long", "trang-xa"):
            yield line(
                "kpi",
                {"indicator": indicator, "commune": commune},
                {"value": value, "target": 100.0, "met": met, "status": status, "coverage": 100.0, **common},
                now_ms - 60_000,
            )


def _monitor_and_backend(now_ms: int, start: int) -> Iterator[str]:
    yield from _kpi(now_ms)
    silent = _tags(next(d for d in FLEET if d[0] == SILENT_SPEAKER))
    board = _tags(next(d for d in FLEET if d[0] == DARK_BOARD))
    yield line(
        "alert",
        {**silent, "fault": "dead_air", "status": "open"},
        {"message": "Mất tiếng", "since_ms": now_ms - 1_800_000},
        now_ms - 1_800_000,
    )
    yield line(
        "alert",
        {**board, "fault": "offline", "status": "open"},
        {"message": "Mất kết nối", "since_ms": start},
        start + 60_000,
    )
    yield line(
        "alert",
        {**board, "fault": "offline", "status": "closed"},
        {"message": "Đã kết nối lại", "since_ms": start},
        start + 600_000,
    )
    # Board hours ended with the board still dark: unconfirmed, and the alert stays open.
    for status, at_ms in (("open", now_ms - 900_000), ("unconfirmed", now_ms - 300_000)):
        yield line(
            "alert",
            {**board, "fault": "board_dark", "status": status},
            {"message": "Bảng tin tắt", "since_ms": now_ms - 900_000},
            at_ms,
        )
    for tags in (silent, board):
        yield line(
            "data_gap",
            tags,
            {"boot_id": "5f0c2a9e", "from_seq": 100, "to_seq": 105, "missing": 4},
            now_ms - 3_000_000,
        )
        yield line(
            "down_interval",
            tags,
            {"start_ms": start + 60_000, "end_ms": start + 600_000, "duration_s": 540.0},
            start + 600_000,
        )
    # The board's outage: classified when the alert opened, settled when it came back.
    yield line(
        "outage",
        {**board, "cause": "mains", "evidence": "mains_flag"},
        {
            "text": "Nghi mất điện lưới: điện áp nguồn về 0 V lúc 17:02, chạy pin dự phòng 40 s rồi tắt",
            "refined": False,
            "since_ms": start + 60_000,
            "duration_s": 540.0,
        },
        start + 60_000,
    )
    for tags in (silent, _tags(SPEAKERS[0])):
        for event, offset in (("playback_start", 40), ("playback_end", 10)):
            yield line(
                "event",
                {**tags, "event": event, "code": "bulletin"},
                {
                    "programme": "ban-tin-chieu",
                    "duration_s": 1800.0 if event == "playback_end" else None,
                    "seq": 7,
                    "boot_id": "5f0c2a9e",
                },
                now_ms - offset * MINUTE_MS,
            )
    yield line(
        "quarantine",
        {"device": "vn-unknown-01", "reason": "unknown_device"},
        {"topic": "tincoso/v1/vn-unknown-01/event", "payload": "{}"},
        now_ms - 600_000,
    )
    for outcome in ("sent", "retry"):
        yield line(
            "alert_delivery",
            {
                "device": SILENT_SPEAKER,
                "commune": "trang-xa",
                "fault": "dead_air",
                "channel": "smtp",
                "outcome": outcome,
            },
            {"attempt": 1, "error": None if outcome == "sent" else "timeout"},
            now_ms - 1_700_000,
        )
    for minute in range(0, SEED_MINUTES, 1):
        ts = start + minute * MINUTE_MS
        counters = {
            "messages_in": minute * 90,
            "written": minute * 120,
            "spooled": 0,
            "invalid": minute // 30,
            "spool_depth": minute % 4,
        }
        yield line("backend_stats", {"process": "ingest-1", "role": "ingest"}, counters, ts)


@pytest.fixture
async def district(influx_db: Any) -> AsyncIterator[tuple[InfluxClient, int]]:
    """A database with the retention policies, rollups and a seeded district; yields (client, now_ms)."""
    now_ms = int(time.time() * 1000)
    async with InfluxClient(influx_db.base_url, influx_db.name) as client:
        await ensure_retention_and_rollups(client)
        await client.write(seed_district(now_ms))
        first_hour = (now_ms - SEED_MINUTES * MINUTE_MS) // HOUR_MS * HOUR_MS
        await backfill(client, first_hour, now_ms + MINUTE_MS)
        yield client, now_ms


# --- Grafana's macros -----------------------------------------------------------------------


def grafana_values() -> dict[str, list[str]]:
    """Values the template variables take: every commune, hamlet, kind and device."""
    return {
        "commune": sorted({d[1] for d in FLEET}),
        "hamlet": sorted({d[2] for d in FLEET}),
        "kind": sorted({d[3] for d in FLEET}),
        "device": sorted(d[0] for d in FLEET),
    }


def substitute(query: str, now_ms: int, rp: str) -> str:
    """Replace Grafana's macros and variables as its InfluxDB data source does.

    The range is the last 3 hours, or the last 2 days when ``$rp`` is the daily rollups (one
    point a day, stamped at 00:00 Vietnam time, which a 3-hour range rarely holds).
    """
    hours = 48 if rp == ROLLUP_1D_RP else 3
    return querytools.substitute(
        query, grafana_values(), start_ms=now_ms - hours * HOUR_MS, end_ms=now_ms, rp=rp
    )


panel_queries = querytools.panel_queries


CHECKED: list[tuple[str, int, list[str]]] = []
ALIAS = re.compile(r'AS "(\w+)"')


def outer_aliases(query: str) -> set[str]:
    """Column aliases of the outermost SELECT (ignores those inside a subquery)."""
    depth, outer = 0, []
    for char in query:
        depth += char == "("
        if depth == 0:
            outer.append(char)
        depth -= char == ")"
    return set(ALIAS.findall("".join(outer)))


async def check_query(client: InfluxClient, query: str) -> list[str]:
    """Problems with one substituted panel query: error, no rows, missing column, all null."""
    try:
        series = await client.query(query)
    except Exception as error:
        return [f"{query}: {error}"]
    if not series or not any(s.get("values") for s in series):
        return [f"{query}: returned no rows"]
    problems = []
    CHECKED.append((query, sum(len(s["values"]) for s in series), series[0]["columns"]))
    columns = set(series[0]["columns"])
    missing = outer_aliases(query) - columns
    if missing:
        problems.append(f"{query}: columns {sorted(missing)} missing from {sorted(columns)}")
    data = [v for s in series for row in s["values"] for v in row[1:]]
    if all(v is None for v in data):
        problems.append(f"{query}: every value is null")
    return problems


async def check_dashboard(client: InfluxClient, now_ms: int, dashboard: dict[str, Any]) -> list[str]:
    """Problems of every panel query (at each resolution a ``$rp`` query can take) and variable."""
    problems = []
    for title, ref_id, raw_query in panel_queries(dashboard):
        for rp in (RAW_RP, ROLLUP_1M_RP, ROLLUP_1H_RP, ROLLUP_1D_RP) if "$rp" in raw_query else (RAW_RP,):
            for problem in await check_query(client, substitute(raw_query, now_ms, rp)):
                problems.append(f"{dashboard['uid']} / {title} / {ref_id} ({rp}): {problem}")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        series = await client.query(substitute(variable["query"], now_ms, RAW_RP))
        if not any(s.get("values") for s in series):
            problems.append(f"{dashboard['uid']} / variable {variable['name']}: no values")
    return problems


DASHBOARDS = render("vi")


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
async def test_every_panel_query_returns_data_from_a_seeded_district(
    district: tuple[InfluxClient, int], name: str
) -> None:
    client, now_ms = district
    assert list(panel_queries(DASHBOARDS[name])), f"{name} has no panel queries"
    problems = await check_dashboard(client, now_ms, DASHBOARDS[name])
    assert not problems, "\n".join(problems)


async def test_a_renamed_field_fails_the_query_check(district: tuple[InfluxClient, int]) -> None:
    client, now_ms = district
    broken = copy.deepcopy(DASHBOARDS["tincoso-device.json"])
    targets = [
        t for panel in broken["panels"] for t in panel.get("targets", []) if '"rms_power"' in t["query"]
    ]
    assert targets, "the device dashboard no longer shows the audio level"
    targets[0]["query"] = targets[0]["query"].replace('mean("rms_power")', 'mean("rms_power_renamed")')
    problems = await check_dashboard(client, now_ms, broken)
    assert problems
    assert all("returned no rows" in problem for problem in problems)
    assert len(problems) == 4  # once per resolution the $rp panel can take


async def test_a_broken_query_fails_the_query_check(district: tuple[InfluxClient, int]) -> None:
    client, _now_ms = district
    problems = await check_query(client, 'SELECT mean("rms_dbfs" FROM "audio"')
    assert problems
    assert "error parsing query" in problems[0]


async def test_silent_speaker_shows_as_silent_and_not_sounded(district: tuple[InfluxClient, int]) -> None:
    client, now_ms = district
    bulletins = DASHBOARDS["tincoso-bulletins.json"]
    per_hamlet = next(p for p in bulletins["panels"] if len(p.get("targets", [])) == 4)
    rows: dict[str, dict[str, float]] = {}
    for target in per_hamlet["targets"]:
        for series in await client.query(substitute(target["query"], now_ms, RAW_RP)):
            for column, value in zip(series["columns"][1:], series["values"][0][1:], strict=True):
                rows.setdefault(series["tags"]["hamlet"], {})[column] = value
    assert rows["thon-khuon-vang"]["played_min"] == pytest.approx(40)
    assert rows["thon-khuon-vang"]["silent_min"] == pytest.approx(40)
    assert "sounded_min" not in rows["thon-khuon-vang"]
    assert rows["thon-na-ca"]["sounded_min"] == pytest.approx(40)
    # Three-valued: how many readings stand behind the minutes (none would be "no data").
    assert rows["thon-khuon-vang"]["readings"] > 0


async def test_open_alerts_and_devices_in_fault_count_unconfirmed_alerts_and_not_closed_ones(
    district: tuple[InfluxClient, int],
) -> None:
    """An alert is open until it is closed: one left unconfirmed (its window ended before a
    measurement showed the fault gone) is still on the fleet's open-alert table and count."""
    client, now_ms = district
    queries = [q for _, _, q in panel_queries(DASHBOARDS["tincoso-fleet.json"])]
    table_query = next(q for q in queries if q.startswith('SELECT "commune", "hamlet", "device", "fault"'))
    listed = {
        (row["device"], row["fault"])
        for series in await client.query(substitute(table_query, now_ms, RAW_RP))
        for row in (dict(zip(series["columns"], values, strict=True)) for values in series["values"])
    }
    assert listed == {(SILENT_SPEAKER, "dead_air"), (DARK_BOARD, "board_dark")}
    count_query = next(q for q in queries if '"in_fault"' in q and "GROUP BY" not in q.rsplit(")", 1)[-1])
    series = await client.query(substitute(count_query, now_ms, RAW_RP))
    assert series[0]["values"][0][1] == 2


async def test_minutes_per_day_are_whole_vietnam_days_from_the_daily_rollups(
    district: tuple[InfluxClient, int],
) -> None:
    client, now_ms = district
    bulletins = DASHBOARDS["tincoso-bulletins.json"]
    per_day = next(p for p in bulletins["panels"] if "rollup_1d" in p["targets"][0]["query"])
    query = substitute(per_day["targets"][0]["query"], now_ms, RAW_RP)
    shown = {(s["tags"]["commune"], row[0]): row[1] for s in await client.query(query) for row in s["values"]}
    # The same minutes counted from raw readings, per day in Vietnam time.
    raw_query = (
        f'SELECT sum("window_s") / 60 FROM "raw"."audio" WHERE time > {now_ms - 48 * HOUR_MS}ms '
        f"AND ({SOUNDED_WHERE}) "
        "GROUP BY time(1d), \"commune\" fill(none) tz('Asia/Ho_Chi_Minh')"
    )
    expected = {
        (s["tags"]["commune"], row[0]): row[1] for s in await client.query(raw_query) for row in s["values"]
    }
    # Each speaker of the bulletin that sounded adds 40 minutes, whichever day they fall in.
    assert sum(v for (commune, _), v in expected.items() if commune == "trang-xa") == pytest.approx(40)
    assert {key: value for key, value in shown.items() if value} == pytest.approx(expected)
    # Days start at 00:00 in Vietnam (17:00 UTC).
    assert all((day_ms + 7 * HOUR_MS) % (24 * HOUR_MS) == 0 for _, day_ms in shown)
