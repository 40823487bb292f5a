"""One truth over a district month made by real agents (issue 14).

Three `agent.runtime.Agent`s (the CPython agent: audio probe on a PCM stream, reporting
policy, SQLite queue, MQTT session with receipts) run on a simulated clock through a
30-day month and publish over the real broker into the real ingest and InfluxDB. Their
audio probes measure PCM the test streams to them over TCP, like a receiver's line out:
the whole of every 15-minute evening bulletin (-18 dBFS, -48 dBFS for a quiet one, digital
silence for a dead amplifier) and one second of silence per hour outside bulletins (the
simulated clock jumps an hour between polls there, so a month costs seconds, not hours).
A fourth hamlet's cluster is registered but never sends anything. One hamlet's 4G is cut
(a TCP proxy) for 56 hours: its agent keeps measuring into its durable queue and replays
three bulletins late, in batches; the ingest's late-data recompute corrects the rollups.

For every hamlet and day the test asks: the KPI report's bulletin status; the bulletins
dashboard's panels as Grafana runs them (the per-hamlet table and the 30-minute series on
raw points, the daily series on ``rollup_1d``); each rollup level queried directly; and
the monitor, fed every message in the order and at the (simulated) time it arrived. They
give one answer: ``sounded`` (audio that sounded for at least half the bulletin, the
KPI's S = 50 %), ``silent`` or ``no_data``. The monitor judges live readings only (a
batch replayed after an outage proves the device was alive, it does not raise or clear
alerts hours later; see the `backend.monitor` package docstring): during the outage its answer is
``offline``, while the report and every dashboard show the replayed bulletins.

Then ``[definitions] sound_threshold_dbfs`` goes from -50 to -45 in backend.toml: the
ingest restarts with it, re-creates its continuous queries and, on its own, recomputes the
rollups of everything ``raw`` holds; the quiet bulletins become silent in every view.
"""

from __future__ import annotations

import array
import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.clock import Clock
from agent.config import AgentConfig
from agent.probes.audio import AudioProbe
from agent.runtime import Agent, create_probes
from backend.cli.kpi import with_sound_threshold
from backend.config import BackendConfig, config_from_dict
from backend.influx import InfluxClient, rows
from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions
from backend.kpi.model import Period
from backend.kpi.queries import fetch_measurements
from backend.localservices import LocalMosquitto
from backend.monitor.clock import ManualClock
from backend.monitor.config import MonitorConfig
from backend.monitor.service import Monitor
from backend.registry import LOCAL_TZ, parse_registry
from dashboards.build import constants_of, render
from dashboards.querytools import substitute
from hil_tests.faults.proxy import TcpProxy
from tests.integrity_support import running_ingest
from tests.test_ingest_integration import _config, _wait_for

pytestmark = pytest.mark.slow

HAMLETS = {"loa-01": "Xóm Na Ca", "loa-02": "Xóm Trung", "loa-03": "Xóm Khuổi", "loa-04": "Xóm Mới"}
DEVICES = {f"vn-trangxa-{k}": v for k, v in HAMLETS.items()}
SILENT_DEVICE = "vn-trangxa-loa-04"  # registered, never sends anything
OUTAGE_DEVICE = "vn-trangxa-loa-03"
QUIET_DEVICE = "vn-trangxa-loa-02"
REGISTRY_YAML = (
    "district: Võ Nhai\ncommunes:\n"
    "  - {id: trang-xa, name: Tràng Xá, type: commune, radio_system: ip,\n"
    '     schedule: [{name: Bản tin chiều, start: "17:00", end: "17:15"}]}\n'
    "devices:\n"
    + "".join(
        f"  - {{id: {d}, kind: speaker_cluster, commune: trang-xa, hamlet: {h}}}\n"
        for d, h in DEVICES.items()
    )
)
REGISTRY = parse_registry(REGISTRY_YAML)
N_DAYS = 30
RAW_DAYS = N_DAYS + 5
FIRST_DAY = (datetime.now(LOCAL_TZ) - timedelta(days=N_DAYS + 2)).date()
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(N_DAYS)]
BULLETIN_MIN = 15
LOUD, QUIET, DEAD = -18.0, -48.0, None
RATE = 1000
# The 4G of loa-03 is down from 12:00 on day 20 to 20:00 on day 22 (56 h, three bulletins).
OUTAGE = ((20, 12), (22, 20))


def _local_s(day: date, hour: int, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=LOCAL_TZ).timestamp()


def _level(device: str, n: int) -> float | None:
    """What the receiver of ``device`` plays in day ``n``'s bulletin (None: dead amplifier)."""
    if device == QUIET_DEVICE and n % 7 == 5:
        return QUIET
    if device == OUTAGE_DEVICE and n in (8, 9, 21):
        return DEAD
    return LOUD


def _expected(device: str, n: int, threshold: float) -> str:
    if device == SILENT_DEVICE:
        return "no_data"
    level = _level(device, n)
    return "sounded" if level is not None and level > threshold else "silent"


def _in_outage(t: float) -> bool:
    (d0, h0), (d1, h1) = OUTAGE
    return _local_s(DAYS[d0], h0) <= t < _local_s(DAYS[d1], h1)


def _pcm(seconds: int, dbfs: float | None) -> bytes:
    """A square wave whose RMS is ``dbfs`` (None: digital silence)."""
    amplitude = 0 if dbfs is None else round(32768 * 10 ** (dbfs / 20))
    return array.array("h", [amplitude, -amplitude] * (seconds * RATE // 2)).tobytes()


class SimClock:
    """The month's clock: every agent's wall and boot clock reads it."""

    def __init__(self, start_s: float) -> None:
        self.now = start_s
        self.boot = start_s - 60

    def clock(self) -> Clock:
        return Clock(sync_check=lambda: True, wall=lambda: self.now, boot=lambda: self.now - self.boot)


class LineOut:
    """A receiver's line out: a TCP PCM stream the agent's audio probe connects to."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writer = writer

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def play(self, pcm: bytes) -> None:
        await _wait_until(lambda: self.writer is not None, "the audio probe to connect")
        assert self.writer is not None
        self.writer.write(pcm)
        await self.writer.drain()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.server is not None:
            self.server.close()


class Arrivals:
    """Everything the broker delivers, with the simulated time it arrived at (a paho thread)."""

    def __init__(self, broker: LocalMosquitto, root: str, sim: SimClock) -> None:
        self.log: list[tuple[float, str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.sim = sim
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"{root}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith(("/receipt", "/cmd")):
            return
        with self.lock:
            self.log.append((self.sim.now, message.topic, message.payload, bool(message.retain)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class District:
    """The month: three agents on a simulated clock, one behind a proxy that cuts its 4G."""

    def __init__(self, tmp_path: Path, broker: LocalMosquitto, root: str) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.root = root
        self.sim = SimClock(_local_s(DAYS[0], 0))
        self.lines = {d: LineOut() for d in DEVICES if d != SILENT_DEVICE}
        self.proxy = TcpProxy(broker.host, broker.port)
        self.agents: dict[str, Agent] = {}
        self.sessions: list[asyncio.Task[None]] = []
        self.ticks: list[float] = []
        self.streamed: dict[str, float] = dict.fromkeys(self.lines, 0.0)

    async def start(self) -> None:
        self.proxy.start()
        for device, line in self.lines.items():
            await line.start()
            port = self.proxy.port if device == OUTAGE_DEVICE else self.broker.port
            config = AgentConfig(
                {
                    "device": {
                        "id": device,
                        "kind": "speaker_cluster",
                        "state_dir": str(self.tmp_path / device),
                    },
                    "mqtt": {
                        "host": "127.0.0.1",
                        "port": port,
                        "topic_root": self.root,
                        "reconnect_min_s": 0.1,
                        "reconnect_max_s": 0.5,
                        "receipt_timeout_s": 5,
                    },
                    "reporting": {"heartbeat_s": 1800, "snapshot_s": 300, "poll_s": 60, "jitter": 0.0},
                    "probes": {
                        "audio": {
                            "source": f"tcp://127.0.0.1:{line.port}",
                            "rate": RATE,
                            "read_timeout_s": 120,
                        }
                    },
                }
            )
            (self.tmp_path / device).mkdir()
            agent = Agent(config, create_probes(config), clock=self.sim.clock(), boot_id=f"boot-{device}")
            for probe in agent.probes.values():
                await probe.start()
            self.agents[device] = agent
            self.sessions.append(asyncio.create_task(agent.session.run()))
        for agent in self.agents.values():
            await asyncio.wait_for(agent.session.connected.wait(), 20)

    async def step(self, seconds: int, levels: dict[str, float | None]) -> None:
        """Play ``seconds`` of audio to every receiver, move the clock on, poll every agent."""
        for device, line in self.lines.items():
            await line.play(_pcm(seconds, levels.get(device)))
            self.streamed[device] += seconds
        for device, agent in self.agents.items():
            probe = agent.probes["audio"]
            assert isinstance(probe, AudioProbe)
            wanted = self.streamed[device] - 1e-6
            await _wait_until(lambda p=probe, w=wanted: p.stream_s >= w, "the probe to measure")
        self.sim.now += seconds
        for agent in self.agents.values():
            await agent.poll_once()
        self.ticks.append(self.sim.now)

    async def drained(self) -> None:
        """Wait until every agent whose link is up has sent what it queued."""
        for device, agent in self.agents.items():
            if device == OUTAGE_DEVICE and _in_outage(self.sim.now):
                continue
            assert await agent.session.wait_drained(20), f"{device} did not send its queue"

    async def run_month(self) -> None:
        cut = False
        for n, day in enumerate(DAYS):
            for hour in range(24):
                if hour == 17:
                    await self._bulletin(n)
                    continue
                # An hour outside the bulletin: one second of silence, the clock jumps.
                self.sim.now = _local_s(day, hour) + 3599
                await self.step(1, {})
                if _in_outage(self.sim.now) != cut:
                    cut = not cut
                    if cut:
                        self.proxy.cut()
                    else:
                        self.proxy.restore()
            await self.drained()

    async def _bulletin(self, n: int) -> None:
        self.sim.now = _local_s(DAYS[n], 17)
        levels = {d: _level(d, n) for d in self.lines}
        for _ in range(BULLETIN_MIN):
            await self.step(60, levels)
            await self.drained()
        await self.step(60, {})  # 17:16: the bulletin is over
        await self.drained()

    async def stop(self) -> None:
        for agent in self.agents.values():
            await asyncio.wait_for(agent.session.stop(), 10)
        for task in self.sessions:
            task.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)
        for agent in self.agents.values():
            for probe in agent.probes.values():
                await probe.close()
            agent.queue.close()
        for line in self.lines.values():
            await line.close()
        self.proxy.stop()


async def _wait_until(check: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


# -- the views ---------------------------------------------------------------------------


def _answer(sounded_s: float, samples: float) -> str:
    if sounded_s >= BULLETIN_MIN * 60 / 2:
        return "sounded"
    return "silent" if samples else "no_data"


def _bulletin_ms(day: date) -> tuple[int, int]:
    """The bulletin's readings: stamped from 17:00 to 17:15 (each ends its window)."""
    start = int(_local_s(day, 17) * 1000)
    return start, start + BULLETIN_MIN * 60_000


async def _kpi_view(influx: InfluxClient, config: BackendConfig) -> dict[tuple[str, date], str]:
    defs = with_sound_threshold(Definitions(), config.sound_threshold_dbfs)
    period = Period(DAYS[0], DAYS[-1])
    m = await fetch_measurements(influx, period, defs)
    report = compute_report(REGISTRY, m, period, defs, now_ms=period.end_ms)
    return {(b.device, b.day): b.status for b in report.bulletins}


async def _rollup_view(influx: InfluxClient, rp: str) -> dict[tuple[str, date], str]:
    out = {}
    for day in DAYS:
        start, end = _bulletin_ms(day)
        if rp == "rollup_1h":
            end = start + 3_600_000
        elif rp == "rollup_1d":  # a daily point is stamped at 00:00 local time
            start, end = int(_local_s(day, 0) * 1000), int(_local_s(day, 0) * 1000) + 86_400_000
        else:
            end += 1  # a minute point is stamped at its start: 17:15 holds the last minute
        found = {
            r["device"]: r
            for r in rows(
                await influx.query(
                    f'SELECT sum("sounded_s") AS "s", sum("samples") AS "n" FROM "{rp}"."audio" '
                    f'WHERE time >= {start}ms AND time < {end}ms GROUP BY "device"'
                )
            )
        }
        for device in DEVICES:
            r = found.get(device, {})
            out[(device, day)] = _answer(r.get("s") or 0.0, r.get("n") or 0)
    return out


def _bulletins_board(config: BackendConfig) -> dict[str, Any]:
    board: dict[str, Any] = render("vi", config.sound_threshold_dbfs)["tincoso-bulletins.json"]
    return board


def _panel(board: dict[str, Any], test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return next(p for p in board["panels"] if test(p))


async def _run_panel(
    influx: InfluxClient,
    board: dict[str, Any],
    panel: dict[str, Any],
    hamlets: list[str],
    start: int,
    end: int,
) -> list[dict[str, Any]]:
    values = {"commune": ["trang-xa"], "hamlet": hamlets, "kind": ["speaker_cluster"]}
    out: list[dict[str, Any]] = []
    for target in panel["targets"]:
        query = substitute(target["query"], values, start_ms=start, end_ms=end, constants=constants_of(board))
        out.extend(rows(await influx.query(query)))
    return out


async def _dashboard_views(
    influx: InfluxClient, config: BackendConfig
) -> dict[str, dict[tuple[str, date], str]]:
    board = _bulletins_board(config)
    table = _panel(board, lambda p: len(p.get("targets", [])) >= 3)
    series = _panel(
        board,
        lambda p: "GROUP BY time(30m)" in p["targets"][0]["query"] and "sounded" in p["targets"][0]["query"],
    )
    daily = _panel(board, lambda p: "rollup_1d" in p["targets"][0]["query"])
    views: dict[str, dict[tuple[str, date], str]] = {"table": {}, "series_30m": {}, "daily_rollup_1d": {}}
    month = int(_local_s(DAYS[0], 0) * 1000), int(_local_s(DAYS[-1], 0) * 1000) + 86_399_999
    # The series and the daily panel over the month, as a 30-day dashboard shows them;
    # the daily panel sums a commune: ask it for one hamlet at a time.
    series_rows = await _run_panel(influx, board, series, list(HAMLETS.values()), *month)
    daily_rows = {h: await _run_panel(influx, board, daily, [h], *month) for h in HAMLETS.values()}
    for day in DAYS:
        start, end = _bulletin_ms(day)
        merged: dict[str, dict[str, float]] = {}
        for r in await _run_panel(influx, board, table, list(HAMLETS.values()), start, end):
            merged.setdefault(r["hamlet"], {}).update(
                {k: v for k, v in r.items() if isinstance(v, float | int)}
            )
        day_start = int(_local_s(day, 0) * 1000)
        for device, hamlet in DEVICES.items():
            readings = merged.get(hamlet, {}).get("readings") or 0
            views["table"][(device, day)] = _answer(
                60 * (merged.get(hamlet, {}).get("sounded_min") or 0.0), readings
            )
            sounded = sum(
                60 * (r.get("sounded_min") or 0.0)
                for r in series_rows
                if r["hamlet"] == hamlet and start <= r["time"] < start + 1_800_000
            )
            views["series_30m"][(device, day)] = _answer(sounded, readings)
            sounded = sum(
                60 * (r.get("sounded_min") or 0.0) for r in daily_rows[hamlet] if r["time"] == day_start
            )
            views["daily_rollup_1d"][(device, day)] = _answer(sounded, readings)
    return views


def _monitor_view(
    config: BackendConfig, arrivals: list[tuple[float, str, bytes, bool]], ticks: list[float], state_dir: Path
) -> dict[tuple[str, date], str]:
    """The monitor, fed every message at the simulated time it arrived, ticked at every poll.

    Its answer per bulletin: ``silent`` when a dead-air alert is open in the bulletin's last
    ten minutes, ``offline`` when an offline alert is, ``sounded`` when live audio came in
    the bulletin, else ``no_data``.
    """
    monitor_config = MonitorConfig.from_backend(config)
    settings = replace(monitor_config.monitor, client_id="truth-monitor", state_dir=str(state_dir))
    monitor_config = replace(monitor_config, monitor=settings)
    clock = ManualClock(ticks[0] - 3600)
    monitor = Monitor(monitor_config, REGISTRY, None, clock=clock, channels={})
    events = sorted(
        [(t, 0, topic, payload, retained) for t, topic, payload, retained in arrivals]
        + [(t, 1, "", b"", False) for t in ticks],
        key=lambda e: (e[0], e[1]),
    )
    seen: dict[tuple[str, date], set[str]] = {}
    bulletins = {day: _bulletin_ms(day) for day in DAYS}
    for t, is_tick, topic, payload, retained in events:
        clock.set(max(clock.now(), t))
        if is_tick:
            monitor.tick()
        else:
            monitor.handle(topic, payload, retained=retained)
        local = datetime.fromtimestamp(t, LOCAL_TZ)
        start, end = bulletins.get(local.date(), (0, 0))
        if not start + 300_000 <= t * 1000 <= end:
            continue
        for device in DEVICES:
            notes = seen.setdefault((device, local.date()), set())
            if (device, "dead_air") in monitor.store.open:
                notes.add("silent")
            if (device, "offline") in monitor.store.open:
                notes.add("offline")
            audio = monitor.fleet.get(device).audio
            if audio is not None and audio["ts"] >= start:
                notes.add("heard")
    out = {}
    for device in DEVICES:
        for day in DAYS:
            notes = seen.get((device, day), set())
            answer = (
                "silent"
                if "silent" in notes
                else "offline"
                if "offline" in notes
                else "sounded"
                if "heard" in notes
                else "no_data"
            )
            out[(device, day)] = answer
    return out


async def _all_views(influx: InfluxClient, config: BackendConfig) -> dict[str, dict[tuple[str, date], str]]:
    views = {"kpi": await _kpi_view(influx, config)}
    for rp in ("rollup_1m", "rollup_1h", "rollup_1d"):
        views[rp] = await _rollup_view(influx, rp)
    for name, view in (await _dashboard_views(influx, config)).items():
        views["dashboard_" + name] = view
    return views


def _backend_config(
    tmp_path: Path, broker: LocalMosquitto, influx_db: Any, root: str, threshold: float
) -> BackendConfig:
    raw = _config(tmp_path, broker, influx_db.base_url, influx_db.name, root, late_debounce_s=1.0)
    (tmp_path / "registry.yaml").write_text(REGISTRY_YAML, encoding="utf-8")
    raw["mqtt"]["client_id"] = "truth-ingest"  # one persistent session across the restart
    raw["definitions"] = {"sound_threshold_dbfs": threshold}
    # A changed definition recomputes the rollups of all raw data: keep raw a little over the month.
    raw["influx"]["raw_days"] = RAW_DAYS
    return config_from_dict(raw)


def _mismatches(view: dict[tuple[str, date], str], expected: dict[tuple[str, date], str]) -> list[str]:
    return [
        f"{d} day {DAYS.index(day)}: {view.get((d, day))} (expected {want})"
        for (d, day), want in sorted(expected.items())
        if view.get((d, day)) != want
    ]


async def test_a_month_of_real_agents_gives_one_answer_in_monitor_dashboards_rollups_and_kpi(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = _backend_config(tmp_path / "backend", mosquitto, influx_db, root, -50.0)
    district = District(tmp_path, mosquitto, root)
    arrivals = Arrivals(mosquitto, root, district.sim)
    try:
        async with (
            running_ingest(config, REGISTRY) as service,
            InfluxClient(influx_db.base_url, influx_db.name) as influx,
        ):
            await district.start()
            began = time.monotonic()
            await district.run_month()
            simulated_s = time.monotonic() - began
            await _wait_for(
                lambda: _true(_settled_sync(service, district.agents)),
                limit_s=90,
                what="every reading stored and recomputed",
            )
            ticks = list(district.ticks)
            with arrivals.lock:
                log = list(arrivals.log)
            replayed = [p for _, topic, p, _ in log if topic.endswith(f"{OUTAGE_DEVICE}/batch")]
            assert replayed, "the outage's readings were replayed as batches"

            expected = {(d, day): _expected(d, n, -50.0) for d in DEVICES for n, day in enumerate(DAYS)}
            views = await _all_views(influx, config)
            for name, view in views.items():
                assert not _mismatches(view, expected), (name, _mismatches(view, expected))

            # The monitor judges live readings: during the outage it saw the cluster offline.
            live = dict(expected)
            for n in range(OUTAGE[0][0], OUTAGE[1][0] + 1):
                live[(OUTAGE_DEVICE, DAYS[n])] = "offline"
            monitor = _monitor_view(config, log, ticks, tmp_path / "monitor-50")
            assert not _mismatches(monitor, live), _mismatches(monitor, live)
        print(f"simulated month: {simulated_s:.1f} s, {len(log)} messages")

        # One threshold, set once in backend.toml, moves every view.
        config = _backend_config(tmp_path / "backend", mosquitto, influx_db, root, -45.0)
        async with (
            running_ingest(config, REGISTRY) as service,
            InfluxClient(influx_db.base_url, influx_db.name) as influx,
        ):
            # The ingest re-created the audio continuous queries and recomputes, on its own,
            # the rollups of everything raw holds, two days per span.
            late = service.late_data
            assert late is not None
            await _wait_for(
                lambda: _true(late.recomputes >= RAW_DAYS // 2 and late.start_ms is None),
                limit_s=120,
                what="the rollups recomputed with the new threshold",
            )
            expected = {(d, day): _expected(d, n, -45.0) for d in DEVICES for n, day in enumerate(DAYS)}
            assert expected != {
                (d, day): _expected(d, n, -50.0) for d in DEVICES for n, day in enumerate(DAYS)
            }
            for name, view in (await _all_views(influx, config)).items():
                assert not _mismatches(view, expected), (name, _mismatches(view, expected))
            live = dict(expected)
            for n in range(OUTAGE[0][0], OUTAGE[1][0] + 1):
                live[(OUTAGE_DEVICE, DAYS[n])] = "offline"
            monitor = _monitor_view(config, log, ticks, tmp_path / "monitor-45")
            assert not _mismatches(monitor, live), _mismatches(monitor, live)
    finally:
        await district.stop()
        arrivals.close()


def _settled_sync(service: Any, agents: dict[str, Agent]) -> bool:
    """Every agent's queue is empty (the backend receipted every reading), no recompute pending."""
    late = service.late_data
    if any(agent.queue.depth for agent in agents.values()):
        return False
    return late is not None and late.start_ms is None and bool(late.recomputes)


async def _true(value: bool) -> bool:
    return value
