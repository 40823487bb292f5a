"""Backup -> wipe -> restore of the district server's InfluxDB: the same answers before and after."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from backend.influx import InfluxClient
from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions
from backend.kpi.queries import fetch_measurements
from backend.localservices import free_port
from backend.registry import Registry, parse_registry
from backend.server.backup import backup, list_backups
from backend.server.influx_init import influx_init
from backend.server.install import install
from backend.server.render import INFLUX_USERS
from backend.server.settings import ServerConfig, load_server_config
from tests.test_kpi_report import NOW_MS, PERIOD, REGISTRY_YAML, history
from tests.test_server_install import write_config

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
MEASUREMENTS = ("heartbeat", "audio", "display", "down_interval")


class Influxd:
    """The server's influxd, started from the generated influxdb.conf (its unit's ExecStart)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self) -> None:
        self.log = (self.config.paths.path("log") / "influxd.log").open("ab")
        argv = [self.config.paths.influxd, "-config", str(self.config.etc / "influxdb.conf")]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        for line in influx_init(self.config, timeout_s=60):
            print(line)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.log is not None:
            self.log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerConfig, Influxd]]:
    if shutil.which("influxd") is None:
        pytest.skip("needs influxd (make system-deps)")
    extra = f"influx_port = {free_port()}\ninflux_rpc_port = {free_port()}"
    config = load_server_config(
        write_config(
            tmp_path, extra=extra, tail="[influx]\nraw_days = 0  # the scripted history is from 2025"
        )
    )
    install(config, dry_run=False)
    influxd = Influxd(config)
    influxd.start()
    yield config, influxd
    influxd.kill()


def _password(config: ServerConfig, role: str) -> str:
    path = config.secrets_dir / "influx-users.json"
    passwords: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return passwords[role]


def _client(config: ServerConfig, role: str) -> InfluxClient:
    url = f"http://127.0.0.1:{config.influx_port}"
    return InfluxClient(url, config.database, username=INFLUX_USERS[role], password=_password(config, role))


def _registry() -> Registry:
    return parse_registry(
        REGISTRY_YAML.format(good_url="http://127.0.0.1:9/a", bad_url="http://127.0.0.1:9/b")
    )


async def _write_history(config: ServerConfig) -> None:
    registry = _registry()
    async with _client(config, "monitor") as influx:
        points = list(history(registry))
        for start in range(0, len(points), 5000):
            await influx.write(points[start : start + 5000])


async def _answers(config: ServerConfig) -> tuple[dict[str, int], str, str]:
    """What the dashboards' and the report's readers see: counts, policies, and the KPI report."""
    registry = _registry()
    async with _client(config, "reader") as influx:
        counts = {}
        for measurement in MEASUREMENTS:
            series = await influx.query(f'SELECT count(*) FROM "{measurement}"')
            values = series[0]["values"][0][1:] if series else []
            counts[measurement] = sum(v for v in values if isinstance(v, int))
        measurements = await fetch_measurements(influx, PERIOD, Definitions())
    async with _client(config, "admin") as admin:
        policies = json.dumps(await admin.query("SHOW RETENTION POLICIES"), sort_keys=True)
    report = compute_report(registry, measurements, PERIOD, Definitions(), now_ms=NOW_MS)
    return counts, policies, repr(report)


def test_backup_wipe_restore_gives_the_same_kpi_report_and_counts(
    server: tuple[ServerConfig, Influxd],
) -> None:
    config, influxd = server
    asyncio.run(_write_history(config))
    before = asyncio.run(_answers(config))
    assert before[0]["heartbeat"] > 1000

    taken = subprocess.run(
        [BIN / "tincoso", "server", "backup", "--config", config.config_path], capture_output=True, text=True
    )
    assert taken.returncode == 0, taken.stderr
    print(f"$ tincoso server backup --config {config.config_path}\n{taken.stdout}")
    (newest,) = list_backups(config)
    assert (newest / "etc.tar.gz").stat().st_size > 0

    influxd.kill()
    shutil.rmtree(config.data / "influxdb")
    for name in ("meta", "data", "wal"):
        (config.data / "influxdb" / name).mkdir(parents=True)
    influxd.start()
    wiped = asyncio.run(_answers(config))
    assert wiped[0] == dict.fromkeys(MEASUREMENTS, 0)

    restored = subprocess.run(
        [BIN / "tincoso", "server", "restore", "--config", config.config_path], capture_output=True, text=True
    )
    assert restored.returncode == 0, restored.stderr
    print(f"$ tincoso server restore --config {config.config_path}\n{restored.stdout}")
    assert f"database tincoso restored from {newest}" in restored.stdout
    assert asyncio.run(_answers(config)) == before


def test_old_backups_are_pruned(server: tuple[ServerConfig, Influxd]) -> None:
    config, _influxd = server
    now = dt.datetime.now(dt.UTC)
    for days_ago in (20, 15, 1):
        backup(config, now=now - dt.timedelta(days=days_ago))
    latest = backup(config, now=now)
    kept = list_backups(config)
    assert [p.name for p in kept] == [(now - dt.timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ"), latest.name]


def test_each_influx_user_can_do_only_its_job(server: tuple[ServerConfig, Influxd]) -> None:
    config, _influxd = server
    url = f"http://127.0.0.1:{config.influx_port}"
    point = "heartbeat,device=vn-trangxa-loa-01 uptime_s=1 1735689600000"

    def write(role: str) -> int:
        auth = {"u": INFLUX_USERS[role], "p": _password(config, role)}
        params = {"db": config.database, "precision": "ms", **auth}
        return httpx.post(f"{url}/write", params=params, content=point, timeout=10).status_code

    def read(role: str) -> str:
        auth = {"u": INFLUX_USERS[role], "p": _password(config, role)}
        response = httpx.post(
            f"{url}/query",
            data={"db": config.database, "q": "SELECT * FROM heartbeat"},
            params=auth,
            timeout=10,
        )
        return "denied" if "not authorized" in response.text else "allowed"

    def admin(role: str) -> str:
        auth = {"u": INFLUX_USERS[role], "p": _password(config, role)}
        response = httpx.post(f"{url}/query", data={"q": 'CREATE DATABASE "other"'}, params=auth, timeout=10)
        return "denied" if "error" in response.text else "allowed"

    assert {role: write(role) for role in ("ingest", "monitor", "reader")} == {
        "ingest": 204,
        "monitor": 204,
        "reader": 403,
    }
    # The ingest reads what its late-data task rewrites into the rollups (SELECT ... INTO).
    assert {role: read(role) for role in ("ingest", "monitor", "reader")} == {
        "ingest": "allowed",
        "monitor": "allowed",
        "reader": "allowed",
    }
    assert {role: admin(role) for role in ("ingest", "monitor", "reader", "admin")} == {
        "ingest": "denied",
        "monitor": "denied",
        "reader": "denied",
        "admin": "allowed",
    }
    anonymous = httpx.post(f"{url}/query", data={"db": config.database, "q": "SHOW MEASUREMENTS"}, timeout=10)
    assert anonymous.status_code == httpx.codes.UNAUTHORIZED
