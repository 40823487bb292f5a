"""The MQTT session: persistent, QoS 1, birth/death with ``bdseq``, replay from the queue.

One connection at a time, client id = device id, ``clean_session=False`` (MQTT 3.1.1)
so commands sent while the device was offline wait at the broker. On every connect the
session bumps ``bdseq``, sets a retained Last Will ``death`` with it, publishes a
retained ``birth`` and then drains the durable queue: a window of at most ``inflight``
publishes, in order. With delivery receipts (the default) a PUBACK only marks messages
sent; they leave the queue when the backend's receipt on ``<device>/receipt`` says they are
durable, and are sent again after a reconnect or ``receipt_timeout_s`` without one.
Without receipts each is deleted after its PUBACK. A lost connection is retried with
exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from aiomqtt.client import ProtocolVersion

from agent.config import AgentConfig, mqtt_password
from agent.core.reporter import Reporter
from agent.queue import DurableQueue, QueuedMessage
from protocols import payloads
from protocols.errors import InvalidPayload

log = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff with full jitter: ``uniform(min, min(max, min * 2**n))``.

    Args:
        min_s: first delay.
        max_s: ceiling.
        rng: source of randomness (injectable for tests).
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.max_s, self.min_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self._rng.uniform(self.min_s, max(self.min_s, ceiling))

    def reset(self) -> None:
        """A connection succeeded."""
        self.attempt = 0


class Session:
    """Keeps the device connected and its queue drained.

    Args:
        config: the agent configuration.
        queue: the durable queue to drain.
        reporter: the reporting loop's decisions (``agent/core/reporter.py``, shared with
            the MicroPython agent): publishes, receipts, what to keep.
        birth_fields: returns the ``birth`` fields for a ``bdseq``.
        stamp: returns ``(ts_ms, clock_ok, mono_ms)``.
        build: builds a sequenced message: ``build(kind, fields, seq)``.
        on_command: called with the raw payload of every message on the command topic.
    """

    def __init__(
        self,
        config: AgentConfig,
        queue: DurableQueue,
        reporter: Reporter,
        birth_fields: Callable[[int], dict[str, Any]],
        stamp: Callable[[], tuple[int, bool, int]],
        build: Callable[[str, dict[str, Any], int], dict[str, Any]],
        on_command: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.config = config
        self.queue = queue
        self.reporter = reporter
        self._birth_fields = birth_fields
        self._stamp = stamp
        self._build = build
        self._on_command = on_command
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._drained = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.bdseq = 0
        self.connected = asyncio.Event()
        self.connects = 0
        self.state_topic = reporter.state_topic
        self.command_topic = reporter.command_topic
        self.receipt_topic = reporter.receipt_topic

    @property
    def receipts_received(self) -> int:
        """Valid receipts received."""
        return self.reporter.receipts_received

    @property
    def receipts_invalid(self) -> int:
        """Invalid receipts ignored."""
        return self.reporter.receipts_invalid

    def notify(self) -> None:
        """Something was queued: send it now."""
        self._drained.clear()
        self._wakeup.set()

    async def wait_drained(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every queued message is sent (acknowledged by the
        broker; with receipts some may still wait for theirs); True if it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._drained.wait()
        return (self.queue.unsent if self.config.receipts else self.queue.depth) == 0

    async def run(self) -> None:
        """Connect, drain, reconnect, until ``stop()``."""
        backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        while not self._stopping.is_set():
            try:
                await self._one_session(backoff)
            except aiomqtt.MqttError as exc:
                c = self.config
                log.warning("MQTT session to %s:%d ended: %s", c.mqtt_host, c.mqtt_port, exc)
            except Exception:  # never stop reconnecting: the device is unreachable otherwise
                log.exception("MQTT session failed")
            finally:
                self.connected.clear()
                self._client = None
            if self._stopping.is_set():
                break
            delay = backoff.next()
            log.info("reconnecting in %.1f s (attempt %d)", delay, backoff.attempt)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def stop(self, flush_s: float = 3.0) -> None:
        """Flush what can be flushed in ``flush_s``, publish a clean death, disconnect."""
        client = self._client
        if client is not None and self.connected.is_set():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + flush_s
            await self.wait_drained(flush_s)
            # With receipts, give the last readings' receipts the rest of the flush time: what
            # is still unreceipted then stays queued and goes again at the next start.
            while self.config.receipts and self.queue.depth and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            ts, ok, _mono = self._stamp()
            death = self.reporter.will(ts, ok, self.bdseq, "clean")
            try:
                await client.publish(self.state_topic, death, qos=1, retain=True, timeout=2.0)
            except aiomqtt.MqttError as exc:
                log.warning("could not publish clean death: %s", exc)
        self._stopping.set()

    def drop(self) -> bool:
        """Disconnect the current connection cleanly (no Last Will); the session reconnects.

        Used by the ``reconnect`` command (a vendor's acceptance test). Returns False when
        there is no live connection to drop.
        """
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        # aiomqtt has no public "disconnect but keep the session"; paho's DISCONNECT ends
        # the message iteration with an MqttError exactly as a lost link does.
        client._client.disconnect()
        return True

    def _make_client(self) -> aiomqtt.Client:
        c = self.config
        ts, ok, _mono = self._stamp()
        will = aiomqtt.Will(
            self.state_topic,
            self.reporter.will(ts, ok, self.bdseq),
            qos=1,
            retain=True,
        )
        tls_context = None
        if c.mqtt_tls or c.mqtt_cafile:
            tls_context = ssl.create_default_context(cafile=c.mqtt_cafile)
            if c.mqtt_certfile and c.mqtt_keyfile:
                tls_context.load_cert_chain(c.mqtt_certfile, c.mqtt_keyfile)
        return aiomqtt.Client(
            c.mqtt_host,
            c.mqtt_port,
            username=c.mqtt_username,
            password=mqtt_password(c),
            identifier=c.device_id,
            protocol=ProtocolVersion.V311,
            clean_session=False,
            will=will,
            keepalive=c.mqtt_keepalive_s,
            timeout=c.publish_timeout_s,
            tls_context=tls_context,
            max_inflight_messages=max(20, c.inflight * 2),
        )

    async def _one_session(self, backoff: Backoff) -> None:
        self.bdseq = self.queue.next_bdseq()
        client = self._make_client()
        async with client:
            self._client = client
            self.connects += 1
            backoff.reset()
            c = self.config
            log.info("connected to %s:%d (bdseq %d)", c.mqtt_host, c.mqtt_port, self.bdseq)
            await client.subscribe(self.command_topic, qos=1)
            if c.receipts:
                await client.subscribe(self.receipt_topic, qos=1)
            self.reporter.connected()  # with receipts: what the last connection sent may be lost
            birth_seq = self.queue.take_seq()
            birth = self._build("birth", self._birth_fields(self.bdseq), birth_seq)
            log.info("birth seq %d (bdseq %d)", birth_seq, self.bdseq)  # a seq the backend does not store
            await client.publish(self.state_topic, payloads.encode(birth), qos=1, retain=True)
            self.connected.set()
            tasks = [
                asyncio.ensure_future(self._send_loop(client)),
                asyncio.ensure_future(self._receive_loop(client)),
                asyncio.ensure_future(self._stopping.wait()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            if message.topic.value == self.receipt_topic:
                self._on_receipt(data)
                continue
            try:
                await self._on_command(data)
            except Exception:  # a handler bug must not end the session
                log.exception("command handler failed")

    def _on_receipt(self, data: bytes) -> None:
        try:
            self.reporter.on_receipt(data)
        except InvalidPayload as exc:
            log.warning("ignored an invalid receipt: %s", exc)

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        c = self.config
        window = c.inflight
        while True:
            self._wakeup.clear()
            limit = window * c.batch_max_items
            if c.receipts:
                rows = self.queue.peek_due(limit, time.monotonic(), c.receipt_timeout_s)
            else:
                rows = self.queue.peek(limit)
            if not rows:
                self._drained.set()  # nothing left to send (receipts may still be due)
                # With receipts pending, look again for messages whose receipt is overdue.
                wait = c.receipt_timeout_s / 4 if c.receipts and self.queue.depth else None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wakeup.wait()
                continue
            await self._send_window(client, rows, window)

    async def _send_window(self, client: aiomqtt.Client, rows: list[QueuedMessage], window: int) -> None:
        publishes = self.reporter.publications(
            [(row.id, row.topic, row.kind, row.payload) for row in rows], self.queue.depth, window
        )
        # Start every publish of the window now (paho sends them in this order), then
        # collect the PUBACKs in the same order: the acknowledged prefix is kept in flight
        # (or deleted, without receipts) even when the connection drops halfway, and the
        # rest is resent in order.
        pending = [asyncio.ensure_future(self._publish(client, topic, data)) for _, topic, data in publishes]
        acked: list[int] = []
        try:
            for (keys, _, _), fut in zip(publishes, pending, strict=True):
                await fut
                acked.extend(keys)
        finally:
            for fut in pending:
                if not fut.done():
                    fut.cancel()
            self.reporter.published(acked, time.monotonic())

    async def _publish(self, client: aiomqtt.Client, topic: str | None, data: bytes | None) -> None:
        if topic is not None and data is not None:
            await client.publish(topic, data, qos=1)
