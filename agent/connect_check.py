"""``check-config --connect``: log in to the broker as the device and name what fails.

The steps run in the order a connection needs them, each on its own, so the failure is
named by the step: DNS (the name), TCP (the port), TLS (the CA, the name in the broker's
certificate), the MQTT login (user and password), the ACL (this identity may not read its
own command topic). ACL files give a device read and write on its subtree together
(``backend/provision/acl.py``). Mosquitto 2.0 grants a denied subscription and then filters
it silently, so beside a refused SUBACK the check refuses a user name other than the device
id (the ACL confines user X to ``<root>/X/``). A publish is not tried: anything the device
may publish is ingested as data.

The login uses the device's client id with ``clean_session = false`` and never
acknowledges a message: commands queued for the agent stay queued. A running agent on the
same identity is disconnected once (the broker allows one session per client id) and
reconnects on its own.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import AgentConfig, ConfigError, mqtt_password
from protocols import topics

# OpenSSL verify codes (x509_vfy.h) that mean "this CA did not sign the broker's certificate".
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}
_HOSTNAME_MISMATCH = {62, 64}
_EXPIRED = {9, 10}


class ConnectFailed(Exception):
    """One step of the connection failed; ``step`` is DNS, TCP, TLS, login or ACL."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


def check_connection(config: AgentConfig, timeout_s: float = 10.0) -> list[str]:
    """Try every step; return one line per step that passed.

    Raises:
        ConnectFailed: the first step that failed, with what to check.
    """
    host, port = config.mqtt_host, config.mqtt_port
    lines: list[str] = []
    addresses = _resolve(host, port)
    lines.append(f"DNS: OK {host} -> {', '.join(sorted({a[4][0] for a in addresses}))}")
    lines.append(f"TCP: OK {_tcp(addresses, host, port, timeout_s)}:{port}")
    context = None
    if config.mqtt_tls or config.mqtt_cafile:
        context = _tls_context(config)
        lines.append(f"TLS: OK {_tls(context, addresses, host, port, timeout_s, config)}")
    lines += _login_and_subscribe(config, context, timeout_s)
    return lines


def _resolve(host: str, port: int) -> list[Any]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectFailed(
            "DNS", f"cannot resolve {host!r}: {exc.strerror} (check [mqtt] host, DNS)"
        ) from None


def _connect_any(addresses: list[Any], timeout_s: float) -> socket.socket:
    error: OSError | None = None
    for family, kind, proto, _name, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout_s)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    assert error is not None
    raise error


def _tcp(addresses: list[Any], host: str, port: int, timeout_s: float) -> str:
    try:
        sock = _connect_any(addresses, timeout_s)
    except ConnectionRefusedError:
        raise ConnectFailed(
            "TCP", f"{host}:{port} refused the connection (broker not running, or wrong [mqtt] port)"
        ) from None
    except TimeoutError:
        raise ConnectFailed(
            "TCP", f"no answer from {host}:{port} within {timeout_s:g} s (firewall, or wrong address)"
        ) from None
    except OSError as exc:
        raise ConnectFailed("TCP", f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
    with sock:
        return str(sock.getpeername()[0])


def _tls_context(config: AgentConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=config.mqtt_cafile)
        if config.mqtt_certfile and config.mqtt_keyfile:
            context.load_cert_chain(config.mqtt_certfile, config.mqtt_keyfile)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConnectFailed("TLS", f"cannot load [mqtt] cafile/certfile/keyfile: {exc}") from None
    return context


def _tls(
    context: ssl.SSLContext, addresses: list[Any], host: str, port: int, timeout_s: float, config: AgentConfig
) -> str:
    try:
        with (
            _connect_any(addresses, timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            version = sock.version()
            cert: dict[str, Any] = dict(sock.getpeercert() or {})
    except ssl.SSLCertVerificationError as exc:
        raise ConnectFailed("TLS", _verify_failure(exc, host, config)) from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "WRONG_VERSION_NUMBER":
            raise ConnectFailed(
                "TLS", f"{host}:{port} does not speak TLS (a plain MQTT listener? check tls and port)"
            ) from None
        raise ConnectFailed("TLS", f"handshake with {host}:{port} failed: {reason}") from None
    except (OSError, TimeoutError) as exc:
        raise ConnectFailed("TLS", f"handshake with {host}:{port} failed: {exc}") from None
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    return f"{version}, broker certificate {names[0] if names else '?'!r} verified"


def _verify_failure(exc: ssl.SSLCertVerificationError, host: str, config: AgentConfig) -> str:
    code, why = exc.verify_code, exc.verify_message
    if code in _HOSTNAME_MISMATCH:
        return (
            f"the broker's certificate is not issued for {host!r} ({why}); "
            "set [mqtt] host to a name the certificate carries"
        )
    if code in _UNKNOWN_ISSUER:
        ca = config.mqtt_cafile or "the system's CA store"
        return f"the broker's certificate is not signed by the CA in {ca} ({why}); wrong [mqtt] cafile?"
    if code in _EXPIRED:
        return f"the broker's certificate is not valid now ({why}); check the controller's clock"
    return f"certificate verification failed: {why}"


class _Login:
    """A paho client in its own thread; records CONNACK, SUBACK and a lost connection."""

    def __init__(self, config: AgentConfig, context: ssl.SSLContext | None) -> None:
        # manual_ack: a queued command delivered to this check stays queued for the agent.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.device_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if config.mqtt_username is not None:
            self.client.username_pw_set(config.mqtt_username, mqtt_password(config))
        if context is not None:
            self.client.tls_set_context(context)
        self.connack: Any = None
        self.subacks: list[Any] = []
        self.answered = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *_a: self.answered.set()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connack = reason
        self.answered.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, codes: Any, _p: Any) -> None:
        self.subacks = list(codes)
        self.answered.set()


def _login_and_subscribe(config: AgentConfig, context: ssl.SSLContext | None, timeout_s: float) -> list[str]:
    user = config.mqtt_username or "(anonymous)"
    try:
        login = _Login(config, context)
    except ConfigError as exc:
        raise ConnectFailed("login", str(exc)) from None
    client = login.client
    try:
        client.connect(config.mqtt_host, config.mqtt_port, keepalive=max(10, int(timeout_s) * 2))
    except (OSError, ssl.SSLError) as exc:
        raise ConnectFailed("login", f"cannot open the MQTT connection: {exc}") from None
    client.loop_start()
    try:
        if not login.answered.wait(timeout_s) or login.connack is None:
            hint = "" if context is not None else " (a TLS listener? set [mqtt] tls = true)"
            raise ConnectFailed("login", f"the broker closed or did not answer the MQTT CONNECT{hint}")
        if login.connack.is_failure:
            raise ConnectFailed(
                "login",
                f"the broker refused user {user!r}: {login.connack} "
                "(check [mqtt] username and the password file; rotated or revoked?)",
            )
        lines = [f"login: OK as {user} (client id {config.device_id})"]
        topic = topics.command_topic(config.device_id, config.topic_root)
        login.answered.clear()
        client.subscribe(topic, qos=1)
        if not login.answered.wait(timeout_s) or not login.subacks:
            raise ConnectFailed("ACL", f"no answer to subscribing to {topic} within {timeout_s:g} s")
        # Mosquitto 2.0 grants a subscription its ACL denies and then delivers nothing, so a
        # refused SUBACK is only one sign; the provisioned ACL confines user X to
        # <root>/X/, so another user name cannot be this device's identity.
        foreign = config.mqtt_username is not None and config.mqtt_username != config.device_id
        if foreign or any(code.is_failure for code in login.subacks):
            raise ConnectFailed(
                "ACL",
                f"the broker refused user {user!r} its own command topic {topic} "
                "(the ACL gives this user another subtree: [mqtt] username must equal [device] id, "
                "provisioned with `tincoso provision`)",
            )
        lines.append(f"ACL: OK subscribe {topic}")
        return lines
    finally:
        client.disconnect()
        client.loop_stop()
