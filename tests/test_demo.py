"""`tincoso demo`: a tiny Võ Nhai district through a short day, as a user runs it.

Real Mosquitto (secure mode), InfluxDB, backend and agent processes; the assertions are on
what the user sees (the summary, alerts delivered) and what the demo leaves behind
(provisioning files, Grafana provisioning, nothing running).
"""

from __future__ import annotations

import asyncio
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from backend.influx import InfluxClient
from backend.influx import line as influx_line
from hil_tests.demo.timeline import EVENING, MORNING, plan_timeline
from hil_tests.demo.watch import read_fleet
from tests.services_fixtures import InfluxDatabase

REPO = Path(__file__).resolve().parent.parent
TINY = ["--communes", "2", "--fleet-size", "2", "--no-align", "--no-pdf"]


def _demo_command(directory: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "backend.cli", "demo", "--dir", str(directory), *TINY, *options]


def _left_running(directory: Path) -> list[str]:
    """Processes whose command line names the demo directory (agents, backend, services)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(directory) in cmdline:
            found.append(f"{process.pid}: {cmdline[:120]}")
    return found


def test_aligned_day_puts_bulletins_on_whole_registry_minutes() -> None:
    timeline = plan_timeline(1_764_000_007.0, settle_s=10, bulletin_s=45, day_s=50, night_s=15, align=True)
    morning, evening = timeline.act(MORNING), timeline.act(EVENING)
    assert morning.real_start % 60 == 0
    assert morning.real_end - morning.real_start == 60
    assert timeline.act("Ban ngày").real_end - timeline.act("Ban ngày").real_start == 60
    first, second = timeline.schedule
    assert (first.name, second.name) == (MORNING, EVENING)
    assert first.end == second.start or first.end < second.start
    # The registry windows are exactly the acts, so silence at a window's edge is not dead air.
    assert timeline.real_at(5 * 60 + 30) == morning.real_start
    assert timeline.real_at(18 * 60) == evening.real_end
    assert round(timeline.sim_at(evening.real_start + 30)) == 17 * 60 + 30


async def test_the_fleet_view_shows_open_and_unconfirmed_faults_not_closed_ones(
    influx_db: InfluxDatabase,
) -> None:
    """The demo's live view and its 22:00 table read the monitor's ``alert`` points: an alert
    left unconfirmed when its bulletin ended is still open (▲), a closed one is not."""
    tags = {"commune": "phu-thuong", "hamlet": "Xóm Đồng Kè", "kind": "speaker_cluster"}
    statuses = {
        "vn-phuthuong-loa-01": ("amp_idle", ["open", "unconfirmed"]),
        "vn-phuthuong-loa-02": ("dead_air", ["open"]),
        "vn-trangxa-loa-01": ("amp_idle", ["open", "closed"]),
    }
    now_ms = int(time.time() * 1000)
    points = [
        influx_line(
            "alert",
            {**tags, "device": device, "fault": fault, "status": status},
            {"message": "m", "since_ms": now_ms - 60_000},
            now_ms - 60_000 + 1000 * n,
        )
        for device, (fault, sequence) in statuses.items()
        for n, status in enumerate(sequence)
    ]
    async with InfluxClient(influx_db.base_url, influx_db.name) as client:
        await client.write(points)
    view = await asyncio.to_thread(read_fleet, influx_db.base_url, influx_db.name)
    assert view.error is None
    assert view.open_faults == {"vn-phuthuong-loa-01": ["amp_idle"], "vn-phuthuong-loa-02": ["dead_air"]}


def test_unaligned_windows_never_overlap() -> None:
    timeline = plan_timeline(1_764_000_000.0, settle_s=3, bulletin_s=5, day_s=5, night_s=2, align=False)
    first, second = timeline.schedule
    assert first.start < first.end <= second.start < second.end


@pytest.mark.slow
def test_short_demo_day_ends_with_summary_alerts_and_no_process_left(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    run = subprocess.run(
        _demo_command(directory, "--duration", "30"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    assert "Summary" in out
    assert re.search(r"Devices\s+7 real agents, 7 reported", out), out[-2000:]
    sent = re.search(
        r"Alerts\s+(\d+) sent, (\d+) recovered.*?(\d+) e-mails, (\d+) webhook calls, (\d+) SMS and "
        r"(\d+) Telegram messages",
        out,
    )
    assert sent is not None, out[-2000:]
    assert int(sent.group(1)) >= 1
    # Every channel the registry's technicians have carried the notices.
    assert all(int(sent.group(n)) >= 1 for n in (3, 4, 5, 6)), sent.group(0)
    assert "✉ ALERT" in out
    assert re.search(r"Audit\s+produced [\d,]+ · stored [\d,]+ · lost 0 · duplicated 0 .*clean", out)
    # Per-device credentials, private, used as each agent's [mqtt] section.
    snippets = sorted((directory / "secrets" / "devices").glob("*/agent-mqtt.toml"))
    assert len(snippets) == 7
    assert all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in snippets)
    agent_toml = (directory / "agents" / snippets[0].parent.name / "agent.toml").read_text()
    assert "tls = true" in agent_toml
    # Grafana provisioning, the registry the backend read, and the KPI report.
    assert (directory / "grafana" / "datasources" / "tincoso.yaml").exists()
    assert list((directory / "grafana" / "dashboards" / "json").glob("*.json"))
    registry = yaml.safe_load((directory / "backend" / "registry.yaml").read_text())
    assert [w["name"] for w in registry["communes"][0]["schedule"]] == [MORNING, EVENING]
    assert list((directory / "reports").glob("kpi-*.html"))
    assert not _left_running(directory)


@pytest.mark.slow
def test_ctrl_c_stops_agents_backend_and_services(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    process = subprocess.Popen(
        _demo_command(directory, "--duration", "120", "--no-kpi"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    online = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "devices online" in line:
                online.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert online.wait(60), "".join(lines)[-2000:]
        assert _left_running(directory), "the demo should be running agents now"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(5)
    assert process.stdout is not None
    process.stdout.close()
    out = "".join(lines)
    assert code == 130, out[-2000:]
    assert "Stopped; nothing left running." in out
    deadline = time.monotonic() + 5
    while _left_running(directory) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _left_running(directory)
