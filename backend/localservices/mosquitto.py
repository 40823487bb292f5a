"""A private Mosquitto broker on 127.0.0.1, with persistence, for development and tests."""

from __future__ import annotations

import os
import pwd
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.localservices._process import HOST, LocalService

# Mosquitto's default (1,000 per client) drops a field agent's backlog after a short outage.
MAX_QUEUED_MESSAGES = 100_000
# QoS 1 messages in flight to an MQTT 3.1.1 client (Mosquitto's default is 20): the window
# of the ingest (``mqtt.protocol = 4``, the default) is ``mqtt.receive_maximum`` (1,000), as
# it is with MQTT 5, where the client asks for it.
MAX_INFLIGHT_MESSAGES = 1000
# The largest message of the wire protocol is a batch (protocols.payloads.MAX_BATCH_BYTES):
# anything larger is no tincoso message, and the broker drops it instead of storing 10 MB.
MESSAGE_SIZE_LIMIT = 262_144
# Seconds between saves of the broker's store. Mosquitto saves the whole store each time; a
# crash loses what arrived since the last save, which the agents resend (no receipt came).
AUTOSAVE_INTERVAL_S = 10


class LocalMosquitto(LocalService):
    """Mosquitto 2 run as ``mosquitto -c CONF`` with files under ``root/mosquitto/``.

    Anonymous access on a plain listener is the default. The keyword arguments after
    ``autosave_interval`` are hooks for a secure mode (passwords, ACL, TLS); provisioning
    the files they name is left to the caller.

    Args:
        root: Directory that holds one subdirectory per service.
        port: Listener port on 127.0.0.1; None picks a free one.
        binary: Path of the mosquitto executable; None looks on PATH and in /usr/sbin.
        start_timeout: Seconds to wait for a CONNACK after launch.
        stop_timeout: Seconds to wait after SIGTERM before SIGKILL.
        autosave_interval: Seconds between saves of the in-memory store; a clean stop
            always saves, so this only matters for ``kill()``.
        allow_anonymous: Accept clients without a username.
        password_file: A ``mosquitto_passwd`` file.
        acl_file: A Mosquitto ACL file.
        cafile: CA certificate; with ``certfile`` and ``keyfile`` it turns on TLS.
        certfile: Broker certificate.
        keyfile: Broker private key.
        require_certificate: Ask clients for a certificate signed by ``cafile``.
        extra_listener_lines: Raw config lines placed right after the ``listener`` line.
        probe_username: Username the readiness probe connects with.
        probe_password: Password the readiness probe connects with.
        probe_certfile: Client certificate for the probe when certificates are required.
        probe_keyfile: Client key for the probe.
        listeners: Complete listener and authentication lines that replace the single
            listener built from the arguments above (the secure mode's two listeners);
            ``port`` must still be the listener the probe and the backend use.
    """

    name: ClassVar[str] = "mosquitto"
    executable: ClassVar[str] = "mosquitto"
    debian_package: ClassVar[str] = "mosquitto"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        autosave_interval: int = AUTOSAVE_INTERVAL_S,
        allow_anonymous: bool = True,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        cafile: Path | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        require_certificate: bool = False,
        extra_listener_lines: Sequence[str] = (),
        probe_username: str | None = None,
        probe_password: str | None = None,
        probe_certfile: Path | None = None,
        probe_keyfile: Path | None = None,
        listeners: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            root, port=port, binary=binary, start_timeout=start_timeout, stop_timeout=stop_timeout
        )
        self.autosave_interval = autosave_interval
        self.allow_anonymous = allow_anonymous
        self.password_file = password_file
        self.acl_file = acl_file
        self.cafile = cafile
        self.certfile = certfile
        self.keyfile = keyfile
        self.require_certificate = require_certificate
        self.extra_listener_lines = tuple(extra_listener_lines)
        self.probe_username = probe_username
        self.probe_password = probe_password
        self.probe_certfile = probe_certfile
        self.probe_keyfile = probe_keyfile
        self.listeners = tuple(listeners) if listeners is not None else None

    @property
    def host(self) -> str:
        """The address the listener binds."""
        return HOST

    @property
    def tls(self) -> bool:
        """True when the listener speaks MQTT over TLS."""
        return self.certfile is not None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` (``mqtts://`` with TLS)."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def config_file(self) -> Path:
        """The generated ``mosquitto.conf``."""
        return self.config_dir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        """Mosquitto's own log (``log_dest file``)."""
        return self.log_dir / "mosquitto.log"

    @property
    def log_files(self) -> list[Path]:
        """Broker log first, then stdout/stderr (errors before the config is read)."""
        return [self.log_file, self.console_log]

    def render_config(self) -> str:
        """The text of ``mosquitto.conf`` for the current settings."""
        lines = [
            "# Generated by tincoso (backend/localservices); rewritten on every start.",
            # As root, Mosquitto would switch to user "mosquitto", who cannot write our dirs.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        ]
        if self.listeners is not None:
            lines += self.listeners
        else:
            lines.append(f"listener {self.port} {HOST}")
            lines += _tls_lines(self.cafile, self.certfile, self.keyfile, self.require_certificate)
            lines += self.extra_listener_lines
            lines.append(f"allow_anonymous {_flag(self.allow_anonymous)}")
            if self.password_file is not None:
                lines.append(f"password_file {self.password_file}")
            if self.acl_file is not None:
                lines.append(f"acl_file {self.acl_file}")
        lines += [
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {self.autosave_interval}",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            f"message_size_limit {MESSAGE_SIZE_LIMIT}",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        return "\n".join(lines) + "\n"

    def state(self) -> dict[str, Any]:
        """See `LocalService.state`."""
        return {**super().state(), "log": str(self.log_file)}

    def answers(self, timeout: float = 1.0) -> bool:
        """Connect with MQTT 3.1.1 and wait for a CONNACK.

        Any CONNACK counts, even a refusal: the broker is serving MQTT either way.

        Args:
            timeout: Seconds to wait for the TCP connect and for the CONNACK.

        Returns:
            True if a CONNACK arrived in time.
        """
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"tincoso-probe-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        client.connect_timeout = timeout
        if self.probe_username is not None:
            client.username_pw_set(self.probe_username, self.probe_password)
        if self.tls:
            client.tls_set(
                ca_certs=str(self.cafile) if self.cafile else None,
                certfile=str(self.probe_certfile) if self.probe_certfile else None,
                keyfile=str(self.probe_keyfile) if self.probe_keyfile else None,
            )
        connacks: list[object] = []
        client.on_connect = lambda _c, _u, _flags, reason, _props: connacks.append(reason)
        try:
            client.connect(HOST, self.port, keepalive=10)
        except OSError:
            return False
        try:
            deadline = time.monotonic() + timeout
            while not connacks and time.monotonic() < deadline:
                if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
        finally:
            _close(client)
        return bool(connacks)

    def _write_config(self) -> None:
        for directory in (self.config_dir, self.data_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.render_config(), encoding="utf-8")

    def _command(self, binary: Path) -> list[str]:
        return [str(binary), "-c", str(self.config_file)]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _tls_lines(
    cafile: Path | None, certfile: Path | None, keyfile: Path | None, require_certificate: bool
) -> list[str]:
    lines = []
    if cafile is not None:
        lines.append(f"cafile {cafile}")
    if certfile is not None:
        lines.append(f"certfile {certfile}")
    if keyfile is not None:
        lines.append(f"keyfile {keyfile}")
    if require_certificate:
        lines.append("require_certificate true")
    return lines


def _close(client: mqtt.Client) -> None:
    """Send DISCONNECT and close the socket now, not when the client is collected."""
    client.disconnect()
    # paho closes the socket only once its loop has written the DISCONNECT packet.
    for _ in range(5):
        if client.loop(timeout=0.01) != mqtt.MQTT_ERR_SUCCESS:
            break
    sock = client.socket()
    if sock is not None:
        sock.close()
