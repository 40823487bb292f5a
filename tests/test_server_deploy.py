"""The district server installed by ``tincoso server install`` and run on a real (namespaced) network.

One server namespace runs Mosquitto, InfluxDB and the backend from the generated configs,
each started with its unit's ``ExecStart=`` line (systemd cannot run here); two hamlet
namespaces run real ``tincoso-agent`` processes that reach the broker by DNS name with
full certificate verification. Then the server "reboots": every server process is killed
with SIGKILL and the units are started again in order; the sequence audit finds nothing lost.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from backend.provision.store import ProvisionStore
from backend.server.render import INFLUX_USERS, UNITS, exec_lines
from backend.server.settings import load_server_config
from backend.server.tomltext import dumps
from hil_tests.audit import AuditResult, MqttCapture, QueueMark, compare, query_stored, read_agent_queue
from tests.netns_support import District, NetNs, netns_unavailable

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
NAME = "mqtt.vonhai.test"
WRONG_NAME = "wrong.vonhai.test"  # resolves to the server, but is not in its certificate
DEVICES = ("vn-trangxa-loa-03", "vn-trangxa-loa-04")
STRANGER = "vn-trangxa-loa-05"  # connects by a name the certificate does not carry

REGISTRY = """\
district: Võ Nhai
communes:
  - id: trang-xa
    name: Tràng Xá
    type: commune
    radio_system: ip
    schedule:
      - {name: Bản tin chiều, start: "17:00", end: "18:00"}
    board_hours:
      - {start: "06:00", end: "22:00"}
    technicians:
      - {name: Hoàng Thị Bích, email: ktv.trangxa@example.invalid}
devices:
  - {id: vn-trangxa-loa-03, kind: speaker_cluster, commune: trang-xa, hamlet: Thôn Khuôn Vạng}
  - {id: vn-trangxa-loa-04, kind: speaker_cluster, commune: trang-xa, hamlet: Thôn Đồng Tiến}
  - {id: vn-trangxa-loa-05, kind: speaker_cluster, commune: trang-xa, hamlet: Thôn Na Lay}
"""


def _skip_reason() -> str | None:
    reason = netns_unavailable()
    if reason is not None:
        return reason
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        return "needs mosquitto (make system-deps)"
    if shutil.which("influxd") is None:
        return "needs influxd (make system-deps)"
    return None


def write_server_toml(root: Path, server_address: str) -> Path:
    """A server.toml whose every path is under ``root``."""
    (root / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    path = root / "server.toml"
    paths = {
        name: str(root / name)
        for name in ("etc", "data", "log", "backups", "systemd", "logrotate", "grafana")
    }
    path.write_text(
        f"""
[server]
names = ["{NAME}"]
addresses = ["{server_address}"]
district = "vonhai"
user = "root"

[paths]
{chr(10).join(f'{key} = "{value}"' for key, value in paths.items())}
tincoso = "{BIN / "tincoso"}"
mosquitto = "{shutil.which("mosquitto") or "/usr/sbin/mosquitto"}"
influxd = "{shutil.which("influxd")}"

[registry]
path = "registry.yaml"

[ingest]
batch_ms = 50
stats_interval_s = 1.0

[monitor]
website_check_s = 0
stats_interval_s = 1.0
""",
        encoding="utf-8",
    )
    return path


def write_agent_toml(folder: Path, bundle: Path, host: str) -> Path:
    """The device's bundle ``agent.toml``, with this test's paths and quick reporting."""
    config = tomllib.loads((bundle / "agent.toml").read_text(encoding="utf-8"))
    assert config["mqtt"]["host"] == NAME
    config["device"]["state_dir"] = str(folder / "state")
    config["mqtt"].update(
        host=host,
        cafile=str(bundle / "ca.pem"),
        password_file=str(bundle / "mqtt-password"),
        keepalive_s=5,
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
    )
    config["reporting"] = {"heartbeat_s": 1, "poll_s": 0.2, "jitter": 0.0}
    config["clock"] = {"sync_check": "none"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(dumps(config), encoding="utf-8")
    return path


class Processes:
    """Processes started inside namespaces, with their logs; all killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start(self, name: str, ns: NetNs, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(ns.command(argv), stdout=log, stderr=subprocess.STDOUT, env=env)
        self.running[name] = (proc, log)
        return proc

    def signal(self, name: str, signum: signal.Signals, timeout: float = 30.0) -> None:
        proc, log = self.running.pop(name)
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        for name in list(self.running):
            self.signal(name, signal.SIGKILL)


@pytest.fixture
def district() -> Iterator[District]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    made = District(hamlets=2)
    try:
        for hamlet in made.hamlets:
            hamlet.write_hosts({NAME: made.server_addresses[0], WRONG_NAME: made.server_addresses[0]})
        yield made
    finally:
        made.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path / "logs")
    yield procs
    procs.close()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def start_server(etc: Path, systemd: Path, server: NetNs, processes: Processes) -> list[list[str]]:
    """Start every unit's ExecStart in unit order (ExecStartPost run to completion); return what ran."""
    ran: list[list[str]] = []
    for unit in UNITS:
        lines = exec_lines((systemd / f"{unit}.service").read_text(encoding="utf-8"))
        processes.start(unit, server, lines["ExecStart"])
        ran.append(lines["ExecStart"])
        if unit == "tincoso-mosquitto":
            wait_for(lambda: server.call(tcp_open, "127.0.0.1", 8884), 30, "the broker's backend listener")
        if "ExecStartPost" in lines:
            done = subprocess.run(
                server.command(lines["ExecStartPost"]), capture_output=True, text=True, timeout=180
            )
            assert done.returncode == 0, done.stdout + done.stderr
            ran.append(lines["ExecStartPost"])
    # Readiness as a unit would wait for it: the backend is subscribed (its session exists).
    wait_for(lambda: "event=mqtt_connected" in processes.log("tincoso-ingest"), 60, "ingest subscribed")
    wait_for(lambda: "monitor subscribed" in processes.log("tincoso-monitor"), 60, "monitor subscribed")
    return ran


def stored_count(influx_user: str, password: str, device: str) -> int:
    query = f"SELECT count(seq) FROM heartbeat WHERE device = '{device}'"
    response = httpx.post(
        "http://127.0.0.1:8086/query",
        data={"db": "tincoso", "q": query},
        params={"u": influx_user, "p": password},
        timeout=10,
    )
    series = response.json()["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def tls_handshake(host: str, port: int, cafile: str) -> str:
    """``ok`` or the TLS error a device verifying the certificate gets."""
    context = ssl.create_default_context(cafile=cafile)
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return "ok"
    except ssl.SSLCertVerificationError as exc:
        return f"refused: {exc.verify_message}"
    except OSError as exc:
        return f"unreachable: {exc}"


@pytest.mark.parametrize(
    "save_on_change",
    [
        True,
        # The evidence removed: Mosquitto's default half-hourly save loses the sessions and
        # what it acknowledged when the server dies, and the audit sees it.
        pytest.param(
            False, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason="saved half-hourly")
        ),
    ],
)
def test_district_server_serves_hamlets_by_name_and_loses_nothing_across_a_reboot(
    district: District, processes: Processes, tmp_path: Path, save_on_change: bool
) -> None:
    server_address, other_address = district.server_addresses[:2]
    config_path = write_server_toml(tmp_path, server_address)
    installed = subprocess.run(
        [BIN / "tincoso", "server", "install", "--config", config_path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    print(f"$ tincoso server install --config {config_path}\n{installed.stdout}")
    config = load_server_config(config_path)
    etc, systemd = config.etc, config.paths.path("systemd")
    provisioned = subprocess.run(
        [BIN / "tincoso", "provision", "--server-config", config_path, *DEVICES, STRANGER],
        capture_output=True,
        text=True,
        check=False,
    )
    assert provisioned.returncode == 0, provisioned.stderr
    print(f"$ tincoso provision --server-config {config_path} ...\n{provisioned.stdout}")
    if not save_on_change:
        conf = etc / "mosquitto.conf"
        text = conf.read_text(encoding="utf-8").replace("autosave_on_changes true\n", "")
        conf.write_text(text.replace("autosave_interval 1\n", "autosave_interval 1800\n"), encoding="utf-8")

    ran = start_server(etc, systemd, district.server, processes)
    units = {unit: exec_lines((systemd / f"{unit}.service").read_text(encoding="utf-8")) for unit in UNITS}
    assert [line for unit in UNITS for line in units[unit].values()] == ran

    backend_user, backend_password = (
        tomllib.loads((config.secrets_dir / "backend" / "credentials.toml").read_text(encoding="utf-8"))[key]
        for key in ("username", "password")
    )
    capture = MqttCapture("127.0.0.1", config.backend_port, client_id="deploy-audit")
    capture._client.tls_set(ca_certs=str(config.secrets_dir / "ca" / "ca.crt"))
    capture._client.username_pw_set(backend_user, backend_password)
    district.server.call(capture.start)
    try:
        bundles = {d: config.secrets_dir / "devices" / d / "bundle" for d in (*DEVICES, STRANGER)}
        for device, hamlet in zip(DEVICES, district.hamlets, strict=True):
            agent = write_agent_toml(tmp_path / device, bundles[device], NAME)
            processes.start(device, hamlet, [str(BIN / "tincoso-agent"), "--config", str(agent)])
        stranger = write_agent_toml(tmp_path / STRANGER, bundles[STRANGER], WRONG_NAME)
        processes.start(
            STRANGER, district.hamlets[1], [str(BIN / "tincoso-agent"), "--config", str(stranger)]
        )

        reader = INFLUX_USERS["reader"]
        reader_password = json.loads((config.secrets_dir / "influx-users.json").read_text(encoding="utf-8"))[
            "reader"
        ]

        def stored(device: str) -> int:
            return district.server.call(stored_count, reader, reader_password, device)

        wait_for(lambda: all(stored(d) >= 3 for d in DEVICES), 60, "heartbeats of both hamlets in InfluxDB")

        # The certificate names what devices use, and nothing else.
        cafile = str(config.secrets_dir / "ca" / "ca.crt")
        hamlet = district.hamlets[0]
        assert hamlet.call(tls_handshake, server_address, config.device_port, cafile) == "ok"
        assert hamlet.call(tls_handshake, other_address, config.device_port, cafile).startswith("unreachable")
        assert (
            subprocess.run(
                hamlet.command(
                    [sys.executable, "-c", f"import socket; print(socket.gethostbyname('{WRONG_NAME}'))"]
                ),
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            == server_address
        )
        assert stored(STRANGER) == 0
        assert "certificate verify failed" in processes.log(STRANGER) or "mismatch" in processes.log(STRANGER)
        # The backend's listener and the database stay on the server's loopback.
        for port in (config.backend_port, config.influx_port, config.influx_rpc_port):
            assert not hamlet.call(tcp_open, server_address, port), f"port {port} reachable from a hamlet"

        # Reboot: every server process dies at once, then the units start again in order.
        before = {d: stored(d) for d in DEVICES}
        for unit in reversed(UNITS):
            processes.signal(unit, signal.SIGKILL)
        time.sleep(2)  # the agents queue while the server is down
        start_server(etc, systemd, district.server, processes)
        wait_for(lambda: all(stored(d) >= before[d] + 3 for d in DEVICES), 90, "heartbeats after the reboot")

        for device in DEVICES:
            processes.signal(device, signal.SIGTERM)
        marks: dict[str, QueueMark] = {}
        for device in DEVICES:
            mark = read_agent_queue(tmp_path / device / "state" / "queue.sqlite3")
            assert mark is not None, f"{device} has no queue"
            assert mark.depth == 0, f"{device} still queues {mark}"
            marks[device] = mark
        produced = {d: {m.boot_id: range(m.next_seq)} for d, m in marks.items()}

        def audited() -> AuditResult:
            stored_points = query_stored(
                "http://127.0.0.1:8086", "tincoso", devices=DEVICES, username=reader, password=reader_password
            )
            return compare(stored_points, produced=produced, captured=capture.snapshot())

        deadline = time.monotonic() + (20 if save_on_change else 8)  # losses never arrive
        result = district.server.call(audited)
        while not result.clean and time.monotonic() < deadline:
            time.sleep(0.5)
            result = district.server.call(audited)
        lost = {d: (a.lost[:5], a.duplicated[:5], a.unexpected[:5]) for d, a in result.devices.items()}
        kinds = sorted((m.device[-2:], m.seq, m.kind) for m in capture.snapshot() if m.seq is not None)
        assert result.clean, f"{result}\n{lost}\n{kinds}"
        print(result)
        assert result.totals()["produced"] >= 12  # both boots of the server, both hamlets
        if save_on_change:
            check_doctor(config_path, district.server, processes)
    finally:
        district.server.call(capture.stop)


def doctor(server: NetNs, config_path: Path, lang: str = "en") -> subprocess.CompletedProcess[str]:
    argv = [str(BIN / "tincoso"), "server", "doctor", "--config", str(config_path), "--lang", lang]
    return subprocess.run(server.command(argv), capture_output=True, text=True, timeout=120, check=False)


def check_doctor(config_path: Path, server: NetNs, processes: Processes) -> None:
    """Green on the running server; then each fault named with its fix."""
    config = load_server_config(config_path)
    green = doctor(server, config_path)
    print(f"$ tincoso server doctor --config {config_path} --lang en\n{green.stdout}")
    assert green.returncode == 0, green.stdout + green.stderr
    assert "FAIL" not in green.stdout
    assert f"OK   device listener {config.addresses[0]}:8883 as {NAME}: TLS verified" in green.stdout
    assert "OK   ingest" in green.stdout
    vietnamese = doctor(server, config_path, "vi")
    print(f"$ tincoso server doctor --config {config_path}\n{vietnamese.stdout}")
    assert vietnamese.returncode == 0
    assert f"ĐẠT   cổng thiết bị   {config.addresses[0]}:8883 as {NAME}: TLS verified" in vietnamese.stdout
    assert "cách sửa: bật sao lưu hằng đêm: systemctl enable --now tincoso-backup.timer" in vietnamese.stdout
    assert "OK   monitor" in green.stdout

    renamed = config_path.with_name("renamed.toml")
    renamed.write_text(
        config_path.read_text(encoding="utf-8").replace(
            f'names = ["{NAME}"]', f'names = ["{NAME}", "loa.vonhai.test"]'
        ),
        encoding="utf-8",
    )
    mismatch = doctor(server, renamed)
    print(f"$ tincoso server doctor  # renamed.toml (a name the certificate lacks)\n{mismatch.stdout}")
    assert mismatch.returncode == 1
    assert "lacks loa.vonhai.test" in mismatch.stdout
    assert "as loa.vonhai.test: certificate refused: Hostname mismatch" in mismatch.stdout
    assert "fix: the certificate lacks this name: run `tincoso server install`" in mismatch.stdout

    cert, key = config.secrets_dir / "broker" / "device.crt", config.secrets_dir / "broker" / "device.key"
    ProvisionStore(config.secrets_dir).ca.issue(NAME, cert, key, server_hosts=config.cert_hosts, days=10)
    expiring = doctor(server, config_path)
    print(f"$ tincoso server doctor  # (certificate reissued for 10 days)\n{expiring.stdout}")
    assert expiring.returncode == 1
    assert re.search(r"FAIL certificate +\S+ expires \d{4}-\d\d-\d\d \(9 days\)", expiring.stdout), (
        expiring.stdout
    )
    assert "fix: renew it" in expiring.stdout

    processes.signal("tincoso-mosquitto", signal.SIGKILL)
    stopped = doctor(server, config_path)
    print(f"$ tincoso server doctor  # (broker killed)\n{stopped.stdout}")
    assert stopped.returncode == 1
    assert re.search(r"FAIL broker +backend listener 127.0.0.1:8884: .*refused", stopped.stdout), (
        stopped.stdout
    )
    assert "fix: start the broker: systemctl start tincoso-mosquitto" in stopped.stdout
