"""The dashboards' panel queries on data made by real agents, through Mosquitto and the backend.

tests/test_dashboards_queries.py seeds every measurement a panel reads (alerts, gaps,
KPI) as line protocol; here the readings come from agent processes reading simulated
hardware, ingested by the backend process (ingest and monitor) into a real InfluxDB. The
panels built on what a fresh fleet reports must return rows: the fleet's counts (online
beside registered, from the monitor's state and device_info points) and the device
detail's heartbeat and audio panels.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from backend.influx import InfluxClient
from dashboards import querytools
from dashboards.build import render
from hil_tests.rig import Rig
from tests.services_fixtures import InfluxDatabase

DASHBOARDS = render("vi")
# (dashboard, panel title) -> the targets a healthy fleet of fresh agents fills within a
# minute (no alert is open, and the simulated controller has no temperature sensor).
FILLED = {
    ("tincoso-fleet.json", "Đang trực tuyến"): (0, 1),
    ("tincoso-fleet.json", "Theo xã: cụm loa và bảng tin"): (0, 1),  # registered, online
    ("tincoso-device.json", "Thời gian hoạt động liên tục"): (0,),
    ("tincoso-device.json", "Âm thanh: RMS và đỉnh (dBFS)"): (0, 1),
    ("tincoso-device.json", "Tín hiệu di động (dBm)"): (0,),
    ("tincoso-device.json", "Nhiệt độ (°C)"): (1,),  # the board's display temperature
}


async def _rows(db: InfluxDatabase, query: str) -> tuple[int, str | None]:
    async with InfluxClient(db.base_url, db.name) as client:
        try:
            series = await client.query(query)
        except Exception as error:
            return 0, str(error)
    return sum(len(s.get("values") or []) for s in series), None


def _queries(rig: Rig, now_ms: int) -> dict[tuple[str, str], list[str]]:
    devices = list(rig)
    values = {
        "commune": sorted({d.fleet_device.commune for d in devices}),
        "hamlet": sorted({d.fleet_device.hamlet for d in devices}),
        "kind": sorted({d.fleet_device.kind for d in devices}),
        "device": sorted(d.id for d in devices),
    }
    out: dict[tuple[str, str], list[str]] = {}
    for name, dashboard in DASHBOARDS.items():
        for title, _ref, query in querytools.panel_queries(dashboard):
            text = querytools.substitute(query, values, start_ms=now_ms - 3_600_000, end_ms=now_ms + 60_000)
            out.setdefault((name, title), []).append(text)
    return out


def test_panels_show_what_real_agents_report(rig: Rig, influx_db: InfluxDatabase) -> None:
    loa = rig.add_speaker_cluster(commune="trang-xa", hamlet="Nà Hốc")
    rig.add_board("eboard", commune="trang-xa")
    rig.backend(influx_db.base_url, influx_db.name, role="all").start()
    rig.start()
    loa.speaker.start_bulletin("ban-tin-chieu")
    deadline = time.monotonic() + 60
    missing: dict[tuple[str, str], Any] = {}
    while True:
        queries = _queries(rig, int(time.time() * 1000))
        missing = {}
        errors = []
        for key, texts in queries.items():
            results = [asyncio.run(_rows(influx_db, text)) for text in texts]
            errors += [f"{key}: {error}" for _, error in results if error]
            if key in FILLED and any(results[i][0] == 0 for i in FILLED[key]):
                missing[key] = [rows for rows, _ in results]
        assert not errors, "\n".join(errors)  # every panel query is valid InfluxQL on real data
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not missing, f"panels without rows from real agents: {missing}"
    online = queries[("tincoso-fleet.json", "Đang trực tuyến")]
    counts = [asyncio.run(_last(influx_db, text)) for text in online]
    assert counts == [2, 2]  # two online beside two registered


async def _last(db: InfluxDatabase, query: str) -> Any:
    async with InfluxClient(db.base_url, db.name) as client:
        series = await client.query(query)
    return series[0]["values"][-1][1] if series else None
