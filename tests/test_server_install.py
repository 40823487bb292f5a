"""``tincoso server install``: what it writes, that a second run changes nothing, units systemd accepts."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from backend.config import load_config
from backend.server.doctor import check_disk, format_checks
from backend.server.install import certificate_hosts, install
from backend.server.notify import notify, watchdog_pings
from backend.server.render import UNITS, exec_lines
from backend.server.settings import ServerConfigError, load_server_config

BIN = Path(sys.executable).parent
EXAMPLE_REGISTRY = Path(__file__).parent.parent / "backend" / "examples" / "registry.yaml"


def write_config(root: Path, *, names: str = '["mqtt.vonhai.test"]', extra: str = "", tail: str = "") -> Path:
    paths = "\n".join(
        f'{key} = "{root / key}"'
        for key in ("etc", "data", "log", "backups", "systemd", "logrotate", "grafana")
    )
    path = root / "server.toml"
    path.write_text(
        f"""
[server]
names = {names}
addresses = ["10.77.0.1"]
district = "vonhai"
user = "root"
{extra}
[paths]
{paths}
tincoso = "{BIN / "tincoso"}"
mosquitto = "{shutil.which("mosquitto") or "/usr/sbin/mosquitto"}"
influxd = "{shutil.which("influxd") or "/usr/bin/influxd"}"

[registry]
path = "{EXAMPLE_REGISTRY}"
{tail}
""",
        encoding="utf-8",
    )
    return path


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tincoso"), *map(str, args)], capture_output=True, text=True, check=False
    )


def test_dry_run_lists_every_file_and_creates_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = run("server", "install", "--config", config, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "tincoso-ingest.service" in done.stdout
    assert "mosquitto.conf" in done.stdout
    assert (
        "would issue the device listener certificate (missing) for mqtt.vonhai.test, 10.77.0.1" in done.stdout
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.toml"]


def test_second_install_changes_nothing_and_a_new_name_reissues_the_certificate(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    first = install(load_server_config(config_path), dry_run=False)
    assert {status for _f, status in first.files} == {"created"}
    again = install(load_server_config(config_path), dry_run=False)
    assert again.changed == []
    config = load_server_config(config_path)
    device_cert = config.secrets_dir / "broker" / "device.crt"
    hosts, _expiry = certificate_hosts(device_cert)
    assert sorted(hosts) == ["10.77.0.1", "mqtt.vonhai.test"]
    (config.data / "influxdb" / "data" / "keep.me").write_text("data", encoding="utf-8")

    write_config(tmp_path, names='["mqtt.vonhai.test", "tincoso.vonhai.test"]')
    changed = install(load_server_config(config_path), dry_run=False)
    assert [p.name for p in changed.changed] == ["server.toml"]
    assert any("names changed" in note for note in changed.notes)
    assert sorted(certificate_hosts(device_cert)[0]) == [
        "10.77.0.1",
        "mqtt.vonhai.test",
        "tincoso.vonhai.test",
    ]
    assert (config.data / "influxdb" / "data" / "keep.me").read_text(encoding="utf-8") == "data"


def test_each_role_gets_its_own_least_privilege_influx_user_and_a_valid_backend_config(
    tmp_path: Path,
) -> None:
    config = load_server_config(write_config(tmp_path))
    install(config, dry_run=False)
    users = {}
    for role in ("ingest", "monitor"):
        path = config.etc / f"backend-{role}.toml"
        assert path.stat().st_mode & 0o777 == 0o600
        backend = load_config(path)
        users[role] = backend.influx.username
        assert backend.influx.manage_retention is False
        assert backend.mqtt.url == "mqtts://127.0.0.1:8884"
    assert users == {"ingest": "tincoso-ingest", "monitor": "tincoso-monitor"}
    conf = (config.etc / "influxdb.conf").read_text(encoding="utf-8")
    assert "auth-enabled = true" in conf
    assert 'index-version = "tsi1"' in conf
    assert 'bind-address = "127.0.0.1:8086"' in conf


def test_device_listener_binds_each_configured_address_with_the_server_certificate(tmp_path: Path) -> None:
    config = load_server_config(write_config(tmp_path, extra='listen = ["10.77.0.1", "10.78.0.1"]'))
    install(config, dry_run=False)
    conf = (config.etc / "mosquitto.conf").read_text(encoding="utf-8")
    assert "listener 8883 10.77.0.1" in conf
    assert "listener 8883 10.78.0.1" in conf
    assert "listener 8884 127.0.0.1" in conf
    assert conf.count(f"certfile {config.secrets_dir / 'broker' / 'device.crt'}") == 2


def test_operator_supplied_certificate_is_used_as_is(tmp_path: Path) -> None:
    extra = (
        'cert = "/etc/letsencrypt/live/mqtt/fullchain.pem"\nkey = "/etc/letsencrypt/live/mqtt/privkey.pem"'
    )
    config = load_server_config(write_config(tmp_path, extra=extra))
    install(config, dry_run=False)
    conf = (config.etc / "mosquitto.conf").read_text(encoding="utf-8")
    assert "certfile /etc/letsencrypt/live/mqtt/fullchain.pem" in conf
    assert not (config.secrets_dir / "broker" / "device.crt").exists()


def test_bad_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ServerConfigError, match=r"server\.names: 'MQTT_bad' is not a DNS name"):
        load_server_config(write_config(tmp_path, names='["MQTT_bad"]'))
    with pytest.raises(ServerConfigError, match=r"server\.colour is not a known setting"):
        load_server_config(write_config(tmp_path, extra='colour = "red"'))


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    config = load_server_config(write_config(tmp_path))
    install(config, dry_run=False)
    units = sorted(str(p) for p in config.paths.path("systemd").glob("tincoso-*"))
    done = subprocess.run([tool, "verify", *units], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for unit in UNITS:
        lines = exec_lines((config.paths.path("systemd") / f"{unit}.service").read_text(encoding="utf-8"))
        assert Path(lines["ExecStart"][0]).is_absolute()


def test_backend_tells_systemd_it_is_ready_and_pings_the_watchdog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "100000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        assert notify("READY=1")

        async def pings() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(watchdog_pings(stop))
            await asyncio.sleep(0.2)
            stop.set()
            await task

        asyncio.run(pings())
        got = [receiver.recv(64) for _ in range(3)]
    assert got[0] == b"READY=1"
    assert got[1:] == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_the_installed_server_toml_is_what_the_units_name(tmp_path: Path) -> None:
    config = load_server_config(write_config(tmp_path))
    install(config, dry_run=False)
    unit = (config.paths.path("systemd") / "tincoso-influxdb.service").read_text(encoding="utf-8")
    assert exec_lines(unit)["ExecStartPost"][-1] == str(config.config_path)
    assert tomllib.loads(config.config_path.read_text(encoding="utf-8"))["server"]["district"] == "vonhai"


def test_doctor_names_a_full_disk_and_what_to_free(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    config = load_server_config(write_config(tmp_path))
    spool = config.data / "spool" / "ingest"
    spool.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tincoso-test", str(spool)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (spool / "segment").write_bytes(bytes(3 * 2**20))
        spool_check = check_disk(config)[0]
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)
    assert spool_check.status == "fail"
    assert spool_check.detail == f"spool {spool}: 1 MiB free of 4 MiB"
    assert spool_check.fix.startswith(f"free space on {spool} (want 1024 MiB")
    assert f"cách sửa: giải phóng dung lượng ở {spool} (cần 1024 MiB" in format_checks([spool_check])


def test_provision_for_the_server_writes_a_bundle_the_agent_accepts(tmp_path: Path) -> None:
    from agent.config import load as load_agent_config

    config_path = write_config(tmp_path)
    config = load_server_config(config_path)
    install(config, dry_run=False)
    done = run("provision", "--server-config", config_path, "vn-trangxa-loa-01")
    assert done.returncode == 0, done.stderr
    bundle = config.secrets_dir / "devices" / "vn-trangxa-loa-01" / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == [
        "INSTALL.txt",
        "agent.toml",
        "ca.pem",
        "mqtt-password",
    ]
    assert (bundle / "mqtt-password").stat().st_mode & 0o777 == 0o600
    assert (bundle / "ca.pem").read_bytes() == (config.secrets_dir / "ca" / "ca.crt").read_bytes()
    agent = load_agent_config(bundle / "agent.toml")
    assert (agent.mqtt_host, agent.mqtt_tls, agent.mqtt_cafile) == (
        "mqtt.vonhai.test",
        True,
        "/etc/tincoso/ca.pem",
    )
    assert agent.mqtt_password_file == "/etc/tincoso/mqtt-password"
    # The same keys and places as the agent's own example and README.
    example = tomllib.loads(
        (Path(__file__).parent.parent / "agent/examples/speaker_cluster.toml").read_text("utf-8")
    )
    bundled = tomllib.loads((bundle / "agent.toml").read_text(encoding="utf-8"))
    assert set(bundled["mqtt"]) <= set(example["mqtt"])
    assert bundled["mqtt"]["cafile"] == example["mqtt"]["cafile"]
    assert bundled["mqtt"]["password_file"] == example["mqtt"]["password_file"]


def test_the_example_server_toml_is_valid() -> None:
    config = load_server_config(Path(__file__).parent.parent / "backend" / "examples" / "server.toml")
    assert config.cert_hosts == ["mqtt.vonhai.example.vn", "203.0.113.10"]
    assert str(config.config_path) == "/etc/tincoso/server.toml"


def test_install_provisions_grafana_with_the_read_only_user(tmp_path: Path) -> None:
    config = load_server_config(write_config(tmp_path))
    done = run("server", "install", "--config", tmp_path / "server.toml", "--no-start")
    assert done.returncode == 0, done.stderr
    datasource = (config.paths.path("grafana") / "datasources" / "tincoso.yaml").read_text(encoding="utf-8")
    assert "user: tincoso-reader" in datasource
    assert "password: ${TINCOSO_INFLUX_PASSWORD}" in datasource
    env = (config.secrets_dir / "grafana.env").read_text(encoding="utf-8")
    passwords = json.loads((config.secrets_dir / "influx-users.json").read_text(encoding="utf-8"))
    assert env == f"TINCOSO_INFLUX_PASSWORD={passwords['reader']}\n"
    dropin = config.paths.path("systemd") / "grafana-server.service.d" / "tincoso.conf"
    assert f"EnvironmentFile=-{config.secrets_dir / 'grafana.env'}" in dropin.read_text(encoding="utf-8")
    assert list((config.paths.path("grafana") / "dashboards" / "json").glob("*.json"))


def test_backend_process_sends_ready_and_watchdog_pings_under_systemd(tmp_path: Path) -> None:
    config = load_server_config(write_config(tmp_path))
    install(config, dry_run=False)
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        receiver.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
        unit = (config.paths.path("systemd") / "tincoso-monitor.service").read_text(encoding="utf-8")
        # No broker or database here: the monitor keeps retrying, and its loop stays alive.
        process = subprocess.Popen(exec_lines(unit)["ExecStart"], env=env, stderr=subprocess.DEVNULL)
        try:
            got = [receiver.recv(64) for _ in range(3)]
        finally:
            process.terminate()
            process.wait(30)
        stopping = receiver.recv(64)
        while stopping == b"WATCHDOG=1":
            stopping = receiver.recv(64)
    assert got == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1"]
    assert stopping == b"STOPPING=1"
