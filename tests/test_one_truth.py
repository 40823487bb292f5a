"""One truth (issue 14): the monitor, the dashboards' queries, every rollup level and the KPI
report give the same answer for every hamlet and day, and one threshold moves them all.

Readings are built by the agent's own core (`agent.core.messages.MessageBuilder`, batches by
`agent.core.backlog.batch_payload`) and go through the real broker and the real ingest into
a real InfluxDB; the hamlet whose 4G was down on the last day replays that bulletin late,
after everything else. One hamlet never sends anything, one plays its second bulletin quietly
(-48 dBFS: sounded at the default -50 dBFS threshold, silent at -45 dBFS).

Answer per hamlet and day: ``sounded`` (audio that sounded for at least half the bulletin,
the KPI's S = 50 %), ``silent`` (readings, but not enough sound) or ``no_data``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.core.backlog import batch_payload
from agent.core.messages import MessageBuilder
from backend.config import config_from_dict
from backend.influx import InfluxClient, rows
from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions
from backend.kpi.model import Period
from backend.kpi.queries import fetch_measurements
from backend.localservices import LocalMosquitto
from backend.monitor.clock import ManualClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.rules import RulesConfig
from backend.monitor.service import Monitor
from backend.registry import LOCAL_TZ, parse_registry
from backend.rollups import RetentionConfig, backfill, ensure_retention_and_rollups
from dashboards.build import constants_of, render
from dashboards.querytools import substitute
from protocols import payloads, topics
from tests.integrity_support import running_ingest
from tests.test_ingest_integration import Publisher, _config, _wait_for

pytestmark = pytest.mark.slow

HAMLETS = {"loa-01": "Xóm Na Ca", "loa-02": "Xóm Trung", "loa-03": "Xóm Khuổi", "loa-04": "Xóm Mới"}
DEVICES = {f"vn-trangxa-{k}": v for k, v in HAMLETS.items()}
REGISTRY = parse_registry(
    "district: Võ Nhai\ncommunes:\n"
    "  - {id: trang-xa, name: Tràng Xá, type: commune, radio_system: ip,\n"
    '     schedule: [{name: Bản tin chiều, start: "17:00", end: "18:00"}]}\n'
    "devices:\n"
    + "".join(
        f"  - {{id: {d}, kind: speaker_cluster, commune: trang-xa, hamlet: {h}}}\n"
        for d, h in DEVICES.items()
    )
)
FIRST_DAY = (datetime.now(LOCAL_TZ) - timedelta(days=5)).date()
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(3)]
QUIET, LOUD, DEAD = -48.0, -18.0, -90.0


def _bulletin_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 17, 0, tzinfo=LOCAL_TZ).timestamp() * 1000)


def _plan(device: str, day_index: int) -> float | None:
    """The bulletin's RMS for a hamlet and day (None: nothing sent)."""
    if device.endswith("loa-04"):
        return None
    if device.endswith("loa-02") and day_index == 1:
        return QUIET
    if device.endswith("loa-03") and day_index == 1:
        return DEAD
    return LOUD


def _bulletin(device: str, day_index: int, rms: float) -> list[dict[str, Any]]:
    """What the agent reports during one bulletin: 60 one-minute audio windows."""
    builder = MessageBuilder(device, f"boot-{day_index}")
    start = _bulletin_start_ms(DAYS[day_index])
    dead = rms == DEAD
    out = []
    for minute in range(60):
        ts = start + (minute + 1) * 60_000
        fields = {
            "window_s": 60.0,
            "playing": not dead,
            "rms_dbfs": rms,
            "peak_dbfs": min(0.0, rms + 10),
            "dead_air": dead,
            "dead_air_s": 60.0 * (minute + 1) if dead else 0,
            "clipping": False,
            "amp_power_w": 55.0,
        }
        out.append(builder.build("audio", fields, minute, ts, True, 1_000_000 + minute * 60_000))
    return out


def _answer(sounded_s: float, samples: float) -> str:
    if sounded_s >= 1800:
        return "sounded"
    return "silent" if samples else "no_data"


async def _kpi_view(influx: InfluxClient, threshold: float) -> dict[tuple[str, date], str]:
    defs = Definitions(dead_air_threshold_dbfs=threshold)
    period = Period(DAYS[0], DAYS[-1])
    m = await fetch_measurements(influx, period, defs)
    report = compute_report(REGISTRY, m, period, defs, now_ms=period.end_ms)
    return {(b.device, b.day): b.status for b in report.bulletins}


async def _rollup_view(influx: InfluxClient, rp: str) -> dict[tuple[str, date], str]:
    out = {}
    for day in DAYS:
        start = _bulletin_start_ms(day)
        # A daily point is stamped at 00:00 local time: read the whole local day.
        low, high = (
            (start - 17 * 3_600_000, start + 7 * 3_600_000)
            if rp == "rollup_1d"
            else (start, start + 3_600_000)
        )
        found = {
            r["device"]: r
            for r in rows(
                await influx.query(
                    f'SELECT sum("sounded_s") AS "s", sum("samples") AS "n" FROM "{rp}"."audio" '
                    f'WHERE time >= {low}ms AND time < {high}ms GROUP BY "device"'
                )
            )
        }
        for device in DEVICES:
            r = found.get(device, {})
            out[(device, day)] = _answer(r.get("s") or 0.0, r.get("n") or 0)
    return out


async def _dashboard_view(influx: InfluxClient, threshold: float) -> dict[tuple[str, date], str]:
    """The bulletins dashboard's per-hamlet table (raw readings), as Grafana runs it."""
    board = render("vi", threshold)["tincoso-bulletins.json"]
    panel = next(p for p in board["panels"] if len(p.get("targets", [])) >= 3)
    values = {"commune": ["trang-xa"], "hamlet": list(HAMLETS.values()), "kind": ["speaker_cluster"]}
    out = {}
    for day in DAYS:
        start = _bulletin_start_ms(day)
        merged: dict[str, dict[str, float]] = {}
        for target in panel["targets"]:
            query = substitute(
                target["query"],
                values,
                start_ms=start,
                end_ms=start + 3_600_000,
                constants=constants_of(board),
            )
            for r in rows(await influx.query(query)):
                merged.setdefault(r["hamlet"], {}).update(
                    {k: v for k, v in r.items() if isinstance(v, float | int)}
                )
        for device, hamlet in DEVICES.items():
            r = merged.get(hamlet, {})
            out[(device, day)] = _answer(60 * (r.get("sounded_min") or 0.0), r.get("readings") or 0)
    return out


def _monitor_view(
    threshold: float, plan: dict[str, list[list[dict[str, Any]]]], state_dir: Path
) -> dict[tuple[str, date], str]:
    """The monitor, fed live what each agent sent live: dead air alerts during the bulletin."""
    out = {}
    for day_index, day in enumerate(DAYS[:2]):  # the last day arrived late: the monitor judges live data
        clock = ManualClock(_bulletin_start_ms(day) / 1000)
        config = MonitorConfig(
            monitor=MonitorSettings(
                client_id="truth-monitor", state_dir=str(state_dir / f"{threshold}-{day}")
            ),
            rules=RulesConfig(sound_threshold_dbfs=threshold),
            alerts=AlertSettings(),
        )
        monitor = Monitor(config, REGISTRY, None, clock=clock, channels={})
        heard: set[str] = set()
        opened: set[str] = set()
        for device, bulletins in plan.items():
            for msg in bulletins[day_index]:
                clock.set(msg["ts"] / 1000)
                monitor.handle(topics.topic_for(msg), payloads.encode(msg))
                heard.add(device)
                opened |= {d for d, f in monitor.store.open if f == "dead_air"}
        for device in DEVICES:
            answer = "silent" if device in opened else "sounded" if device in heard else "no_data"
            out[(device, day)] = answer
    return out


async def _all_views(
    influx: InfluxClient, threshold: float, plan: dict[str, list[list[dict[str, Any]]]], state_dir: Path
) -> dict[str, dict[tuple[str, date], str]]:
    views = {
        "kpi": await _kpi_view(influx, threshold),
        "dashboard_raw": await _dashboard_view(influx, threshold),
    }
    for rp in ("rollup_1m", "rollup_1h", "rollup_1d"):
        views[rp] = await _rollup_view(influx, rp)
    monitor = _monitor_view(threshold, plan, state_dir)
    views["monitor"] = {k: v for k, v in views["kpi"].items() if k not in monitor} | monitor
    return views


async def test_monitor_dashboards_rollups_and_kpi_agree_for_every_hamlet_and_day(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(
        _config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root, late_debounce_s=1.0)
    )
    plan = {
        device: [_bulletin(device, n, rms) if (rms := _plan(device, n)) is not None else [] for n in range(3)]
        for device in DEVICES
    }
    publisher = Publisher(mosquitto, root)
    late = "vn-trangxa-loa-03"
    async with (
        running_ingest(config, REGISTRY) as service,
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        for device, bulletins in plan.items():
            for n, msgs in enumerate(bulletins):
                if device == late and n == 2:
                    continue
                for msg in msgs:
                    publisher.send(msg)
        await asyncio.to_thread(publisher.flush)
        assert service.late_data is not None
        sent = sum(len(m) for d, b in plan.items() for n, m in enumerate(b) if (d, n) != (late, 2))
        await _wait_for(lambda: _recomputed(service, sent), limit_s=60, what="the first recompute")
        # The 4G came back: the agent replays the last bulletin as one batch.
        encoded = [payloads.encode(m) for m in plan[late][2]]
        publisher.raw(topics.topic_for({"kind": "batch", "device": late}, root), batch_payload(late, encoded))
        await asyncio.to_thread(publisher.flush)
        done = service.late_data.recomputes
        await _wait_for(lambda: _recomputed(service, sent + 1), limit_s=60, what="the late batch's arrival")
        await _wait_for(
            lambda: _true(service.late_data.recomputes > done and service.late_data.start_ms is None),
            limit_s=60,
            what="the late batch's recompute",
        )

        views = await _all_views(influx, -50.0, plan, tmp_path)
        expected = {
            (d, day): ("no_data" if _plan(d, n) is None else "silent" if _plan(d, n) == DEAD else "sounded")
            for d in DEVICES
            for n, day in enumerate(DAYS)
        }
        for name, view in views.items():
            assert view == expected, name

        # One threshold, set once, moves every view: the quiet bulletin is now silent.
        await ensure_retention_and_rollups(influx, RetentionConfig(sound_threshold_dbfs=-45.0))
        await backfill(
            influx,
            _bulletin_start_ms(DAYS[0]) - 86_400_000,
            _bulletin_start_ms(DAYS[-1]) + 86_400_000,
            sound_threshold_dbfs=-45.0,
        )
        expected[("vn-trangxa-loa-02", DAYS[1])] = "silent"
        for name, view in (await _all_views(influx, -45.0, plan, tmp_path)).items():
            assert view == expected, name
    publisher.close()


async def _true(value: bool) -> bool:
    return value


async def _recomputed(service: Any, messages: int) -> bool:
    """Every message is in, and its late readings' rollups were recomputed (none pending)."""
    late = service.late_data
    if late is None or service.stats.messages_in < messages or late.start_ms is not None:
        return False
    return bool(late.recomputes) and service.stats.written >= late.late_points
