"""One serial device behind a pyserial URL, used from asyncio through a worker thread.

``serial.serial_for_url`` opens a tty path, a PTY, or ``socket://host:port`` the same way,
so a simulator stands in for the hardware. Every exchange is one request and one response
found by a codec's ``find_*`` function; the blocking part runs in a thread with its own
deadline, so a dead device costs at most ``timeout_s`` and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import serial

from protocols.errors import InvalidFrame

# find(buffer) -> (frame or None, bytes consumed); the codecs' find_response/find_frame.
Finder = Callable[[bytes], "tuple[bytes | None, int]"]

_POLL_S = 0.02


class LinkError(Exception):
    """The exchange failed; the message says how (no answer, garbage, port gone)."""


class SerialLink:
    """A lazily opened serial port with request/response exchanges.

    Args:
        url: pyserial URL: ``/dev/ttyUSB0``, a PTY path or ``socket://127.0.0.1:PORT``.
        baudrate: line speed (8N1).
        timeout_s: how long to wait for a complete response.
    """

    def __init__(self, url: str, baudrate: int, timeout_s: float) -> None:
        self.url = url
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.discarded = 0
        self._port: serial.Serial | None = None
        self._lock = asyncio.Lock()

    def _open(self) -> serial.Serial:
        if self._port is None:
            try:
                self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=_POLL_S)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise LinkError(f"cannot open: {exc}") from None
        return self._port

    def close_port(self) -> None:
        """Close the port (it reopens on the next exchange)."""
        port, self._port = self._port, None
        if port is None:
            return
        # pyserial's socket:// close() skips closing the socket when shutdown() fails (peer
        # already gone), which would leak one descriptor per reconnect: close it ourselves.
        sock = getattr(port, "_socket", None)
        with contextlib.suppress(serial.SerialException, OSError):
            port.close()
        if sock is not None:
            sock.close()

    def _exchange_blocking(self, request: bytes, find: Finder) -> bytes:
        port = self._open()
        try:
            # Drop leftovers of an earlier late or garbled answer so they cannot pass as this one's.
            port.reset_input_buffer()
            port.write(request)
            port.flush()
            return self._await_response(port, find)
        except (serial.SerialException, OSError) as exc:
            self.close_port()
            raise LinkError(f"port failed: {exc}") from None

    def _await_response(self, port: serial.Serial, find: Finder) -> bytes:
        buffer = b""
        received = 0
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            chunk = port.read(max(1, port.in_waiting))
            if not chunk:
                continue
            received += len(chunk)
            buffer += chunk
            try:
                frame, consumed = find(buffer)
            except InvalidFrame as exc:
                raise LinkError(f"garbage on the line: {exc}") from None
            if frame is not None:
                self.discarded += consumed - len(frame)
                return frame
            self.discarded += consumed
            buffer = buffer[consumed:]
        if received:
            raise LinkError(
                f"garbage on the line: {received} bytes in {self.timeout_s:.1f} s without a valid response"
            )
        raise LinkError(f"no answer within {self.timeout_s:.1f} s")

    async def exchange(self, request: bytes, find: Finder) -> bytes:
        """Send ``request`` and return the first valid response ``find`` cuts out.

        Raises:
            LinkError: the port cannot be opened or failed, nothing came back in time, or
                only bytes that never formed a valid response.
        """
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s + 5.0):
                    return await asyncio.to_thread(self._exchange_blocking, request, find)
            except TimeoutError:
                # The worker is stuck inside the OS (e.g. a wedged USB adapter): start afresh.
                self.close_port()
                raise LinkError(f"no answer within {self.timeout_s:.1f} s (port stuck)") from None

    async def close(self) -> None:
        """Close the port."""
        async with self._lock:
            self.close_port()
