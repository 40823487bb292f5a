"""The MQTT session: persistent, QoS 1, birth/death with ``bdseq``, replay from the queue.

One connection at a time, client id = device id, ``clean_session=False`` (MQTT 3.1.1)
so commands sent while the device was offline wait at the broker. On every connect the
session bumps ``bdseq``, sets a retained Last Will ``death`` with it, publishes a
retained ``birth`` and then drains the durable queue: a window of at most ``inflight``
publishes, each deleted from the queue only after its PUBACK, in order. A lost
connection is retried with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from aiomqtt.client import ProtocolVersion

from agent.config import AgentConfig, mqtt_password
from agent.core.backlog import batch_payload, plan_sends
from agent.queue import DurableQueue, QueuedMessage
from protocols import payloads, topics

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
        birth_fields: returns the ``birth`` fields (``device_kind``, ``heartbeat_s``, ...).
        stamp: returns ``(ts_ms, clock_ok, mono_ms)``.
        build: builds a sequenced message: ``build(kind, fields, seq)``.
        on_command: called with the raw payload of every message on the command topic.
    """

    def __init__(
        self,
        config: AgentConfig,
        queue: DurableQueue,
        birth_fields: Callable[[], dict[str, Any]],
        stamp: Callable[[], tuple[int, bool, int]],
        build: Callable[[str, dict[str, Any], int], dict[str, Any]],
        on_command: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.config = config
        self.queue = queue
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
        root = config.topic_root
        self.state_topic = topics.state_topic(config.device_id, root)
        self.command_topic = topics.command_topic(config.device_id, root)
        self.batch_topic = topics.batch_topic(config.device_id, root)

    def notify(self) -> None:
        """Something was queued: send it now."""
        self._drained.clear()
        self._wakeup.set()

    async def wait_drained(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until the queue is empty; True if it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), timeout=timeout_s)
        return self.queue.depth == 0

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
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def stop(self, flush_s: float = 3.0) -> None:
        """Flush what can be flushed in ``flush_s``, publish a clean death, disconnect."""
        client = self._client
        if client is not None and self.connected.is_set():
            await self.wait_drained(flush_s)
            ts, ok, _mono = self._stamp()
            death = payloads.encode(payloads.death(self.config.device_id, ts, ok, self.bdseq, "clean"))
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
            payloads.encode(payloads.death(c.device_id, ts, ok, self.bdseq, "lwt")),
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
            birth = self._build("birth", {**self._birth_fields(), "bdseq": self.bdseq}, self.queue.take_seq())
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
            try:
                await self._on_command(data)
            except Exception:  # a handler bug must not end the session
                log.exception("command handler failed")

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        window = self.config.inflight
        while True:
            self._wakeup.clear()
            rows = self.queue.peek(window * self.config.batch_max_items)
            if not rows:
                self._drained.set()
                await self._wakeup.wait()
                continue
            await self._send_window(client, rows, window)

    async def _send_window(self, client: aiomqtt.Client, rows: list[QueuedMessage], window: int) -> None:
        c = self.config
        by_id = {row.id: row for row in rows}
        groups = plan_sends(
            [(row.id, row.kind, len(row.payload)) for row in rows],
            self.queue.depth,
            c.batch_threshold,
            c.batch_max_items,
            c.batch_max_bytes,
        )[:window]
        # Start every publish of the window now (paho sends them in this order), then
        # collect the PUBACKs in the same order: the acknowledged prefix is deleted even
        # when the connection drops halfway, and the rest is resent in order.
        pending = [asyncio.ensure_future(self._publish_group(client, [by_id[i] for i in g])) for g in groups]
        acked: list[int] = []
        try:
            for group, fut in zip(groups, pending, strict=True):
                await fut
                acked.extend(group)
        finally:
            for fut in pending:
                if not fut.done():
                    fut.cancel()
            self.queue.ack(acked)

    async def _publish_group(self, client: aiomqtt.Client, group: list[QueuedMessage]) -> None:
        if len(group) == 1:
            await client.publish(group[0].topic, group[0].payload, qos=1)
            return
        data = batch_payload(self.config.device_id, [m.payload for m in group])
        await client.publish(self.batch_topic, data, qos=1)
