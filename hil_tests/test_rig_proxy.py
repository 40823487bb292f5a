"""TcpProxy: forwards bytes, cuts, blackholes, delays, throttles and restores the link."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.localservices import LocalMosquitto
from hil_tests.faults.proxy import TcpProxy


class EchoServer:
    """Echoes every byte back: stands in for the broker in pure proxy tests."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port) as running:
        yield running


def _exchange(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_proxy_passes_bytes_both_ways(proxy: TcpProxy) -> None:
    payload = bytes(range(256)) * 400
    assert _exchange(proxy.port, payload) == payload
    assert proxy.bytes_up == len(payload)
    assert proxy.bytes_down == len(payload)
    assert proxy.connections_total == 1


def test_cut_drops_open_connection_and_refuses_new_ones(proxy: TcpProxy) -> None:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    proxy.wait_connected(1)
    proxy.cut()
    with sock:
        sock.settimeout(2)
        try:
            dropped = sock.recv(10) == b""
        except ConnectionResetError:
            dropped = True
        assert dropped
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    assert proxy.active_connections == 0


def test_restore_accepts_on_the_same_port(proxy: TcpProxy) -> None:
    port = proxy.port
    proxy.cut()
    proxy.restore()
    assert proxy.port == port
    assert _exchange(port, b"after the cut") == b"after the cut"


def test_blackhole_holds_bytes_until_restore(proxy: TcpProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
        proxy.wait_connected(1)
        proxy.cut(blackhole=True)
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        proxy.restore()
        sock.settimeout(2)
        assert sock.recv(10) == b"held"


def test_delay_adds_latency_each_way(proxy: TcpProxy) -> None:
    proxy.delay(150)
    started = time.monotonic()
    assert _exchange(proxy.port, b"ping") == b"ping"
    assert time.monotonic() - started >= 0.3


def test_throttle_slows_the_uplink(proxy: TcpProxy) -> None:
    proxy.throttle(40_000)
    started = time.monotonic()
    assert _exchange(proxy.port, b"x" * 20_000, timeout=5) == b"x" * 20_000
    assert time.monotonic() - started >= 0.4


def test_flap_cuts_then_restores_n_times(proxy: TcpProxy) -> None:
    future = proxy.flap(2, 0.4, wait=False)
    time.sleep(0.1)
    assert proxy.state == "cut"
    future.result(timeout=5)
    assert proxy.state == "up"
    assert _exchange(proxy.port, b"up again") == b"up again"


def test_mqtt_client_reconnects_through_proxy_after_cut(mosquitto: LocalMosquitto) -> None:
    connects: list[int] = []
    with TcpProxy("127.0.0.1", mosquitto.port) as proxy:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="proxy-test")
        client.on_connect = lambda *args: connects.append(1)
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        client.connect("127.0.0.1", proxy.port, keepalive=5)
        client.loop_start()
        try:
            _wait(lambda: len(connects) == 1)
            proxy.cut()
            time.sleep(0.3)
            proxy.restore()
            _wait(lambda: len(connects) == 2, timeout=10)
            assert proxy.connections_total == 2
        finally:
            client.disconnect()
            client.loop_stop()


def _wait(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met in {timeout:g} s"
        time.sleep(0.02)
