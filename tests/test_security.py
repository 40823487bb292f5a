"""Device security against a real Mosquitto: provisioned credentials, ACL confinement, TLS."""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.localservices import LocalMosquitto, LocalServices
from backend.provision.broker import secure_mosquitto
from backend.provision.passwd import verify_password
from backend.provision.store import BACKEND_USER, ProvisionStore, reload_broker

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


class Secure:
    def __init__(self, root: Path, client_certs: bool = False) -> None:
        self.store = ProvisionStore(root / "secrets")
        self.a = self.store.provision("loa-a", client_cert=client_certs)
        self.b = self.store.provision("loa-b", client_cert=client_certs)
        self.broker, self.device_port = secure_mosquitto(root, self.store, client_certs=client_certs)
        self.backend_user, self.backend_password = self.store.ensure_backend()

    def creds(self, device: str) -> dict[str, Any]:
        return tomllib.loads((self.store.device_dir(device) / "agent-mqtt.toml").read_text())["mqtt"]


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    rig = Secure(tmp_path)
    rig.broker.start()
    try:
        yield rig
    finally:
        rig.broker.stop()


class Client:
    """A paho client run in its own thread that records what happens to it."""

    def __init__(self, client_id: str | None = None) -> None:
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}"
        )
        self.connack: Any = None
        self.disconnected = threading.Event()
        self.connected = threading.Event()
        self.messages: list[mqtt.MQTTMessage] = []
        self.subacks: list[Any] = []
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = lambda *_a: self.disconnected.set()
        self.paho.on_message = lambda _c, _u, msg: self.messages.append(msg)
        self.paho.on_subscribe = lambda _c, _u, _mid, codes, _p: self.subacks.extend(codes)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connack = reason
        self.connected.set()

    def connect(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> bool:
        if username is not None:
            self.paho.username_pw_set(username, password)
        if ca is not None:
            self.paho.tls_set(
                ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None
            )
        try:
            self.paho.connect(HOST, port, keepalive=10)
        except (OSError, ssl.SSLError):
            return False
        self.paho.loop_start()
        self.connected.wait(5)
        ok = self.connack is not None and not self.connack.is_failure
        if not ok:
            self.stop()
        return ok

    def stop(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def _device(secure: Secure, name: str, client_id: str | None = None) -> Client:
    creds = secure.creds(name)
    client = Client(client_id or name)
    assert client.connect(secure.device_port, creds["username"], creds["password"], Path(creds["cafile"]))
    return client


def _backend(secure: Secure) -> Client:
    client = Client()
    assert client.connect(
        secure.broker.port, secure.backend_user, secure.backend_password, secure.store.ca.cert_path
    )
    return client


def _wait(predicate: Any, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_anonymous_connection_is_refused_on_both_listeners(secure: Secure) -> None:
    ca = secure.store.ca.cert_path
    assert not Client().connect(secure.device_port, ca=ca)
    assert not Client().connect(secure.broker.port, ca=ca)


def test_wrong_password_is_refused(secure: Secure) -> None:
    ca = secure.store.ca.cert_path
    assert not Client("loa-a").connect(secure.device_port, "loa-a", "not-the-password", ca)
    assert not Client().connect(secure.broker.port, BACKEND_USER, "guess", ca)


def test_device_cannot_use_the_backend_listener(secure: Secure) -> None:
    creds = secure.creds("loa-a")
    assert not Client().connect(
        secure.broker.port, creds["username"], creds["password"], Path(creds["cafile"])
    )


def test_plaintext_mqtt_is_refused(secure: Secure) -> None:
    creds = secure.creds("loa-a")
    assert not Client("loa-a").connect(secure.device_port, creds["username"], creds["password"])


def test_device_publishing_on_another_devices_topics_is_dropped(secure: Secure) -> None:
    backend = _backend(secure)
    backend.paho.subscribe("tincoso/v1/#", qos=1)
    assert _wait(lambda: backend.subacks)
    a = _device(secure, "loa-a")
    a.paho.publish("tincoso/v1/loa-b/telemetry/heartbeat", b"forged", qos=1).wait_for_publish(3)
    a.paho.publish("tincoso/v1/loa-b/state", b"forged", qos=1, retain=True).wait_for_publish(3)
    a.paho.publish("tincoso/v1/loa-a/telemetry/heartbeat", b"mine", qos=1).wait_for_publish(3)
    assert _wait(lambda: any(m.topic.startswith("tincoso/v1/loa-a/") for m in backend.messages))
    time.sleep(0.3)
    topics = [m.topic for m in backend.messages]
    assert "tincoso/v1/loa-a/telemetry/heartbeat" in topics
    assert not [t for t in topics if t.startswith("tincoso/v1/loa-b/")], topics
    a.stop()
    backend.stop()


def test_device_cannot_read_another_devices_commands(secure: Secure) -> None:
    a = _device(secure, "loa-a")
    a.paho.subscribe("tincoso/v1/loa-b/cmd", qos=1)
    a.paho.subscribe("tincoso/v1/loa-a/cmd", qos=1)
    assert _wait(lambda: len(a.subacks) == 2)
    backend = _backend(secure)
    backend.paho.publish("tincoso/v1/loa-b/cmd", b"for b", qos=1).wait_for_publish(3)
    backend.paho.publish("tincoso/v1/loa-a/cmd", b"for a", qos=1).wait_for_publish(3)
    assert _wait(lambda: a.messages)
    time.sleep(0.3)
    assert [m.payload for m in a.messages] == [b"for a"]
    a.stop()
    backend.stop()


def test_device_cannot_take_over_another_devices_session(secure: Secure) -> None:
    b = _device(secure, "loa-b")
    impostor = _device(secure, "loa-a", client_id="loa-b")
    time.sleep(0.5)
    assert not b.disconnected.is_set(), "loa-a kicked loa-b off by reusing its client id"
    impostor.stop()
    b.stop()


def test_revoked_device_cannot_connect(secure: Secure) -> None:
    creds = secure.creds("loa-a")
    secure.store.revoke("loa-a")
    assert secure.broker.pid is not None
    reload_broker(secure.broker.pid)
    time.sleep(0.5)
    assert not Client("loa-a").connect(
        secure.device_port, creds["username"], creds["password"], Path(creds["cafile"])
    )
    assert _device(secure, "loa-b")


def test_rotation_invalidates_the_old_password(secure: Secure) -> None:
    old = secure.creds("loa-a")
    secure.store.rotate("loa-a")
    assert secure.broker.pid is not None
    reload_broker(secure.broker.pid)
    time.sleep(0.5)
    assert not Client("loa-a").connect(
        secure.device_port, old["username"], old["password"], Path(old["cafile"])
    )
    _device(secure, "loa-a").stop()


def test_secrets_are_private_and_hashed(secure: Secure) -> None:
    store = secure.store
    snippet = store.device_dir("loa-a") / "agent-mqtt.toml"
    assert stat.S_IMODE(snippet.stat().st_mode) == 0o600
    password = secure.creds("loa-a")["password"]
    passwd = store.passwd_path.read_text()
    assert password not in passwd
    encoded = next(line.split(":", 1)[1] for line in passwd.splitlines() if line.startswith("loa-a:"))
    assert verify_password(password, encoded)
    for path in (store.acl_path, store.manifest_path, store.directory / "ca" / "ca.crt"):
        assert password not in path.read_text()


@pytest.fixture
def cert_broker(tmp_path: Path) -> Iterator[Secure]:
    rig = Secure(tmp_path, client_certs=True)
    rig.broker.start()
    try:
        yield rig
    finally:
        rig.broker.stop()


def test_client_certificate_from_the_ca_connects(cert_broker: Secure) -> None:
    cred = cert_broker.a
    client = Client("loa-a")
    assert client.connect(
        cert_broker.device_port, ca=cert_broker.store.ca.cert_path, cert=cred.client_cert, key=cred.client_key
    )
    client.stop()


def test_tls_handshake_with_a_foreign_certificate_fails(cert_broker: Secure, tmp_path: Path) -> None:
    rogue = ProvisionStore(tmp_path / "rogue")
    cred = rogue.provision("loa-a", client_cert=True)
    client = Client("loa-a")
    assert not client.connect(
        cert_broker.device_port, ca=cert_broker.store.ca.cert_path, cert=cred.client_cert, key=cred.client_key
    )
    no_cert = Client("loa-a")
    assert not no_cert.connect(cert_broker.device_port, ca=cert_broker.store.ca.cert_path)


def test_revoked_certificate_is_refused(cert_broker: Secure) -> None:
    cred = cert_broker.a
    cert, key = (
        cert_broker.store.device_dir("loa-a") / "kept.crt",
        cert_broker.store.device_dir("loa-a") / "kept.key",
    )
    assert cred.client_cert is not None
    assert cred.client_key is not None
    cert.write_bytes(cred.client_cert.read_bytes())
    key.write_bytes(cred.client_key.read_bytes())
    cert_broker.store.revoke("loa-a")
    cert_broker.broker.stop()
    cert_broker.broker.start()
    assert not Client("loa-a").connect(
        cert_broker.device_port, ca=cert_broker.store.ca.cert_path, cert=cert, key=key
    )


def test_broker_without_tls_files_is_not_started_secure(tmp_path: Path) -> None:
    plain = LocalMosquitto(tmp_path)
    assert "allow_anonymous true" in plain.render_config()


def _tincoso(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_provision_cli_creates_rotates_and_revokes_without_printing_secrets(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    made = _tincoso(
        "provision", "loa-a", "loa-b", "--dir", str(secrets_dir), "--services-dir", str(tmp_path), cwd=REPO
    )
    assert made.returncode == 0, made.stderr
    assert "[2/2] loa-b" in made.stdout
    store = ProvisionStore(secrets_dir)
    assert store.active_devices() == ["loa-a", "loa-b"]
    first = tomllib.loads((store.device_dir("loa-a") / "agent-mqtt.toml").read_text())["mqtt"]["password"]
    assert first not in made.stdout + made.stderr
    rotated = _tincoso("provision", "loa-a", "--rotate", "--dir", str(secrets_dir), cwd=REPO)
    assert rotated.returncode == 0, rotated.stderr
    second = tomllib.loads((store.device_dir("loa-a") / "agent-mqtt.toml").read_text())["mqtt"]["password"]
    assert second != first
    assert second not in rotated.stdout + rotated.stderr
    revoked = _tincoso("provision", "loa-b", "--revoke", "--dir", str(secrets_dir), cwd=REPO)
    assert revoked.returncode == 0, revoked.stderr
    assert ProvisionStore(secrets_dir).active_devices() == ["loa-a"]
    assert "user loa-b" not in (secrets_dir / "mosquitto.acl").read_text()
    unknown = _tincoso("provision", "nobody", "--revoke", "--dir", str(secrets_dir), cwd=REPO)
    assert unknown.returncode == 1
    assert "not provisioned" in unknown.stderr
    bad = _tincoso("provision", "Bad/Id", "--dir", str(secrets_dir), cwd=REPO)
    assert bad.returncode == 1
    assert "device id" in bad.stderr


def test_secure_local_services_refuse_anonymous_and_report_status(tmp_path: Path) -> None:
    up = _tincoso("services", "up", "--secure", "--dir", str(tmp_path / "var"), cwd=REPO)
    try:
        assert up.returncode == 0, up.stderr
        assert "mqtts://" in up.stdout
        status = _tincoso("services", "status", "--dir", str(tmp_path / "var"), cwd=REPO)
        assert status.returncode == 0, status.stdout + status.stderr
        local = LocalServices.load(tmp_path / "var")
        assert local is not None
        assert local.device_port is not None
        assert local.secrets is not None
        ca = local.secrets.ca.cert_path
        assert not Client().connect(local.device_port, ca=ca)
        assert not Client().connect(local.mosquitto.port, ca=ca)
    finally:
        _tincoso("services", "down", "--dir", str(tmp_path / "var"), cwd=REPO)


def test_provisioned_snippet_is_a_valid_agent_mqtt_section(tmp_path: Path) -> None:
    from agent import config as agent_config

    store = ProvisionStore(tmp_path / "secrets", broker_port=18883)
    creds = store.provision("loa-a", client_cert=True)
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        '[device]\nid = "loa-a"\nkind = "speaker_cluster"\n'
        f'state_dir = "{tmp_path / "state"}"\n\n' + creds.snippet.read_text() + "\n[probes.system]\n"
    )
    loaded = agent_config.load(config_file)
    assert loaded.mqtt_username == "loa-a"
    assert loaded.mqtt_port == 18883
    assert loaded.mqtt_tls
    assert loaded.mqtt_cafile == str(store.ca.cert_path.resolve())
    assert loaded.mqtt_certfile == str(creds.client_cert)
