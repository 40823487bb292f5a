"""Serial transports for device simulators: a PTY or a TCP server, same device logic.

A simulated device is a function from received bytes to bytes to send back. The
transport runs it in a background thread and exposes a pyserial URL for the agent:

* ``PtyTransport``: ``os.openpty()``; the URL is the slave path (``/dev/pts/N``), opened
  with ``serial.serial_for_url(path)`` exactly like a USB-RS485 adapter.
* ``TcpTransport``: a server on 127.0.0.1 with a free port; the URL is
  ``socket://127.0.0.1:PORT``, like a ser2net or Ethernet-serial gateway. One client at a
  time; a new connection replaces the old one (as after an agent restart).

:class:`SimulatedDevice` is the base of every simulator: start()/stop(), context manager,
common fault knobs and a record of what the device sent.
"""

from __future__ import annotations

import collections
import os
import random
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from typing import Any, NamedTuple, Self

Handler = Callable[[bytes], bytes]
Clock = Callable[[], float]

_READ_SIZE = 4096
_MAX_RECORDS = 1000


class Transport:
    """Base class: runs ``handler`` on every chunk received and sends back its reply."""

    url: str

    def __init__(self) -> None:
        self._handler: Handler | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = threading.Event()
        self.dropped_bytes = 0

    def start(self, handler: Handler, name: str) -> None:
        """Serve ``handler`` in a daemon thread named ``name``."""
        if self._thread is not None:
            raise RuntimeError("transport already started")
        self._handler = handler
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close every descriptor; safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _reply(self, data: bytes) -> bytes:
        assert self._handler is not None
        return self._handler(data)

    def _serve(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class PtyTransport(Transport):
    """A pseudo-terminal: the device owns the master, the agent opens the slave path."""

    def __init__(self) -> None:
        super().__init__()
        self._master, self._slave = os.openpty()
        # Raw mode so the line discipline never rewrites CR/LF or echoes bytes, even
        # before pyserial opens the port and sets raw mode itself.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.url = os.ttyname(self._slave)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            ready, _, _ = select.select([self._master, self._wake_r], [], [])
            if self._master not in ready:
                continue
            try:
                data = os.read(self._master, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            reply = self._reply(data)
            if reply:
                self._write(reply)

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        # Nobody reads the port: a real UART would overrun too.
        self.dropped_bytes += len(data) - written

    def _close(self) -> None:
        # We keep our own slave fd open so that the master never sees EIO when the
        # agent closes and reopens the port.
        os.close(self._master)
        os.close(self._slave)


class TcpTransport(Transport):
    """A TCP server on 127.0.0.1, reachable as ``socket://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        super().__init__()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self.port = self._listener.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._client: socket.socket | None = None
        self.connections = 0

    def _serve(self) -> None:
        while not self._stopping.is_set():
            watch: list[Any] = [self._listener, self._wake_r]
            if self._client is not None:
                watch.append(self._client)
            ready, _, _ = select.select(watch, [], [])
            if self._listener in ready:
                self._accept()
            if self._client is not None and self._client in ready:
                self._receive(self._client)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        self._drop_client()
        self._client = client
        self.connections += 1

    def _receive(self, client: socket.socket) -> None:
        try:
            data = client.recv(_READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        reply = self._reply(data)
        if reply:
            try:
                client.sendall(reply)
            except OSError:
                self._drop_client()

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _close(self) -> None:
        self._drop_client()
        self._listener.close()


class SentRecord(NamedTuple):
    """One reply a simulator sent (or deliberately did not send).

    Attributes:
        at: simulator clock when it was sent.
        kind: what it was, e.g. ``"reading"``, ``"garbage"``, ``"exception"``, ``"ignored"``.
        data: the bytes on the wire (empty for ``"ignored"``).
        detail: what the device meant to say, e.g. the reading dict.
    """

    at: float
    kind: str
    data: bytes
    detail: dict[str, Any]


class SimulatedDevice:
    """Base of the simulators: transport, life cycle, fault knobs and what was sent.

    Fault knobs shared by every device (set them at any time from a test):

    * ``unplugged``: the device takes bytes and never answers (cable pulled, no power).
    * ``garbage_rate`` (0..1) with ``garbage_kind``: that fraction of replies is replaced by
      ``"random"`` bytes of the same length or ``"corrupt"`` (the real reply with one bit
      flipped where the checksum catches it; see each device for what exactly).
    * ``response_delay_s``: wait this long before answering (a slow device).

    ``counts`` tallies requests and replies by kind, ``records()`` lists what was sent, and
    ``errors`` keeps exceptions the device logic raised (a bad knob value, a simulator bug):
    the device stays up and the test can assert ``not device.errors``.

    Args:
        transport: ``"pty"`` or ``"tcp"``.
        clock: monotonic seconds; pass a fake one to drive time-based behaviour in tests.
        wall_clock: unix seconds, for values the device reports as dates.
        seed: seed of the noise and garbage generator, for reproducible runs.
    """

    kind = "device"

    def __init__(
        self,
        *,
        transport: str = "pty",
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        seed: int | None = None,
    ) -> None:
        if transport == "pty":
            self.transport: Transport = PtyTransport()
        elif transport == "tcp":
            self.transport = TcpTransport()
        else:
            raise ValueError(f"transport must be 'pty' or 'tcp', got {transport!r}")
        self.clock = clock
        self.wall_clock = wall_clock
        self.random = random.Random(seed)
        self.lock = threading.RLock()
        self.unplugged = False
        self.garbage_rate = 0.0
        self.garbage_kind = "random"
        self.response_delay_s = 0.0
        self.received = bytearray()
        self.errors: list[Exception] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.sent: collections.deque[SentRecord] = collections.deque(maxlen=_MAX_RECORDS)
        self._rx = b""

    @property
    def url(self) -> str:
        """pyserial URL of the device: a PTY path or ``socket://127.0.0.1:PORT``."""
        return self.transport.url

    def start(self) -> Self:
        """Start answering in a background thread."""
        self.transport.start(self._on_bytes, name=f"sim-{self.kind}")
        return self

    def stop(self) -> None:
        """Stop the thread and release the PTY or socket."""
        self.transport.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def records(self, kind: str | None = None) -> list[SentRecord]:
        """What the device sent, oldest first, optionally only one ``kind``."""
        with self.lock:
            return [r for r in self.sent if kind is None or r.kind == kind]

    def _on_bytes(self, data: bytes) -> bytes:
        with self.lock:
            self.received += data
            self._rx += data
            replies = []
            while True:
                request, self._rx = self._take_request(self._rx)
                if request is None:
                    break
                self.counts["requests"] += 1
                try:
                    replies.append(self._answer(request))
                except Exception as exc:  # a simulator bug must not kill the port thread
                    self.errors.append(exc)
                    self._record("simulator_error", b"", {"error": repr(exc)})
        if self.response_delay_s and any(replies):
            time.sleep(self.response_delay_s)
        return b"".join(replies)

    def _answer(self, request: bytes) -> bytes:
        if self.unplugged:
            self._record("ignored", b"", {"request": request})
            return b""
        reply, kind, detail = self._respond(request)
        if reply and self.garbage_rate and self.random.random() < self.garbage_rate:
            if self.garbage_kind == "corrupt":
                reply, kind = self._corrupt(reply), "corrupt"
            else:
                reply, kind = self.random.randbytes(len(reply)), "garbage"
        self._record(kind, reply, detail)
        return reply

    def _record(self, kind: str, data: bytes, detail: dict[str, Any]) -> None:
        self.counts[kind] += 1
        self.sent.append(SentRecord(self.clock(), kind, data, detail))

    def _take_request(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        """Cut the next complete request from ``buffer``: ``(request or None, rest)``."""
        raise NotImplementedError

    def _respond(self, request: bytes) -> tuple[bytes, str, dict[str, Any]]:
        """Answer one request: ``(reply bytes, record kind, detail)``."""
        raise NotImplementedError

    def _corrupt(self, reply: bytes) -> bytes:
        """Flip one bit so that the receiver's check fails (default: the last byte)."""
        return reply[:-1] + bytes((reply[-1] ^ 0x01,))
