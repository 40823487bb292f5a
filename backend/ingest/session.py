"""One connection of the ingest's persistent MQTT session, read in chunks by the asyncio loop.

paho-mqtt does the protocol; the event loop watches its socket, as aiomqtt does, but each
time the socket is readable every PUBLISH already in it is read (up to ``chunk``) and the
whole chunk is handed to ``deliver`` in one call, instead of one loop callback, one queue
item and one task wake-up per message. There is no network thread: reading, decoding and
acknowledging run in the loop's thread, so they never wait on each other for the GIL.

Acknowledgements are manual (paho's ``manual_ack``): `MqttConnection.ack` is the only
place a PUBACK is sent, and the ingest calls it only once a message's points are durable
(`backend.ingest.writer.DurableWriter`). Packet ids belong to one connection: after the
connection is lost they mean nothing (the broker redelivers every unacknowledged message
on the next one, where its id may be another message's), so `ack` drops them. A
connection object is never reconnected; a new one is made instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from backend.config import MqttSettings

__all__ = ["ConnectionLost", "Deliver", "MqttConnection"]

log = logging.getLogger("backend.ingest")

Deliver = Callable[["MqttConnection", list[paho.MQTTMessage]], None]
"""Receives each chunk of PUBLISH packets, in arrival order, in the loop's thread."""

_KEEPALIVE_TICK_S = 1.0


class ConnectionLost(Exception):
    """The connection could not be made, or it ended."""


class MqttConnection:
    """One broker connection with manual QoS 1 acknowledgement.

    Args:
        settings: The ``[mqtt]`` section (URL, credentials, TLS, protocol, session).
        deliver: Called with every chunk of received messages.
        chunk: Most messages read per readable event (the rest wait for the next one).
    """

    def __init__(self, settings: MqttSettings, deliver: Deliver, *, chunk: int = 1000) -> None:
        self.settings = settings
        self._deliver = deliver
        self._chunk = max(1, chunk)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._inbox: list[paho.MQTTMessage] = []
        self._open = False
        self._fd = -1
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._suback: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._closed: asyncio.Future[str] = self._loop.create_future()
        self._keepalive: asyncio.Task[None] | None = None
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        m = self.settings
        v5 = m.protocol == 5
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=m.client_id,
            # MQTT 5: no clean start (below); 3.1.1: clean_session=False.
            clean_session=None if v5 else False,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if m.username is not None or m.password is not None:
            client.username_pw_set(m.username, m.password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    # -- public ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True from the CONNACK until the connection ends."""
        return self._open

    async def open(self, filters: list[str], answer_s: float = 10.0) -> None:
        """Connect (CONNACK), then subscribe to ``filters`` at QoS 1 (SUBACK).

        Raises:
            ConnectionLost: refused, unreachable, or no answer within ``answer_s`` seconds.
        """
        m = self.settings
        properties = None
        if m.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = m.session_expiry_s
            properties.ReceiveMaximum = m.receive_maximum
        clean_start: bool | Literal[3] = False if m.protocol == 5 else paho.MQTT_CLEAN_START_FIRST_ONLY
        try:
            if m.tls:  # reads the certificate files: a missing one is retried like the broker
                self._client.tls_set(ca_certs=m.tls_ca, certfile=m.tls_cert, keyfile=m.tls_key)
            # Name lookup, TCP and TLS handshakes block: not in the loop's thread.
            await asyncio.to_thread(
                self._client.connect,
                m.host,
                m.port,
                keepalive=m.keepalive_s,
                clean_start=clean_start,
                properties=properties,
            )
            async with asyncio.timeout(answer_s):
                await asyncio.shield(self._connack)
            # The broker may send a stored session's messages from here on, before the SUBACK.
            log.info("event=mqtt_connack client_id=%s", m.client_id)
            result, _mid = self._client.subscribe([(f, 1) for f in filters])
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise ConnectionLost(f"subscribe failed: {paho.error_string(result)}")
            async with asyncio.timeout(answer_s):
                codes = await asyncio.shield(self._suback)
        except (OSError, ValueError, paho.WebsocketConnectionError) as exc:
            self.abort()
            raise ConnectionLost(str(exc)) from exc
        except TimeoutError as exc:
            self.abort()
            raise ConnectionLost(f"no answer from the broker within {answer_s:.0f} s") from exc
        except ConnectionLost:
            self.abort()
            raise
        for topic_filter, code in zip(filters, codes, strict=False):
            if code.is_failure:
                log.error("event=mqtt_subscribe_refused filter=%r reason=%r", topic_filter, str(code))

    async def wait_closed(self) -> None:
        """Return when the connection has ended.

        Raises:
            ConnectionLost: why it ended, unless `close` ended it.
        """
        await asyncio.shield(self._closed)

    def ack(self, mids: list[int]) -> None:
        """Send the PUBACK of each QoS 1 message id, in order; nothing once the connection
        has ended (the broker sends those messages again on the next one)."""
        if not self._open:
            return
        for mid in mids:
            self._client.ack(mid, 1)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 (delivery receipts); nothing once the connection has ended."""
        if self._open:
            self._client.publish(topic, payload, qos=1)

    async def close(self, grace_s: float = 5.0) -> None:
        """Send what is queued (acknowledgements first), then DISCONNECT; the broker keeps
        the session. Ends the connection without DISCONNECT after ``grace_s`` seconds."""
        if self._fd >= 0:  # read no more: what the broker sends meanwhile it sends again
            self._loop.remove_reader(self._fd)
        if self._open:
            self._client.disconnect()
            with contextlib.suppress(TimeoutError, ConnectionLost):
                async with asyncio.timeout(grace_s):
                    await asyncio.shield(self._closed)
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once (no DISCONNECT) and release the socket."""
        self._open = False
        self._unwatch()
        with contextlib.suppress(Exception):
            self._client._sock_close()  # paho has no public "close, no DISCONNECT"
        self._settle(ConnectionLost("closed"))

    # -- paho callbacks (loop thread, except during `connect`) -----------------------------

    def _on_connect(
        self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Properties | None
    ) -> None:
        if self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(ConnectionLost(f"broker refused the connection: {reason}"))
            return
        self._open = True
        self._connack.set_result(None)

    def _on_subscribe(
        self, _c: paho.Client, _u: Any, _mid: int, codes: list[ReasonCode], _props: Properties | None
    ) -> None:
        if not self._suback.done():
            self._suback.set_result(codes)

    def _on_disconnect(
        self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Properties | None
    ) -> None:
        was_open, self._open = self._open, False
        if was_open and not reason.is_failure and not self._closed.done():
            self._closed.set_result(str(reason))  # our own DISCONNECT went out
        self._settle(ConnectionLost(f"connection lost: {reason}"))

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        self._inbox.append(message)

    # -- socket watching -------------------------------------------------------------------

    def _in_loop(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn`` in the loop's thread (paho calls back from `connect`'s thread too)."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._watch, sock.fileno())

    def _watch(self, fd: int) -> None:
        if self._closed.done():  # `abort` ran while `connect` was still in its thread
            with contextlib.suppress(Exception):
                self._client._sock_close()
            return
        self._fd = fd
        self._loop.add_reader(fd, self._readable)
        self._keepalive = self._loop.create_task(self._keepalive_loop())

    def _unwatch(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = -1
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    def _on_socket_close(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        self._in_loop(self._unwatch)

    def _on_socket_register_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._watch_write, sock.fileno())

    def _watch_write(self, fd: int) -> None:
        if not self._closed.done() and fd >= 0:
            self._loop.add_writer(fd, self._writable)

    def _on_socket_unregister_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._in_loop(self._unwatch_write, sock.fileno())

    def _unwatch_write(self, fd: int) -> None:
        if fd >= 0:
            self._loop.remove_writer(fd)

    def _readable(self) -> None:
        """Read every complete packet waiting (at most ``chunk`` messages), then deliver."""
        client, inbox = self._client, self._inbox
        try:
            for _ in range(self._chunk):
                before = len(inbox)
                if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
                # paho reads one packet a call; stop at the first call that brought no
                # message (the socket is drained, or it was a PINGRESP: we come back).
                if len(inbox) == before and not _tls_pending(client):
                    break
        except Exception as exc:  # a broken socket: paho does not always notice by itself
            self._fail(exc)
        if inbox:
            self._inbox = []
            self._deliver(self, inbox)

    def _writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception as exc:
            self._fail(exc)

    async def _keepalive_loop(self) -> None:
        """PINGREQ when idle; paho closes the connection when the broker stops answering."""
        while True:
            if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(_KEEPALIVE_TICK_S)

    def _fail(self, exc: BaseException) -> None:
        self._settle(ConnectionLost(f"connection lost: {exc!r}"))
        self.abort()

    def _settle(self, error: ConnectionLost) -> None:
        """Fail whatever still waits (CONNACK, SUBACK, the end) with ``error``."""
        self._open = False
        for waiting in (self._connack, self._suback, self._closed):
            if not waiting.done():
                waiting.set_exception(error)
                waiting.exception()  # marked retrieved: nobody may be waiting


def _tls_pending(client: paho.Client) -> bool:
    """Decrypted bytes an SSL socket holds that ``select`` cannot see (paho issue #131)."""
    sock = client.socket()
    pending = getattr(sock, "pending", None)
    return bool(pending is not None and pending() > 0)
