"""Local Mosquitto and InfluxDB: start, answer, persist across restarts, fail clearly."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from backend.localservices import (
    LocalInflux,
    LocalMosquitto,
    LocalServices,
    ServiceError,
    ephemeral_port_range,
    port_is_free,
    read_state,
)

REPO = Path(__file__).resolve().parents[1]
TOPIC = "tincoso/vo-nhai/phu-thuong/speaker_cluster/ban-na-ca/status"


# -- helpers ---------------------------------------------------------------------------


def _loop_until(client: mqtt.Client, done: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for the broker"
        client.loop(timeout=0.02)


@pytest.fixture
def mqtt_client() -> Iterator[Callable[..., mqtt.Client]]:
    """Connected paho clients, driven by `_loop_until`; disconnected after the test."""
    clients: list[mqtt.Client] = []

    def connect(
        broker: LocalMosquitto, username: str | None = None, password: str | None = None
    ) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
        client.user_data_set({"connack": None, "messages": []})
        client.on_connect = lambda c, data, f, reason, p: data.update(connack=reason)
        client.on_message = lambda c, data, message: data["messages"].append(message)
        if username is not None:
            client.username_pw_set(username, password)
        client.connect(broker.host, broker.port)
        clients.append(client)
        _loop_until(client, lambda: client.user_data_get()["connack"] is not None)
        return client

    yield connect
    for client in clients:
        client.disconnect()
        client.loop(timeout=0.01)


def _subscribe(client: mqtt.Client, topic: str) -> None:
    subacked: list[bool] = []
    client.on_subscribe = lambda *_: subacked.append(True)
    client.subscribe(topic, qos=1)
    _loop_until(client, lambda: bool(subacked))


def _publish(client: mqtt.Client, topic: str, payload: bytes, *, retain: bool = False) -> None:
    info = client.publish(topic, payload, qos=1, retain=retain)
    _loop_until(client, info.is_published)


def _write(base_url: str, db: str, lines: str) -> None:
    response = httpx.post(f"{base_url}/write", params={"db": db}, content=lines, timeout=5.0)
    assert response.status_code == 204, response.text


def _select(base_url: str, db: str, query: str, **params: str) -> list[list[object]]:
    response = httpx.get(f"{base_url}/query", params={"db": db, "q": query, **params}, timeout=5.0)
    assert response.status_code == 200, response.text
    series = response.json()["results"][0].get("series", [])
    return [row for one in series for row in one["values"]]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- starting and answering ------------------------------------------------------------


def test_broker_and_database_start_on_free_ports_and_answer(
    services: tuple[LocalMosquitto, LocalInflux],
) -> None:
    broker, database = services
    assert broker.running
    assert database.running
    assert broker.answers()
    assert database.answers()
    assert len({broker.port, database.port, database.rpc_port}) == 3
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    assert httpx.get(f"{database.url}/ping", timeout=5.0).status_code == 204


def test_generated_configs_keep_services_private_quiet_and_persistent(
    services: tuple[LocalMosquitto, LocalInflux],
) -> None:
    broker, database = services
    broker_conf = broker.config_file.read_text().splitlines()
    assert f"listener {broker.port} 127.0.0.1" in broker_conf
    assert "persistence true" in broker_conf
    assert f"persistence_location {broker.data_dir}/" in broker_conf
    assert "max_queued_messages 100000" in broker_conf
    assert broker.log_file.exists()
    influx_conf = database.config_file.read_text()
    assert f'bind-address = "127.0.0.1:{database.rpc_port}"' in influx_conf
    assert f'bind-address = "127.0.0.1:{database.port}"' in influx_conf
    assert "reporting-disabled = true" in influx_conf
    assert "[monitor]\nstore-enabled = false" in influx_conf
    assert "[continuous_queries]\nenabled = true" in influx_conf
    assert not (database.data_dir / "data" / "_internal").exists()


def test_point_written_through_v1_api_is_read_back(influx_db: tuple[str, str]) -> None:
    base_url, db = influx_db
    _write(
        base_url,
        db,
        "speaker_cluster,commune=Phú\\ Thượng,hamlet=Bản\\ Nà\\ Ca online=1i,rms_dbfs=-18.5 "
        "1732600800000000000",
    )
    rows = _select(base_url, db, "SELECT online, rms_dbfs FROM speaker_cluster WHERE \"hamlet\"='Bản Nà Ca'")
    assert rows == [["2024-11-26T06:00:00Z", 1, -18.5]]


def test_status_published_by_agent_reaches_subscriber(
    mosquitto: LocalMosquitto, mqtt_client: Callable[..., mqtt.Client]
) -> None:
    backend = mqtt_client(mosquitto)
    _subscribe(backend, TOPIC)
    agent = mqtt_client(mosquitto)
    _publish(agent, TOPIC, b'{"online": true}')
    messages = backend.user_data_get()["messages"]
    _loop_until(backend, lambda: bool(messages))
    assert [(m.topic, m.payload) for m in messages] == [(TOPIC, b'{"online": true}')]


def test_broker_keeps_sending_to_an_mqtt311_subscriber_that_acknowledges_late(
    mosquitto: LocalMosquitto, mqtt_client: Callable[..., mqtt.Client]
) -> None:
    # An ingest on MQTT 3.1.1 acknowledges a batch only once it is written; with
    # Mosquitto's default window (20 unacknowledged messages) it would receive in trickles.
    ingest = mqtt_client(mosquitto)
    ingest.manual_ack_set(True)
    topic = f"t{uuid.uuid4().hex[:8]}/window"
    _subscribe(ingest, topic)
    agent = mqtt_client(mosquitto)
    infos = [agent.publish(topic, b"%d" % n, qos=1) for n in range(300)]
    _loop_until(agent, lambda: all(info.is_published() for info in infos))
    messages = ingest.user_data_get()["messages"]
    _loop_until(ingest, lambda: len(messages) >= 300)
    assert sorted(int(m.payload) for m in messages) == list(range(300))


# -- persistence and fault injection ---------------------------------------------------


def test_influx_keeps_points_across_restart_and_kill(
    fresh_influx: Callable[..., LocalInflux],
) -> None:
    database = fresh_influx()
    database.create_database("tincoso")
    port = database.port
    _write(database.url, "tincoso", "eboard,commune=La\\ Hiên display_on=1i 1732600800000000000")
    database.restart()
    _write(database.url, "tincoso", "eboard,commune=La\\ Hiên display_on=0i 1732600860000000000")
    database.kill()
    assert not database.running
    assert not database.answers(timeout=0.2)
    database.restart()
    assert database.port == port
    rows = _select(database.url, "tincoso", "SELECT display_on FROM eboard")
    assert [row[1] for row in rows] == [1, 0]


def test_retained_message_survives_broker_restart(
    fresh_mosquitto: Callable[..., LocalMosquitto], mqtt_client: Callable[..., mqtt.Client]
) -> None:
    broker = fresh_mosquitto()
    port = broker.port
    agent = mqtt_client(broker)
    _publish(agent, TOPIC, b"offline", retain=True)
    agent.disconnect()
    broker.restart()
    assert broker.port == port
    backend = mqtt_client(broker)
    _subscribe(backend, TOPIC)
    messages = backend.user_data_get()["messages"]
    _loop_until(backend, lambda: bool(messages))
    assert messages[0].payload == b"offline"
    assert messages[0].retain


def test_killed_broker_leaves_no_process_and_restarts_on_same_port(
    fresh_mosquitto: Callable[..., LocalMosquitto],
) -> None:
    broker = fresh_mosquitto()
    pid, port = broker.pid, broker.port
    assert pid is not None
    broker.kill()
    assert not broker.running
    assert broker.pid is None
    assert _gone(pid)
    assert not broker.answers(timeout=0.2)
    broker.restart()
    assert broker.port == port
    assert broker.answers()


# -- auth hooks ------------------------------------------------------------------------


def test_influx_auth_mode_requires_username_and_password(
    fresh_influx: Callable[..., LocalInflux],
) -> None:
    database = fresh_influx(auth=True, admin_user="district", admin_password="Võ Nhai 2025")
    show = {"q": "SHOW DATABASES"}
    anonymous = httpx.get(f"{database.url}/query", params=show, timeout=5.0)
    assert anonymous.status_code == 401
    wrong = httpx.get(f"{database.url}/query", params={**show, "u": "district", "p": "x"}, timeout=5.0)
    assert wrong.status_code == 401
    right = httpx.get(f"{database.url}/query", params={**show, **database.credentials}, timeout=5.0)
    assert right.status_code == 200
    database.restart()  # the admin user exists now; start must not trip over it
    assert database.query("SHOW USERS")["results"][0]["series"][0]["values"] == [["district", True]]


def test_broker_with_password_file_refuses_anonymous_clients(
    tmp_path: Path,
    fresh_mosquitto: Callable[..., LocalMosquitto],
    mqtt_client: Callable[..., mqtt.Client],
) -> None:
    password_file = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(password_file), "technician", "s3cret"],
        check=True,
        capture_output=True,
    )
    broker = fresh_mosquitto(
        allow_anonymous=False,
        password_file=password_file,
        probe_username="technician",
        probe_password="s3cret",
    )
    anonymous = mqtt_client(broker)
    technician = mqtt_client(broker, "technician", "s3cret")
    assert isinstance(anonymous.user_data_get()["connack"], ReasonCode)
    assert anonymous.user_data_get()["connack"].is_failure
    assert not technician.user_data_get()["connack"].is_failure


# -- clear failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service_class", "package"), [(LocalMosquitto, "mosquitto"), (LocalInflux, "influxdb")]
)
def test_missing_binary_names_the_debian_package(
    tmp_path: Path, service_class: type[LocalMosquitto | LocalInflux], package: str
) -> None:
    missing = tmp_path / "nowhere" / service_class.executable
    service = service_class(tmp_path, binary=missing)
    with pytest.raises(ServiceError, match=f"install it with `apt-get install {package}`") as info:
        service.start()
    assert str(missing) in str(info.value)
    assert not service.running


def test_busy_port_is_named_before_launch(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        database = LocalInflux(tmp_path, port=port)
        with pytest.raises(ServiceError, match=f"influxdb cannot start: port {port} .* in use"):
            database.start()
    assert not database.running


def test_broker_that_exits_during_start_shows_its_log(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        # A second listener on a busy port gets past our port check; Mosquitto itself fails.
        broker = LocalMosquitto(tmp_path, extra_listener_lines=[f"listener {busy} 127.0.0.1"])
        started = time.monotonic()
        with pytest.raises(ServiceError, match="mosquitto exited with code") as info:
            broker.start()
    assert time.monotonic() - started < 10
    assert "Address already in use" in str(info.value)
    assert not broker.running


# -- the CLI ---------------------------------------------------------------------------


def _tincoso(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def services_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for ``tincoso services``; anything left running there is stopped."""
    directory = tmp_path / "var"
    yield directory
    leftover = LocalServices.load(directory)
    if leftover is not None:
        leftover.stop()


def test_cli_services_up_status_down(services_dir: Path) -> None:
    up = _tincoso("services", "up", "--dir", str(services_dir))
    assert up.returncode == 0, up.stderr
    state = read_state(services_dir)
    assert state is not None
    mqtt_port, influx_port = state["mosquitto"]["port"], state["influxdb"]["port"]
    pids = [state["mosquitto"]["pid"], state["influxdb"]["pid"]]
    assert f"mqtt://127.0.0.1:{mqtt_port}" in up.stdout
    assert f"http://127.0.0.1:{influx_port}" in up.stdout
    assert "tincoso services down --dir" in up.stdout
    # The CLI process has exited; the services it started keep serving.
    assert httpx.get(f"http://127.0.0.1:{influx_port}/ping", timeout=5.0).status_code == 204
    assert LocalMosquitto(services_dir, port=mqtt_port).answers()

    status = _tincoso("services", "status", "--dir", str(services_dir))
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("answering") == 2
    assert all(f"pid {pid}" in status.stdout for pid in pids)

    down = _tincoso("services", "down", "--dir", str(services_dir))
    assert down.returncode == 0, down.stderr
    assert all(_gone(pid) for pid in pids)
    assert json.loads((services_dir / "services.json").read_text())["services"]["influxdb"]["pid"] is None

    after = _tincoso("services", "status", "--dir", str(services_dir))
    assert after.returncode == 1
    assert after.stdout.count("stopped") == 2
    assert after.stderr.startswith("tincoso: error: mosquitto is stopped")
    assert "Traceback" not in after.stderr

    again = _tincoso("services", "up", "--dir", str(services_dir))
    assert again.returncode == 0, again.stderr
    assert f"mqtt://127.0.0.1:{mqtt_port}" in again.stdout
    assert f"http://127.0.0.1:{influx_port}" in again.stdout
    assert _tincoso("services", "down", "--dir", str(services_dir)).returncode == 0


def test_cli_reports_user_errors_in_one_line(tmp_path: Path) -> None:
    status = _tincoso("services", "status", "--dir", str(tmp_path / "empty"))
    assert status.returncode == 1
    assert status.stderr.strip().splitlines() == [
        f"tincoso: error: no services recorded in {tmp_path / 'empty'}; "
        f"start them with `tincoso services up --dir {tmp_path / 'empty'}`"
    ]
    down = _tincoso("services", "down", "--dir", str(tmp_path / "empty"))
    assert down.returncode == 0
    assert "nothing to stop" in down.stdout
    bad_port = _tincoso("services", "up", "--dir", str(tmp_path), "--mqtt-port", "loa")
    assert bad_port.returncode == 1
    assert "port must be a number, got 'loa'" in bad_port.stderr


def test_an_auto_picked_port_taken_at_the_last_moment_is_replaced(tmp_path: Path) -> None:
    broker = LocalMosquitto(tmp_path)
    taken = socket.socket()
    taken.bind(("127.0.0.1", broker.port))
    taken.listen()
    first_port = broker.port
    claims = []

    def claim_without_checking_once() -> None:
        # The race: the port looked free when picked, someone else bound it before mosquitto.
        claims.append(broker.port)
        if len(claims) > 1:
            type(broker)._claim_ports(broker)

    broker._claim_ports = claim_without_checking_once  # type: ignore[method-assign]
    try:
        broker.start()
        assert broker.port != first_port
        assert broker.answers()
    finally:
        broker.stop()
        taken.close()


def test_auto_picked_ports_stay_out_of_the_range_outgoing_connections_use(tmp_path: Path) -> None:
    # A client retrying a stopped service (ingest while InfluxDB is down for a minute) gets
    # local ports from the kernel's ephemeral range and can even connect to itself there;
    # a service port from that range may then be taken when the service restarts on it.
    low, high = ephemeral_port_range()
    services = [LocalMosquitto(tmp_path / str(n)) for n in range(20)]
    services += [LocalInflux(tmp_path / f"i{n}") for n in range(20)]
    ports = [service.port for service in services]
    ports += [service.rpc_port for service in services if isinstance(service, LocalInflux)]
    assert all(not low <= port <= high for port in ports), sorted(ports)
    assert all(port_is_free(port) for port in ports)


def test_fixed_port_held_briefly_after_stop_is_waited_for_on_restart(tmp_path: Path) -> None:
    broker = LocalMosquitto(tmp_path)
    broker.start()
    try:
        broker.stop()
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", broker.port))
        holder.listen()
        release = threading.Timer(1.0, holder.close)
        release.start()
        broker.start()
        assert broker.answers()
        release.join()
    finally:
        broker.stop()
