# ruff: noqa: E501  (tables of config lines and the exact messages they give)
"""``tincoso-agent check-config``: changes nothing, names each broken reference in one line,
and with ``--connect`` logs in to a real secure Mosquitto and names the step that fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.cli import main
from backend.localservices import LocalMosquitto
from backend.localservices._process import free_port
from backend.provision.broker import secure_mosquitto
from backend.provision.pki import CertificateAuthority
from backend.provision.store import ProvisionStore

AGENT = Path(sys.executable).parent / "tincoso-agent"
DEVICE = "vn-trangxa-loa-03"
OTHER = "vn-trangxa-loa-02"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _config(tmp_path: Path, mqtt: str = "", probes: str = "[probes.system]\n") -> Path:
    return _write(
        tmp_path / "agent.toml",
        f'[device]\nid = "{DEVICE}"\nkind = "speaker_cluster"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\n{mqtt}\n[clock]\nsync_check = "none"\n{probes}',
    )


def _check(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> tuple[int, list[str]]:
    code = main(["check-config", "--config", str(path), *extra])
    return code, capsys.readouterr().out.splitlines()


# -- no side effects ----------------------------------------------------------------------


class _Heartbeats:
    """Collects the agent's heartbeats from the broker."""

    def __init__(self, port: int) -> None:
        self.seen: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-hb-{os.getpid()}")
        topic = f"tincoso/v1/{DEVICE}/telemetry/heartbeat"
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_message = lambda _c, _u, m: self.seen.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def first(self, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.seen, "no heartbeat from the agent"
        return self.seen[0]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_check_config_twice_then_first_start_reports_first_boot_not_agent_crash(
    tmp_path: Path, mosquitto: LocalMosquitto
) -> None:
    config = _config(
        tmp_path, f"port = {mosquitto.port}", "[reporting]\nheartbeat_s = 1\npoll_s = 0.2\n[probes.system]\n"
    )
    for _ in range(2):
        proc = subprocess.run(
            [str(AGENT), "check-config", "--config", str(config)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert '"reboot_reason": "first_boot"' in proc.stdout
    state = tmp_path / "state"
    assert not (state / "agent_running").exists()
    heartbeats = _Heartbeats(mosquitto.port)
    agent = subprocess.Popen([str(AGENT), "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        assert heartbeats.first()["reboot_reason"] == "first_boot"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        heartbeats.close()
    # After a clean stop, checking again still says what the next start will say.
    proc = subprocess.run(
        [str(AGENT), "check-config", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert '"reboot_reason": "clean"' in proc.stdout
    assert (state / "clean_shutdown").exists()


# -- broken references, one line each -------------------------------------------------------


def _garbage(tmp_path: Path) -> Path:
    return _write(tmp_path / "ca.pem", "not a certificate\n")


@pytest.mark.parametrize(
    ("mqtt", "probes", "line"),
    [
        ('tls = true\ncafile = "{tmp}/missing-ca.pem"', "", "INVALID: [mqtt] cafile {tmp}/missing-ca.pem: no such file"),
        ('tls = true\ncafile = "{garbage}"', "", "INVALID: [mqtt] cafile {garbage}: not a PEM certificate"),
        ('username = "u"\npassword_file = "{tmp}/nope"', "", "INVALID: [mqtt] password_file {tmp}/nope: no such file"),
        ('username = "u"\npassword_file = "{empty}"', "", "INVALID: [mqtt] password_file {empty}: is empty"),
        ('username = "u"', "", "INVALID: [mqtt] username is set but neither password nor password_file is"),
        ("", '[probes.power_meter]\nurl = "{tmp}/ttyUSB9"', "INVALID: [probes.power_meter] url {tmp}/ttyUSB9: no such device"),
        ("", '[probes.modem]\nurl = "{empty}"', "INVALID: [probes.modem] url {empty}: not a character device"),
        ("", '[probes.audio]\nsource = "arecord:hw:9,0"', "INVALID: [probes.audio] source arecord:hw:9,0: no ALSA"),
        ("", '[probes.audio]\nsource = "arecord:default"\narecord_command = "no-such-arecord"',
         "INVALID: [probes.audio] arecord_command 'no-such-arecord': not installed (apt install alsa-utils)"),
        ("", '[probes.audio]\nsource = "file:{tmp}/bulletin.wav"', "INVALID: [probes.audio] source {tmp}/bulletin.wav: no such file"),
    ],
    ids=["ca-missing", "ca-garbage", "password-missing", "password-empty", "no-password", "serial-missing",
         "serial-not-a-tty", "alsa-card-missing", "arecord-missing", "wav-missing"],
)  # fmt: skip
def test_each_broken_reference_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mqtt: str, probes: str, line: str
) -> None:
    names = {
        "tmp": str(tmp_path),
        "garbage": str(_garbage(tmp_path)),
        "empty": str(_write(tmp_path / "e", "")),
    }
    config = _config(tmp_path, mqtt.format(**names), probes.format(**names))
    code, out = _check(capsys, config)
    assert code == 2
    invalid = [x for x in out if x.startswith("INVALID")]
    assert len(invalid) == 1, out
    assert invalid[0].startswith(line.format(**names)), out


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("mqtt://broker:1883", "[mqtt] host must be a host name or IP address, not a URL: got 'mqtt://broker:1883'"),
        ("broker:1883", "[mqtt] host must not carry a port: got 'broker:1883' (the port goes in [mqtt] port)"),
        ("bad host", "[mqtt] host must be a host name (letters, digits, '-', dots) or an IP address"),
    ],
)  # fmt: skip
def test_a_url_or_host_port_is_refused_at_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str, message: str
) -> None:
    assert main(["check-config", "--config", str(_config(tmp_path, f'host = "{host}"'))]) == 2
    assert message in capsys.readouterr().err


def test_password_file_readable_by_others_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _write(tmp_path / "pw", "s3cret\n")
    secret.chmod(0o644)
    code, out = _check(capsys, _config(tmp_path, f'username = "u"\npassword_file = "{secret}"'))
    assert code == 0
    assert f"warning: [mqtt] password_file {secret}: readable by others (mode 644; chmod 600)" in out


def test_version_and_help_on_every_option() -> None:
    version = subprocess.run([str(AGENT), "--version"], capture_output=True, text=True, timeout=30)
    assert version.stdout.strip() == "tincoso-agent 0.1.0"
    backend = subprocess.run(
        [str(Path(sys.executable).parent / "tincoso"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert backend.stdout.startswith("tincoso ")
    from agent.cli import _parser

    parser = _parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in [("tincoso-agent", parser), *subparsers.choices.items()]:  # type: ignore[union-attr]
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"


# -- --connect against a real secure broker ---------------------------------------------------


class SecureBroker(NamedTuple):
    store: ProvisionStore
    port: int
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    root = tmp_path_factory.mktemp("secure")
    store = ProvisionStore(root / "secrets")
    # The broker's certificate names 127.0.0.1 only: "localhost" reaches it but is not in it.
    store.ca.issue("127.0.0.1", store.directory / "broker" / "server.crt", store.directory / "broker" / "server.key",
                   server_hosts=["127.0.0.1"])  # fmt: skip
    passwords = {}
    for device in (DEVICE, OTHER):
        snippet = store.provision(device).snippet.read_text(encoding="utf-8")
        passwords[device] = next(x.split('"')[1] for x in snippet.splitlines() if x.startswith("password"))
    broker, port = secure_mosquitto(root, store)
    broker.start()
    try:
        yield SecureBroker(store, port, passwords)
    finally:
        broker.stop()


def _connect_config(
    tmp_path: Path, broker: SecureBroker, *, user: str = DEVICE, password: str | None = None,
    cafile: Path | None = None, host: str = "127.0.0.1", port: int | None = None,
) -> Path:  # fmt: skip
    secret = _write(tmp_path / "mqtt-password", password or broker.passwords[user])
    secret.chmod(0o600)
    ca = cafile or broker.store.ca.cert_path
    return _config(
        tmp_path,
        f'host = "{host}"\nport = {port or broker.port}\ntls = true\ncafile = "{ca}"\n'
        f'username = "{user}"\npassword_file = "{secret}"\n',
    )


def test_connect_with_the_right_identity_passes_every_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secure_broker: SecureBroker
) -> None:
    code, out = _check(capsys, _connect_config(tmp_path, secure_broker), "--connect", "--no-probes")
    assert code == 0, out
    steps = [line.split()[1] for line in out if line.startswith("connect ")]
    assert steps == ["DNS:", "TCP:", "TLS:", "login:", "ACL:"], out
    assert f"connect ACL: OK subscribe tincoso/v1/{DEVICE}/cmd" in out


def _failure(capsys: pytest.CaptureFixture[str], config: Path) -> str:
    code, out = _check(capsys, config, "--connect", "--no-probes", "--timeout", "20")
    failed = [line for line in out if line.startswith("connect FAILED")]
    assert code == 3, out
    assert len(failed) == 1, out
    return failed[0]


def test_connect_names_a_wrong_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secure_broker: SecureBroker
) -> None:
    line = _failure(capsys, _connect_config(tmp_path, secure_broker, password="not-the-password"))
    assert line.startswith(f"connect FAILED login: the broker refused user '{DEVICE}'"), line


def test_connect_names_a_wrong_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secure_broker: SecureBroker
) -> None:
    other_ca = CertificateAuthority(tmp_path / "other-ca", name="another district CA")
    line = _failure(capsys, _connect_config(tmp_path, secure_broker, cafile=other_ca.cert_path))
    assert line.startswith("connect FAILED TLS: the broker's certificate is not signed by the CA in"), line
    assert "wrong [mqtt] cafile?" in line


def test_connect_names_a_host_not_in_the_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secure_broker: SecureBroker
) -> None:
    line = _failure(capsys, _connect_config(tmp_path, secure_broker, host="localhost"))
    assert line.startswith("connect FAILED TLS: the broker's certificate is not issued for 'localhost'"), line


def test_connect_names_an_acl_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secure_broker: SecureBroker
) -> None:
    # Another device's identity in this device's config: it logs in, but not into this subtree.
    line = _failure(capsys, _connect_config(tmp_path, secure_broker, user=OTHER))
    assert line.startswith(f"connect FAILED ACL: the broker refused user '{OTHER}' its own command topic"), (
        line
    )


def test_connect_names_a_closed_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secure_broker: SecureBroker
) -> None:
    line = _failure(capsys, _connect_config(tmp_path, secure_broker, port=free_port()))
    assert line.startswith("connect FAILED TCP: 127.0.0.1:"), line
    assert "refused the connection" in line
