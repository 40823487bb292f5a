"""The ingest role: a persistent MQTT session whose messages end up in InfluxDB.

QoS 1 with manual acknowledgement: paho's ``manual_ack`` holds back each PUBACK until the
message's points are durable (`DurableWriter`), and the session is persistent (fixed client
id, no clean start, a session expiry), so whatever was not acknowledged when the process
or its connection died is redelivered by the broker. Messages arrive in chunks (all that
the socket holds, `backend.ingest.session`) and each chunk gets one acknowledgement, run
after the batch holding its points is durable. Several processes share the load
through a shared subscription (``$share/<group>/...``) when ``mqtt.shared_group`` is set.
At the same point the ingest publishes each device a delivery receipt for the readings
that are now durable (`backend.ingest.receipts`), so a device forgets a reading only once
it is stored, whatever the broker loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho_mqtt

from backend.config import BackendConfig, mask
from backend.influx import InfluxClient
from backend.ingest.late_data import LateData
from backend.ingest.placement import ClockPlacer
from backend.ingest.points import DeviceDirectory, MessageRejected, message_lines, quarantine_line
from backend.ingest.receipts import ReceiptBook, Sequenced
from backend.ingest.session import ConnectionLost, MqttConnection
from backend.ingest.stats import IngestStats, InvalidInputLog
from backend.ingest.writer import DurabilityError, DurableWriter
from backend.rollups import backfill
from backend.spool import Spool
from protocols import topics

__all__ = ["IngestService"]

log = logging.getLogger("backend.ingest")

_ANCHORS_FILE = "clock-anchors.json"
# A raw policy kept forever: a changed rollup definition recomputes this many days back.
RAW_DAYS_UNBOUNDED = 400
# Messages read from the socket before they are processed: small enough that the batch
# writes (same event loop) are not held up long, large enough to cost nothing per message.
_CHUNK = 250


_FIRST_RETRY_S = 0.5


def retry_delay(previous_s: float | None, session_s: float, max_s: float) -> float:
    """The delay before the next connect (the caller adds +-20 % jitter): the first one,
    or twice the previous up to ``max_s``. It goes back to the first only after a session
    that lasted ``max_s``: a session the broker or a full spool ends at once must not be
    retried twice a second."""
    if previous_s is None or session_s >= max_s:
        return _FIRST_RETRY_S
    return min(previous_s * 2, max_s)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class IngestService:
    """One ingest process.

    Args:
        config: The loaded ``backend.toml``.
        registry: The fleet registry (``device(id)``).
        role: The ``role`` tag of this process's ``backend_stats``.
    """

    def __init__(self, config: BackendConfig, registry: DeviceDirectory, *, role: str = "ingest") -> None:
        self.config = config
        self.registry = registry
        self.role = role
        self.stats = IngestStats()
        self.placer = ClockPlacer(
            refresh_ms=int(config.ingest.anchor_refresh_s * 1000),
            max_skew_ms=int(config.ingest.clock_skew_s * 1000),
        )
        self.invalid_log = InvalidInputLog(config.ingest.invalid_log_interval_s)
        self.connected = asyncio.Event()
        self._last_quarantine_ts: dict[tuple[str, str], int] = {}
        self._writer: DurableWriter | None = None
        self.late_data: LateData | None = None
        self._spool: Spool | None = None
        self.receipts = ReceiptBook(config.mqtt.topic_root)
        self._receipts_due = False
        self._connection: MqttConnection | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until ``stop`` is set; then flush, acknowledge and disconnect."""
        cfg = self.config
        spool = await asyncio.to_thread(cfg.spool.open)
        self._spool = spool
        self._load_anchors()
        influx = cfg.influx.client()
        writer = DurableWriter(
            influx,
            spool,
            self.stats,
            batch_points=cfg.ingest.batch_points,
            batch_ms=cfg.ingest.batch_ms,
            # Flush at half the broker's in-flight window: the other half keeps arriving
            # while this batch is written, instead of the broker stopping until it is.
            max_pending_acks=max(1, cfg.mqtt.receive_maximum // 2),
            idle_ms=cfg.ingest.idle_flush_ms,
            drain_records=cfg.spool.drain_records,
            retention=cfg.retention(),
            precision="ns",  # readings carry their seq in the sub-millisecond digits
        )
        self._writer = writer
        late = self._late_data(influx)
        log.info(
            "event=ingest_start process=%s mqtt=%s client_id=%s mqtt_user=%s mqtt_password=%s "
            "influx=%s database=%s influx_password=%s spool=%s spool_depth=%d",
            cfg.ingest.process_name,
            cfg.mqtt.url,
            cfg.mqtt.client_id,
            cfg.mqtt.username or "",
            mask(cfg.mqtt.password),
            cfg.influx.url,
            cfg.influx.database,
            mask(cfg.influx.password),
            spool.directory,
            spool.depth,
        )
        await writer.connect()
        try:
            async with asyncio.TaskGroup() as group:
                background = [
                    group.create_task(writer.run()),
                    group.create_task(self._stats_loop(writer, spool)),
                ]
                if late is not None:
                    background.append(group.create_task(late.run()))
                session = group.create_task(self._mqtt_loop(writer))
                await stop.wait()
                # Flush while still connected, so the acknowledgements reach the broker.
                with contextlib.suppress(DurabilityError):
                    await writer.flush()
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await session
                for task in background:
                    task.cancel()
        finally:
            with contextlib.suppress(DurabilityError):
                await writer.flush()
            self._save_anchors()
            await influx.aclose()
            await asyncio.to_thread(spool.close)
            log.info("event=ingest_stop %s", _summary(self.stats.fields(spool.depth, spool.depth_bytes)))

    def _late_data(self, influx: InfluxClient) -> LateData | None:
        """Recompute the rollups that late readings fall in (None: switched off).

        This runs whether or not this ingest manages the retention policies and continuous
        queries: on a district server the admin creates them (`tincoso server influx-init`)
        and the ingest still keeps the rollups of replayed readings right.
        """
        if not self.config.ingest.recompute_late:
            return None
        threshold = self.config.sound_threshold_dbfs

        async def recompute(start_ms: int, end_ms: int) -> int:
            return await backfill(influx, start_ms, end_ms, sound_threshold_dbfs=threshold)

        debounce_s = self.config.ingest.late_debounce_s
        late = LateData(recompute, debounce_s=debounce_s, max_wait_s=max(300.0, debounce_s))
        assert self._writer is not None
        self._writer.on_written = late.note
        raw_ms = (self.config.influx.raw_days or RAW_DAYS_UNBOUNDED) * 86_400_000

        def definition_changed(names: list[str]) -> None:
            # The rollups of everything raw still holds were made by the old definition.
            now_ms = _now_ms()
            log.info(
                "event=rollups_redefined queries=%s recompute_days=%d", ",".join(names), raw_ms // 86_400_000
            )
            late.note_range(now_ms - raw_ms, now_ms)

        self._writer.on_rollups_replaced = definition_changed
        self.stats.extra = late.fields
        self.late_data = late
        return late

    # -- MQTT ------------------------------------------------------------------------------

    def filters(self) -> list[str]:
        """The subscription filters (shared when ``mqtt.shared_group`` is set)."""
        m = self.config.mqtt
        plain = topics.subscription_filters(m.topic_root)
        if m.shared_group:
            return [f"$share/{m.shared_group}/{f}" for f in plain]
        return plain

    async def _mqtt_loop(self, writer: DurableWriter) -> None:
        delay: float | None = None
        while True:
            session_start = time.monotonic()
            connection = MqttConnection(
                self.config.mqtt,
                lambda conn, chunk: self.handle_chunk(conn, chunk, writer),
                chunk=_CHUNK,
            )
            self._connection = connection
            error: Exception | None = None
            try:
                await connection.open(self.filters())
                log.info(
                    "event=mqtt_connected url=%s client_id=%s",
                    self.config.mqtt.url,
                    self.config.mqtt.client_id,
                )
                self.connected.set()
                await self._receive_until_failure(connection, writer)
            except (ConnectionLost, DurabilityError) as exc:
                error = exc
            finally:
                self.connected.clear()
                # On shutdown this sends the acknowledgements `run` just flushed, then
                # DISCONNECT; after a failure the connection is gone already.
                await connection.close()
            delay = retry_delay(delay, time.monotonic() - session_start, self.config.mqtt.reconnect_max_s)
            if isinstance(error, DurabilityError):
                log.error(
                    "event=session_dropped reason=not_durable error=%r retry_in_s=%.1f", str(error), delay
                )
            else:
                log.warning("event=mqtt_disconnected error=%r retry_in_s=%.1f", str(error), delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def _receive_until_failure(self, connection: MqttConnection, writer: DurableWriter) -> None:
        closed = asyncio.create_task(connection.wait_closed())
        failed = asyncio.create_task(writer.failed.wait())
        try:
            await asyncio.wait({closed, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (closed, failed):
                task.cancel()
            await asyncio.gather(closed, failed, return_exceptions=True)
        if failed.done() and not failed.cancelled():
            writer.failed.clear()
            raise DurabilityError("a batch could be neither written nor spooled")
        closed.result()  # why the broker connection ended
        raise ConnectionLost("the broker ended the connection")

    def handle_chunk(
        self, connection: MqttConnection, messages: list[paho_mqtt.MQTTMessage], writer: DurableWriter
    ) -> None:
        """Turn received messages into points queued with one acknowledgement for them all.

        The acknowledgement runs only once the writer has made every one of those points
        durable (`DurableWriter.flush`); until then the broker holds the messages.
        """
        received_ms = _now_ms()
        lines: list[str] = []
        mids: list[int] = []
        stored: list[Sequenced] | None = [] if self.config.ingest.receipts else None
        rejected: list[Sequenced] = []
        for message in messages:
            lines += self.handle(message, received_ms, stored, rejected)
            if message.qos > 0:
                mids.append(message.mid)
        if stored is None:
            writer.add(lines, partial(connection.ack, mids), messages=len(messages))
        else:
            writer.add(
                lines, partial(self._durable, connection, mids, stored, rejected), messages=len(messages)
            )

    def _durable(
        self, connection: MqttConnection, mids: list[int], stored: list[Sequenced], rejected: list[Sequenced]
    ) -> None:
        """A chunk is durable: acknowledge it, and receipt its readings once the whole
        flush is acknowledged (one receipt per device and boot per flush)."""
        connection.ack(mids)
        self.receipts.add(stored, rejected)
        if not self._receipts_due:
            self._receipts_due = True
            asyncio.get_running_loop().call_soon(self._send_receipts)

    def _send_receipts(self) -> None:
        self._receipts_due = False
        connection = self._connection
        due = self.receipts.take(_now_ms())
        if connection is None or not connection.is_open:
            return  # the devices send these readings again, and get the receipt then
        for topic, data in due:
            connection.publish(topic, data)

    def handle(
        self,
        message: paho_mqtt.MQTTMessage,
        received_ms: int,
        stored: list[Sequenced] | None = None,
        rejected: list[Sequenced] | None = None,
    ) -> list[str]:
        """The points of one received message (or its quarantine point).

        With ``stored`` and ``rejected`` given, the readings the message holds are
        appended to one of them (for receipts); after an internal error to neither.
        """
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", errors="replace")  # quarantined below
        payload = message.payload if isinstance(message.payload, bytes) else bytes(message.payload)
        self.stats.messages_in += 1
        held: list[Sequenced] | None = [] if stored is not None else None
        try:
            lines = message_lines(
                topic,
                payload,
                received_ms,
                registry=self.registry,
                placer=self.placer,
                root=self.config.mqtt.topic_root,
                live=not message.retain,
                sequenced=held,
            )
            if stored is not None and held:
                stored += held
        except MessageRejected as refused:
            if rejected is not None:
                rejected += refused.sequenced
            lines = [self._quarantine(refused, topic, payload, received_ms)]
        except Exception as exc:  # a bug must cost one message, never the session
            log.exception("event=ingest_internal_error topic=%r", topic[:200])
            internal = MessageRejected("internal_error", "-", repr(exc))
            lines = [self._quarantine(internal, topic, payload, received_ms)]
        self.stats.points_in += len(lines)
        return lines

    def _quarantine(self, rejected: MessageRejected, topic: str, payload: bytes, received_ms: int) -> str:
        self.stats.record_invalid(rejected.device, rejected.reason)
        self.invalid_log.report(rejected.device, rejected.reason, rejected.detail, topic)
        # A storm arrives within one millisecond; distinct timestamps keep every point.
        key = (rejected.device, rejected.reason)
        ts = max(received_ms, self._last_quarantine_ts.get(key, 0) + 1)
        if len(self._last_quarantine_ts) > 100_000:
            self._last_quarantine_ts.clear()
        self._last_quarantine_ts[key] = ts
        return quarantine_line(rejected, topic, payload, ts, self.config.ingest.quarantine_payload_bytes)

    # -- self-telemetry and state ----------------------------------------------------------

    async def _stats_loop(self, writer: DurableWriter, spool: Spool) -> None:
        while True:
            await asyncio.sleep(self.config.ingest.stats_interval_s)
            point = self.stats.line(
                self.config.ingest.process_name, self.role, _now_ms(), spool.depth, spool.depth_bytes
            )
            writer.add([point])
            self._save_anchors()

    def _load_anchors(self) -> None:
        assert self._spool is not None
        path = self._spool.directory / _ANCHORS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("event=clock_anchors_unreadable path=%s error=%r", path, str(exc))
            return
        if isinstance(data, dict):
            self.placer.restore(data)

    def _save_anchors(self) -> None:
        if self._spool is None:
            return
        path: Path = self._spool.directory / _ANCHORS_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.placer.export()), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            log.warning("event=clock_anchors_not_saved path=%s error=%r", path, str(exc))

    def spool_depth(self) -> int:
        """Records waiting in the spool (0 before the spool is open)."""
        return self._spool.depth if self._spool is not None else 0

    @property
    def writer(self) -> DurableWriter | None:
        """The writer while running (tests read its state)."""
        return self._writer


def _summary(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
