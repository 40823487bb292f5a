"""The monitor process: one normal MQTT subscription to every device topic, in order.

`Monitor.handle` takes one MQTT message (topic, payload, retained) through fleet state,
gap detection and the rules; `Monitor.tick` runs the timers. Both are synchronous and use
the injected clock, so tests can drive them directly; `run_monitor` wires them to the
broker, InfluxDB and the alert channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.alerts.channels import Channel
from backend.alerts.channels.smtp import SmtpChannel
from backend.alerts.channels.telegram import TelegramChannel
from backend.alerts.channels.webhook import WebhookChannel
from backend.alerts.dispatcher import Dispatcher
from backend.alerts.manager import AlertManager
from backend.alerts.model import AlertStore
from backend.config import BackendConfig, MqttSettings
from backend.influx import InfluxClient
from backend.kpi.website_probe import run_website_probes
from backend.maintenance import FILE_NAME as MAINTENANCE_FILE
from backend.maintenance import MaintenanceStore
from backend.monitor.clock import Clock, SystemClock
from backend.monitor.config import AlertSettings, MonitorConfig
from backend.monitor.gaps import GapDetector
from backend.monitor.points import PointWriter
from backend.monitor.rules import RuleEngine
from backend.monitor.state import FleetState, StateChange
from backend.registry import Registry
from protocols import payloads, topics
from protocols.errors import ProtocolError

__all__ = ["OPEN_ALERTS_FILE", "Monitor", "build_channels", "run_monitor"]

log = logging.getLogger(__name__)

OPEN_ALERTS_FILE = "open_alerts.json"


def build_channels(settings: AlertSettings) -> dict[str, Channel]:
    """The channels the ``[alerts]`` settings turn on."""
    channels: dict[str, Channel] = {"webhook": WebhookChannel(timeout=settings.webhook_timeout_s)}
    if settings.smtp_host:
        channels["email"] = SmtpChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.send_timeout_s,
        )
    if settings.telegram_token:
        channels["telegram"] = TelegramChannel(
            settings.telegram_token, base_url=settings.telegram_base_url, timeout=settings.webhook_timeout_s
        )
    return channels


class Monitor:
    """Fleet state, gaps, rules and alerts for one district.

    Args:
        config: Monitor settings.
        registry: The fleet registry.
        influx: Where state, gaps and alerts are written (None: nowhere).
        clock: Source of "now" (the system clock by default).
        channels: Alert channels (default: from ``config.alerts``).
    """

    def __init__(
        self,
        config: MonitorConfig,
        registry: Registry,
        influx: InfluxClient | None,
        *,
        clock: Clock | None = None,
        channels: dict[str, Channel] | None = None,
    ) -> None:
        settings = config.monitor
        self.config = config
        self.registry = registry
        self.clock = clock or SystemClock()
        self.counts: Counter[str] = Counter()
        self.fleet = FleetState(
            self.clock,
            missed_heartbeats=settings.missed_heartbeats,
            default_heartbeat_s=settings.default_heartbeat_s,
        )
        self.gaps = GapDetector(settings.gap_grace_s)
        self.rules = RuleEngine(registry, config.rules, self.clock)
        self.influx = influx
        self.points = PointWriter(influx, max_points=settings.buffer_points)
        state_dir = Path(settings.state_dir)
        self.store = AlertStore(state_dir / OPEN_ALERTS_FILE)
        self.store.load()
        for alert in self.store.open.values():
            self.rules.restore(alert.device, alert.fault, alert.since)
        alerts = config.alerts
        self.dispatcher = Dispatcher(
            channels if channels is not None else build_channels(alerts),
            attempts=alerts.attempts,
            backoff_s=alerts.backoff_s,
            backoff_max_s=alerts.backoff_max_s,
            send_timeout_s=alerts.send_timeout_s,
            workers=alerts.workers,
        )
        self.alerts = AlertManager(
            registry,
            self.store,
            self.dispatcher,
            self.clock,
            maintenance=MaintenanceStore(state_dir / MAINTENANCE_FILE),
            remind_s=alerts.remind_s or None,
            points=self.points.add,
        )

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Take one MQTT message through state, gaps and rules; bad input is counted, not raised."""
        self.counts["messages_in"] += 1
        try:
            device, channel, _ = topics.parse_topic(topic, self.config.mqtt.topic_root)
            msg = payloads.decode(payload)
            if msg["device"] != device:
                raise ProtocolError(f"payload device {msg['device']!r} differs from topic device {device!r}")
        except ProtocolError as exc:
            self.counts["invalid"] += 1
            log.warning("ignored message on %s: %s", topic[:200], exc)
            return
        if channel == "cmd":
            return
        if self.registry.device(device) is None:
            self.counts["unregistered"] += 1
        if msg["kind"] == "batch":
            for item in msg["items"]:
                self._take(item, live=False, retained=False)
        else:
            self._take(msg, live=True, retained=retained)
        self._evaluate(self.fleet.get(device).device)

    def tick(self) -> None:
        """Run the timers: heartbeat timeouts, gap expiry, ``for`` delays, reminders."""
        now = self.clock.now()
        for change in self.fleet.check_timeouts():
            self._state_point(change)
        for gap in self.gaps.expire(now):
            self.fleet.get(gap.device).record_gap(now, gap.missing)
            fields: dict[str, str | int] = {
                "boot_id": gap.boot_id,
                "from_seq": gap.from_seq,
                "to_seq": gap.to_seq,
                "missing": gap.missing,
            }
            self.points.add("data_gap", self.registry.tags(gap.device), fields, gap.opened_at)
        for device in list(self.fleet.devices):
            self._evaluate(device)
        self.alerts.tick()

    def stats_point(self) -> None:
        """Write the monitor's counters as a ``backend_stats`` point."""
        fields: dict[str, int] = {
            **self.counts,
            "devices": len(self.fleet.devices),
            "open_alerts": len(self.store.open),
            "points_written": self.points.written,
            "points_dropped": self.points.dropped,
            **{f"deliveries_{k}": v for k, v in self.dispatcher.counts.items()},
        }
        tags = {"process": self.config.monitor.client_id, "role": "monitor"}
        self.points.add("backend_stats", tags, dict(fields), self.clock.now())

    def _take(self, msg: dict[str, Any], *, live: bool, retained: bool) -> None:
        if "seq" in msg and not retained:
            self.gaps.observe(msg["device"], msg["boot_id"], msg["seq"], self.clock.now())
        for change in self.fleet.apply(msg, live=live, retained=retained):
            self._state_point(change)

    def _evaluate(self, device: str) -> None:
        for transition in self.rules.evaluate(self.fleet.get(device)):
            self.alerts.handle(transition)

    def _state_point(self, change: StateChange) -> None:
        tags = self.registry.tags(change.device)
        self.points.add(
            "state",
            tags,
            {"online": change.online, "bdseq": change.bdseq, "reason": change.reason},
            change.at,
        )
        if change.online and change.down_since is not None:
            fields = {
                "start_ms": int(change.down_since * 1000),
                "end_ms": int(change.at * 1000),
                "duration_s": round(change.at - change.down_since, 3),
            }
            self.points.add("down_interval", tags, fields, change.down_since)

    async def run(self, stop: asyncio.Event, *, shutdown_grace_s: float = 3.0) -> None:
        """Subscribe and process until ``stop`` is set; reconnects with backoff.

        On the way out, deliveries already under way get ``shutdown_grace_s`` to finish,
        then the last points are flushed and open alerts saved.
        """
        self.dispatcher.start()
        points_stop = asyncio.Event()
        points = asyncio.create_task(self.points.run(points_stop), name="monitor-points")
        workers: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._ticker(), name="monitor-ticker"),
            asyncio.create_task(self._subscribe_forever(), name="monitor-mqtt"),
            asyncio.create_task(self._device_info_forever(), name="monitor-device-info"),
        ]
        if self.influx is not None and self.config.monitor.website_check_s > 0:
            probes = run_website_probes(self.registry, self.influx, self.config.monitor.website_check_s, stop)
            workers.append(asyncio.create_task(probes, name="monitor-websites"))
        try:
            await stop.wait()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(shutdown_grace_s):
                    await self.dispatcher.wait_in_flight()
            await self.dispatcher.aclose()
            self.store.save()
            points_stop.set()
            await points

    def device_info_points(self) -> int:
        """Queue a ``device_info`` point (registry coordinates) per device that has them."""
        now = self.clock.now()
        written = 0
        for device in self.registry.devices.values():
            if device.lat is None or device.lon is None:
                continue
            self.points.add(
                "device_info", self.registry.tags(device.id), {"lat": device.lat, "lon": device.lon}, now
            )
            written += 1
        return written

    async def _device_info_forever(self) -> None:
        while True:
            self.device_info_points()
            await asyncio.sleep(self.config.monitor.device_info_s)

    async def _ticker(self) -> None:
        last_stats = self.clock.now()
        while True:
            await asyncio.sleep(self.config.monitor.tick_s)
            try:
                self.tick()
                if self.clock.now() - last_stats >= self.config.monitor.stats_interval_s:
                    last_stats = self.clock.now()
                    self.stats_point()
            except Exception:  # one bad tick must not stop the monitor
                log.exception("monitor tick failed")

    async def _subscribe_forever(self) -> None:
        settings = self.config.mqtt
        delay = 0.5
        while True:
            try:
                async with _client(settings, self.config.monitor.client_id) as client:
                    await client.subscribe([(f, 1) for f in topics.subscription_filters(settings.topic_root)])
                    log.info("monitor subscribed to %s as %s", settings.url, self.config.monitor.client_id)
                    delay = 0.5
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
                        self.handle(message.topic.value, bytes(data), retained=bool(message.retain))
            except aiomqtt.MqttError as exc:
                log.warning("monitor lost the broker at %s: %s; retrying in %.1f s", settings.url, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.reconnect_max_s)


def _client(settings: MqttSettings, client_id: str) -> aiomqtt.Client:
    tls_context = None
    if settings.tls:
        tls_context = ssl.create_default_context(cafile=settings.tls_ca)
        if settings.tls_cert:
            tls_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.protocol == 5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = settings.session_expiry_s
        return aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            keepalive=settings.keepalive_s,
            tls_context=tls_context,
        )
    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=False,
        keepalive=settings.keepalive_s,
        tls_context=tls_context,
    )


async def run_monitor(
    config: MonitorConfig | BackendConfig,
    registry: Registry,
    influx: InfluxClient | None,
    stop_event: asyncio.Event,
    *,
    clock: Clock | None = None,
    channels: dict[str, Channel] | None = None,
) -> None:
    """Run the monitor role until ``stop_event`` is set.

    Args:
        config: The monitor's settings, or the whole loaded ``backend.toml``.
        registry: The fleet registry.
        influx: InfluxDB client for state, gaps, alerts, device info and website checks
            (None: write nothing, for tests of the alerting alone).
        stop_event: Set it to stop; open alerts are saved on the way out.
        clock: Injected time (tests); the system clock by default.
        channels: Alert channels instead of those configured (tests).
    """
    if isinstance(config, BackendConfig):
        config = MonitorConfig.from_backend(config)
    log.info("monitor starting with %d registered devices", len(registry.devices))
    await Monitor(config, registry, influx, clock=clock, channels=channels).run(stop_event)
