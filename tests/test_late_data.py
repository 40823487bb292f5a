"""Late readings correct every rollup level (issue 14, item 2).

A batch replayed hours after a 4G outage goes through the real broker and the real ingest
into a real InfluxDB; the ingest's debounced recompute fills the 1-minute, hourly and daily
rollups of those hours, which then agree with ``raw``, and says so in ``backend_stats``.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.config import config_from_dict
from backend.influx import InfluxClient, rows
from backend.ingest.late_data import LATE_AFTER_MS, LateData
from backend.localservices import LocalMosquitto
from backend.registry import parse_registry
from protocols import payloads
from protocols.stored_data import ENERGY_MEAN_DBFS, sounded_where
from tests.test_ingest_integration import (
    DEVICES,
    REGISTRY_YAML,
    Publisher,
    _config,
    _wait_for,
    running_ingest,
)

HOUR_MS = 3_600_000


def _line(ts_ms: int, seq: int = 7) -> str:
    return f"audio,device=d rms_dbfs=-20 {ts_ms * 1_000_000 + seq}"  # ingest's nanoseconds


async def test_late_readings_are_recomputed_once_quiet_and_in_bounded_spans() -> None:
    now = [1_000_000.0]
    calls: list[tuple[int, int]] = []

    async def backfill(start_ms: int, end_ms: int) -> int:
        calls.append((start_ms, end_ms))
        return 3

    late = LateData(backfill, debounce_s=30, max_wait_s=300, max_span_s=3600, clock=lambda: now[0])
    now_ms = int(now[0] * 1000)
    late.note([_line(now_ms - 1000), _line(now_ms - LATE_AFTER_MS + 1000)])  # fresh: CQs see them
    assert not late.due()
    assert late.late_points == 0
    late.note([_line(now_ms - 3 * HOUR_MS), _line(now_ms - HOUR_MS)])
    assert not late.due()  # the replay may go on
    now[0] += 31
    assert late.due()
    assert await late.recompute() == 3
    assert calls == [(now_ms - 3 * HOUR_MS, now_ms - 2 * HOUR_MS)]  # at most an hour per run
    assert late.due()
    await late.recompute()
    await late.recompute()
    assert calls[-1] == (now_ms - HOUR_MS, now_ms - HOUR_MS + 1)
    assert late.fields() == {
        "late_points": 2,
        "recomputes": 3,
        "recompute_points": 9,
        "recompute_errors": 0,
        "recompute_pending_s": 0.0,
    }


async def test_a_changed_definition_recomputes_a_whole_range_span_after_span() -> None:
    now = [1_000_000.0]
    calls: list[tuple[int, int]] = []

    async def backfill(start_ms: int, end_ms: int) -> int:
        calls.append((start_ms, end_ms))
        return 1

    late = LateData(backfill, debounce_s=1, max_wait_s=10, max_span_s=86_400, clock=lambda: now[0])
    late.note_range(0, 3 * 86_400_000)
    now[0] += 2
    task = asyncio.create_task(late.run(poll_s=0.01))
    try:
        await _wait_for(lambda: _done(late), limit_s=10, what="three spans")
    finally:
        task.cancel()
    assert calls == [(0, 86_400_000), (86_400_000, 172_800_000), (172_800_000, 259_200_000)]
    assert late.late_points == 0  # nothing arrived late: the definition changed


async def _done(late: LateData) -> bool:
    return late.start_ms is None


def _replayed_bulletin(device: str, start_ms: int) -> dict[str, Any]:
    """What an agent replays after an outage: 40 audio readings of 10 s, built and batched."""
    items = []
    for seq in range(40):
        env = payloads.envelope(
            device, start_ms + seq * 10_000, True, 5_000_000 + seq * 10_000, "b-late", seq
        )
        quiet = seq >= 28  # the last 120 s near the threshold: -49 dBFS sounds at -50
        fields = {
            "window_s": 10.0,
            "playing": True,
            "rms_dbfs": -49.0 if quiet else -18.0,
            "peak_dbfs": -30.0 if quiet else -3.0,
            "dead_air": False,
            "dead_air_s": 0,
            "clipping": False,
        }
        items.append(payloads.build("audio", env, fields))
    return payloads.batch(device, items)


async def _stats(influx: InfluxClient) -> dict[str, Any] | None:
    found = rows(await influx.query('SELECT last("recomputes") AS "recomputes" FROM backend_stats'))
    return found[0] if found and found[0]["recomputes"] else None


@pytest.mark.slow
async def test_batch_replayed_hours_late_reaches_every_rollup_level(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    raw_config = _config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root, late_debounce_s=1.0)
    config = config_from_dict(raw_config)
    start = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS + 17 * 60_000
    publisher = Publisher(mosquitto, root)
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)),
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        publisher.send(_replayed_bulletin(DEVICES[0], start))
        await asyncio.to_thread(publisher.flush)
        await _wait_for(lambda: _stats(influx), limit_s=60, what="a late-data recompute in backend_stats")
        window = f"time >= {start - HOUR_MS}ms AND time < {start + 2 * HOUR_MS}ms"
        raw = rows(
            await influx.query(
                f'SELECT count("rms_dbfs") AS "n", sum("window_s") AS "s" FROM "raw"."audio" '
                f"WHERE {window} AND ({sounded_where()})"
            )
        )[0]
        for rp in ("rollup_1m", "rollup_1h", "rollup_1d"):
            rolled = rows(
                await influx.query(
                    f'SELECT sum("samples") AS "n", sum("sounded_s") AS "s" FROM "{rp}"."audio" '
                    f"WHERE time >= {start - 86_400_000}ms"
                )
            )
            assert rolled, rp
            assert (rolled[0]["n"], rolled[0]["s"]) == (raw["n"], raw["s"]) == (40, 400.0), rp
        # Levels average by energy, minute by minute as in raw (as the agent does in its window).
        per_minute = (
            f'SELECT {ENERGY_MEAN_DBFS} AS "db" FROM "%s"."audio" WHERE {window} GROUP BY time(1m) fill(none)'
        )
        raw_minutes = rows(await influx.query(per_minute % "raw"))
        rolled_minutes = rows(await influx.query(per_minute % "rollup_1m"))
        assert [r["db"] for r in rolled_minutes] == pytest.approx([r["db"] for r in raw_minutes])
        quiet_minute = 10 * math.log10((4 * 10 ** (-18 / 10) + 2 * 10 ** (-49 / 10)) / 6)
        assert quiet_minute == pytest.approx(-19.76, abs=0.01)  # a mean of dB values would say -28.3
        assert any(r["db"] == pytest.approx(quiet_minute) for r in rolled_minutes)
    publisher.close()
