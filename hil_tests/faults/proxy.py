"""A TCP proxy between an agent and its broker that breaks the network on demand.

The agent's config points at the proxy; the proxy forwards to the broker. Faults:

* ``cut()``: the 4G link drops: every connection is reset and new ones are refused;
  ``cut(blackhole=True)`` instead freezes traffic both ways and leaves connections open,
  as a partition does (TCP keeps the bytes; only keepalives notice);
* ``restore()``: traffic flows again on the same port;
* ``delay(ms)``: added one-way latency per direction; ``throttle(bytes_per_s)``: a slow uplink;
* ``flap(n, period_s)``: ``n`` cut/restore cycles of ``period_s`` each.

The proxy runs its own asyncio loop in a daemon thread, so sync tests, async tests and the
demo drive it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, Self, TypeVar

_T = TypeVar("_T")
_READ_SIZE = 65536
_QUEUE_CHUNKS = 64
_CALL_TIMEOUT_S = 10.0


class _Link:
    """One proxied connection: client side, broker side and its pump tasks."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close sends RST, as a dropped link looks to a client that writes.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    """Forward 127.0.0.1:``port`` to ``target_host:target_port``, with network faults.

    Args:
        target_host: the broker's host.
        target_port: the broker's port.
        port: listening port; None picks a free one (kept across cut/restore).
    """

    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = port or 0
        self.host = "127.0.0.1"
        self.connections_total = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.refused = 0
        self.delay_s = 0.0
        self.bytes_per_s: float | None = None
        self.state = "stopped"
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._placeholder: socket.socket | None = None
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def active_connections(self) -> int:
        """Connections open through the proxy right now."""
        return len(self._links)

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Listen and forward."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Close every connection and the listener, end the loop thread; safe twice."""
        if self._thread is None or not self._loop.is_running():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self.state = "stopped"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------

    def cut(self, *, blackhole: bool = False) -> None:
        """Drop the link: reset connections and refuse new ones, or freeze traffic (``blackhole``)."""
        self._call(self._blackhole() if blackhole else self._cut())

    def restore(self) -> None:
        """End a cut: listen again on the same port and let traffic flow."""
        self._call(self._restore())

    def delay(self, ms: float) -> None:
        """Add ``ms`` milliseconds of one-way latency to every chunk, both directions."""
        self.delay_s = max(0.0, ms / 1000)

    def throttle(self, bytes_per_s: float | None) -> None:
        """Limit each direction to ``bytes_per_s`` (None: unlimited)."""
        self.bytes_per_s = bytes_per_s if bytes_per_s and bytes_per_s > 0 else None

    def flap(self, n: int, period_s: float, *, wait: bool = True) -> Future[None]:
        """Cut and restore ``n`` times; each cycle is down for half of ``period_s``, then up.

        Args:
            n: number of cycles.
            period_s: length of one cycle.
            wait: block until the last restore (else return at once; the future says when).
        """
        future = asyncio.run_coroutine_threadsafe(self._flap(n, period_s), self._loop)
        if wait:
            future.result(timeout=n * period_s + _CALL_TIMEOUT_S)
        return future

    def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until at least ``count`` connections are open through the proxy.

        Raises:
            TimeoutError: fewer connections after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self.active_connections < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.active_connections} of {count} connections through the proxy after {timeout:g} s"
                )
            time.sleep(0.02)

    # -- inside the loop -----------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=_CALL_TIMEOUT_S)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True, reuse_port=True
            )
            self.port = self._server.sockets[0].getsockname()[1]
        self._release_port()
        self.state = "up"

    def _hold_port(self) -> None:
        # While cut, a bound socket that does not listen keeps the port: connects are refused,
        # and no other socket (an outgoing connection's ephemeral port) can take it, which
        # would make restore() fail with "address already in use".
        if self._placeholder is None:
            holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind((self.host, self.port))
            self._placeholder = holder

    def _release_port(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    async def _cut(self) -> None:
        if self._server is not None:
            self._hold_port()
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.reset()
        self._links.clear()
        assert self._flowing is not None
        self._flowing.set()
        self.state = "cut"

    async def _shutdown(self) -> None:
        await self._cut()
        self._release_port()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _blackhole(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()
        self.state = "blackhole"

    async def _restore(self) -> None:
        await self._listen()
        assert self._flowing is not None
        self._flowing.set()

    async def _flap(self, n: int, period_s: float) -> None:
        for _ in range(n):
            await self._cut()
            await asyncio.sleep(period_s / 2)
            await self._restore()
            await asyncio.sleep(period_s / 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            await self._flowing.wait()  # a blackholed link: the session never starts
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except OSError:
            self.refused += 1
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self.connections_total += 1
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, upstream=True)),
            asyncio.create_task(self._pump(up_reader, writer, link, upstream=False)),
        ]

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        *,
        upstream: bool,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)
        writer = asyncio.create_task(self._deliver(queue, sink, upstream=upstream))
        link.tasks.append(writer)
        try:
            while True:
                data = await source.read(_READ_SIZE)
                if not data:
                    break
                await queue.put((time.monotonic() + self.delay_s, data))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            await queue.put((0.0, b""))  # end of stream: close the other side once delivered

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await self._flowing.wait()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._send(sink, data, upstream=upstream)
        except OSError:
            pass
        finally:
            self._close_link(sink)

    async def _send(self, sink: asyncio.StreamWriter, data: bytes, *, upstream: bool) -> None:
        # A throttled link sends small pieces, each after the time its bytes take on the wire.
        step = max(1, int(self.bytes_per_s / 20)) if self.bytes_per_s else len(data)
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            if self.bytes_per_s:
                await asyncio.sleep(len(piece) / self.bytes_per_s)
            # Counted before the write, so a reader that got the bytes sees them counted.
            if upstream:
                self.bytes_up += len(piece)
            else:
                self.bytes_down += len(piece)
            sink.write(piece)
            await sink.drain()

    def _close_link(self, sink: asyncio.StreamWriter) -> None:
        for link in list(self._links):
            if sink in (link.client, link.upstream):
                self._links.discard(link)
                link.client.transport.close()
                link.upstream.transport.close()
