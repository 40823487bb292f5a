"""A small MQTT 3.1.1 client for MicroPython: what the MCU agent needs, nothing more.

CONNECT with a Last Will and credentials, PUBLISH at QoS 1 waiting for its PUBACK,
SUBSCRIBE, PINGREQ, incoming QoS-1 PUBLISH acknowledged after the callback. TLS with the
broker's CA checked and the host name verified (``ssl.SSLContext``, ``CERT_REQUIRED``,
``server_hostname``). Every failure is an ``OSError``: the caller drops the client and
reconnects; nothing here retries on its own.

Runs on MicroPython (ESP32 firmware and the unix port) and CPython.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

import binascii
import select
import socket
import struct
import time

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

CONNACK_ERRORS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def _string(value: "bytes | str") -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def connect_packet(
    client_id: str,
    keepalive_s: int,
    clean_session: bool,
    username: "str | None",
    password: "str | None",
    will: "tuple[str, bytes, bool] | None",
) -> bytes:
    """The CONNECT packet (``will`` is ``(topic, payload, retain)``, sent at QoS 1)."""
    flags = 0x02 if clean_session else 0
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | (1 << 3) | (0x20 if will[2] else 0)
        payload += _string(will[0]) + _string(will[1])
    if username is not None:
        flags |= 0x80
        payload += _string(username)
    if password is not None:
        flags |= 0x40
        payload += _string(password)
    body = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive_s) + payload
    return bytes((CONNECT,)) + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, pid: int, qos: int, retain: bool) -> bytes:
    """A PUBLISH packet (``pid`` only matters for QoS 1)."""
    body = _string(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    first = PUBLISH | (qos << 1) | (1 if retain else 0)
    return bytes((first,)) + _remaining_length(len(body)) + body


def pem_to_der(data: bytes) -> bytes:
    """The first certificate of a PEM file as DER (what MicroPython's mbedtls takes)."""
    if not data.startswith(b"-----"):
        return data
    body = []
    for line in data.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----END"):
            break
        if line and not line.startswith(b"-----"):
            body.append(line)
    return binascii.a2b_base64(b"".join(body))


def open_tls(sock: "Any", host: str, cafile: str, certfile: "str | None", keyfile: "str | None") -> "Any":
    """Wrap a connected socket in TLS that checks the broker against ``cafile``."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # not in the stubs
    with open(cafile, "rb") as f:
        cadata = f.read()
    context.load_verify_locations(cadata=pem_to_der(cadata))
    if certfile and keyfile:
        context.load_cert_chain(certfile, keyfile)
    return context.wrap_socket(sock, server_hostname=host)


class MQTTClient:
    """One MQTT connection.

    Args:
        client_id: the device id.
        host: broker host name or address (also the TLS server name, unless ``server_name``).
        port: broker port.
        username, password: credentials, or None.
        keepalive_s: MQTT keepalive; a PINGREQ goes out at half of it.
        timeout_s: longest wait for one network step (connect, a packet, a PUBACK).
        cafile: the CA that signed the broker's certificate; None for plain TCP.
        server_name: the name to verify in the broker's certificate (default ``host``).
    """

    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        username: "str | None" = None,
        password: "str | None" = None,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        cafile: "str | None" = None,
        server_name: "str | None" = None,
        certfile: "str | None" = None,
        keyfile: "str | None" = None,
    ) -> None:
        self.client_id = client_id
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.cafile = cafile
        self.server_name = server_name or host
        self.certfile = certfile
        self.keyfile = keyfile
        self.sock = None  # type: Any
        self.on_message = None  # type: Any
        self._pid = 0
        self._last_sent = time.ticks_ms()
        self._ping_sent = None  # type: Any

    # -- connection ------------------------------------------------------------------
    def connect(self, will: "tuple[str, bytes, bool] | None" = None, clean_session: bool = False) -> bool:
        """Open the connection; True if the broker kept a session for us.

        Raises:
            OSError: the network, TLS or the broker refused (the message says which).
        """
        addr = socket.getaddrinfo(self.host, self.port)[0][-1]
        sock = socket.socket()
        try:
            sock.settimeout(self.timeout_s)
            sock.connect(addr)
            if self.cafile:
                sock = open_tls(sock, self.server_name, self.cafile, self.certfile, self.keyfile)
        except Exception as exc:
            sock.close()
            raise OSError("cannot reach %s:%d: %r" % (self.host, self.port, exc)) from None
        self.sock = sock
        self._write(
            connect_packet(
                self.client_id, self.keepalive_s, clean_session, self.username, self.password, will
            )
        )
        kind, body = self._read_packet()
        if kind != CONNACK or len(body) != 2:
            self.close()
            raise OSError("broker answered CONNECT with packet 0x%02x" % kind)
        if body[1]:
            self.close()
            raise OSError("broker refused the connection: %s" % CONNACK_ERRORS.get(body[1], body[1]))
        self._ping_sent = None
        return bool(body[0] & 1)

    def close(self) -> None:
        """Drop the connection without DISCONNECT (the broker publishes the Last Will)."""
        if self.sock is not None:
            try:  # noqa: SIM105 -- MicroPython has no contextlib by default
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def disconnect(self) -> None:
        """A clean DISCONNECT (no Last Will), then close."""
        try:  # noqa: SIM105
            self._write(bytes((DISCONNECT, 0)))
        except OSError:
            pass
        self.close()

    # -- bytes -----------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.sock is None:
            raise OSError("not connected")
        view = memoryview(data)
        while len(view):
            n = self.sock.write(view)
            if n is None or n <= 0:
                raise OSError("connection closed while sending")
            view = view[n:]
        self._last_sent = time.ticks_ms()

    def _read_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            if self.sock is None:
                raise OSError("not connected")
            chunk = self.sock.read(n - len(out))
            if not chunk:
                raise OSError("connection closed by the broker")
            out += chunk
        return out

    def _read_packet(self) -> "tuple[int, bytes]":
        first = self._read_exact(1)[0]
        length = 0
        shift = 0
        while True:
            byte = self._read_exact(1)[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise OSError("bad remaining length from the broker")
        return first, self._read_exact(length) if length else b""

    def _readable(self, timeout_ms: int) -> bool:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(timeout_ms))

    # -- packets ---------------------------------------------------------------------
    def _next_pid(self) -> int:
        self._pid = self._pid % 65535 + 1
        return self._pid

    def _handle(self, first: int, body: bytes) -> "int | None":
        """Handle one incoming packet; return the packet id of a PUBACK or SUBACK."""
        kind = first & 0xF0
        if kind == PUBLISH:
            qos = (first >> 1) & 3
            tlen = struct.unpack("!H", body[:2])[0]
            topic = body[2 : 2 + tlen].decode()
            start = 2 + tlen
            pid = 0
            if qos:
                pid = struct.unpack("!H", body[start : start + 2])[0]
                start += 2
            if self.on_message is not None:
                self.on_message(topic, body[start:])
            if qos == 1:
                self._write(bytes((PUBACK, 2)) + struct.pack("!H", pid))
            return None
        if kind == PINGRESP:
            self._ping_sent = None
            return None
        if kind == SUBACK and body[2:3] == b"\x80":
            raise OSError("broker refused the subscription (packet %d)" % struct.unpack("!H", body[:2])[0])
        if kind in (PUBACK, SUBACK):
            return int(struct.unpack("!H", body[:2])[0])
        return None

    def _wait_for(self, pid: int) -> None:
        deadline = time.ticks_add(time.ticks_ms(), int(self.timeout_s * 1000))
        while True:
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise OSError("no acknowledgement for packet %d within %g s" % (pid, self.timeout_s))
            first, body = self._read_packet()
            if self._handle(first, body) == pid:
                return

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish; at QoS 1, return only once the broker's PUBACK arrived."""
        pid = self._next_pid() if qos else 0
        self._write(publish_packet(topic, payload, pid, qos, retain))
        if qos:
            self._wait_for(pid)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK."""
        pid = self._next_pid()
        body = struct.pack("!H", pid) + _string(topic) + bytes((qos,))
        self._write(bytes((SUBSCRIBE,)) + _remaining_length(len(body)) + body)
        self._wait_for(pid)

    def check_msg(self) -> None:
        """Handle whatever the broker sent (no wait); ping when the keepalive asks for it.

        Raises:
            OSError: the connection is gone or the broker stopped answering pings.
        """
        while self._readable(0):
            first, body = self._read_packet()
            self._handle(first, body)
        now = time.ticks_ms()
        if self._ping_sent is not None:
            if time.ticks_diff(now, self._ping_sent) > self.keepalive_s * 1000:
                raise OSError("broker did not answer a ping within %d s" % self.keepalive_s)
        elif time.ticks_diff(now, self._last_sent) > self.keepalive_s * 500:
            self._write(bytes((PINGREQ, 0)))
            self._ping_sent = now
