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

from backend.alerts.acks import ACKS_DIR, AckInbox
from backend.alerts.channels import Channel
from backend.alerts.channels.sms import SmsChannel, SmsGateway
from backend.alerts.channels.smtp import SmtpChannel
from backend.alerts.channels.telegram import TelegramChannel
from backend.alerts.channels.webhook import WebhookChannel
from backend.alerts.dispatcher import Dispatcher
from backend.alerts.manager import AlertManager
from backend.alerts.model import AlertStore
from backend.alerts.telegram_replies import TelegramReplies
from backend.config import BackendConfig, MqttSettings
from backend.health.weekly import WeeklyDigest
from backend.influx import InfluxClient
from backend.kpi.website_probe import run_website_probes
from backend.maintenance import FILE_NAME as MAINTENANCE_FILE
from backend.maintenance import MaintenanceStore
from backend.monitor.areas import AreaOutages, AreaSettings
from backend.monitor.clock import Clock, SystemClock
from backend.monitor.config import AlertSettings, MonitorConfig
from backend.monitor.gaps import GapDetector
from backend.monitor.infrastructure import RUN_FILE, SERVER_REASON, RunRecord, ServerWatch, health_notice
from backend.monitor.outages import EPISODES_FILE, OutageCauses
from backend.monitor.points import PointWriter
from backend.monitor.rules import RuleEngine
from backend.monitor.state import FleetState, StateChange
from backend.registry import Registry
from protocols import payloads, topics
from protocols.errors import ProtocolError

__all__ = ["OPEN_ALERTS_FILE", "Monitor", "build_channels", "run_monitor"]

log = logging.getLogger(__name__)

OPEN_ALERTS_FILE = "open_alerts.json"

# A tick this much later than due means the monitor itself was not listening (its loop
# blocked, or the machine starved it): messages that arrived meanwhile still wait in the
# socket, so silence measured now would blame devices for the monitor's own pause.
STALL_S = 1.0


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
    if settings.sms_url:
        channels["sms"] = SmsChannel(sms_gateway(settings), timeout=settings.webhook_timeout_s)
    return channels


def sms_gateway(settings: AlertSettings) -> SmsGateway:
    """The SMS gateway the ``[alerts] sms_*`` settings describe (``sms_url`` must be set)."""
    return SmsGateway(
        url=str(settings.sms_url),
        body=settings.sms_body,
        phone_field=settings.sms_phone_field,
        text_field=settings.sms_text_field,
        phone_style=settings.sms_phone_style,
        phone_as_list=settings.sms_phone_as_list,
        params=dict(settings.sms_params),
        username=settings.sms_username,
        password=settings.sms_password,
        token=settings.sms_token,
        ok_field=settings.sms_ok_field,
        ok_value=settings.sms_ok_value,
        unaccented=settings.sms_unaccented,
    )


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
        self._stalled = False  # the last tick was skipped after a stall
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
            grafana_url=alerts.grafana_url,
            acks=AckInbox(state_dir / ACKS_DIR),
        )
        self.server = ServerWatch(
            self.fleet,
            self._offline_grace_s,
            self._server_notice,
            open_after_s=settings.server_notice_after_s,
            enabled=settings.hold_on_broker_loss,
        )
        self.run_record = RunRecord(state_dir / RUN_FILE)
        self.causes = OutageCauses(registry, self.dispatcher, self.points, state_dir / EPISODES_FILE)
        self.causes.load({alert.device for alert in self.store.open.values() if alert.fault == "offline"})
        grouping = AreaSettings(
            settings.area_grouping,
            settings.area_window_heartbeats,
            settings.area_fraction,
            settings.area_min_devices,
        )
        self.areas = AreaOutages(
            registry,
            self.fleet,
            self.alerts,
            self.dispatcher,
            self.points.add,
            grouping,
            self._offline_grace_s,
        )
        self.causes.quiet = self.areas.quiet

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

    def tick(self, *, late_s: float = 0.0) -> None:
        """Run the timers: heartbeat timeouts, gap expiry, ``for`` delays, reminders.

        ``late_s``: how much later than due this tick runs. After a stall of more than
        ``STALL_S`` only deliveries and reminders run: timeouts and rules wait for the next
        tick, when the messages that queued during the stall have been handled. Never two
        ticks in a row: a monitor that is always late (overloaded) still judges silence,
        one tick behind.
        """
        stalled, self._stalled = late_s > STALL_S and not self._stalled, False
        if stalled:
            self._stalled = True
            self.counts["stalls"] += 1
            log.warning(
                "monitor stalled %.1f s (its loop blocked or the machine starved it): "
                "timeouts and rules wait one tick for the messages that queued meanwhile",
                late_s,
            )
            self.alerts.tick()
            return
        now = self.clock.now()
        self.server.tick(now)
        if self.server.holding():  # silence without a broker proves nothing: state frozen
            self.alerts.tick()
            return
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
        self.areas.tick(now)
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
        if live and not retained:
            self.causes.heard(self.fleet.get(msg["device"]), msg, self.clock.now())
        for change in self.fleet.apply(msg, live=live, retained=retained):
            if not change.online and self.server.settling(change.device, self.clock.now()):
                self.fleet.get(change.device).offline_reason = SERVER_REASON
            self._state_point(change)

    def _offline_grace_s(self, device: str) -> float:
        """How long ``device``'s agent has to come back before silence means offline."""
        state = self.fleet.get(device)
        registered = self.registry.device(device)
        kind = registered.kind if registered else state.device_kind
        grace = self.config.rules.settings("offline", kind).grace_heartbeats
        beats = max(grace, self.fleet.missed_heartbeats)
        return beats * (state.heartbeat_s or self.fleet.default_heartbeat_s)

    def _server_notice(self, what: str, start: float, end: float, clean: bool) -> None:
        """One backend-health notice to the district contacts, and a ``server_health`` point."""
        now = self.clock.now()
        contacts = self.registry.district_contacts
        log.warning("server health: %s from %.0f to %.0f", what, start, end)
        for language in sorted({c.language for c in contacts}):
            notice = health_notice(what, self.registry, start, end, now, clean=clean, language=language)
            self.dispatcher.submit(notice, [c for c in contacts if c.language == language])
        if not contacts:
            log.warning("no district_contacts in the registry: server health notice %s not sent", what)
        fields: dict[str, str | float | bool] = {"duration_s": round(end - start, 3), "clean": clean}
        self.points.add("server_health", {"event": what}, fields, now)

    def _evaluate(self, device: str) -> None:
        state = self.fleet.get(device)
        for transition in self.rules.evaluate(state):
            self.causes.transition(state, transition, self.clock.now())
            episode = self.causes.episodes.get(device)
            if self.areas.take(transition, episode.cause if episode else None, self.clock.now()):
                continue  # an offline alert waiting for its neighbours, or told in an area notice
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
        self.server.connecting()
        previous = self.run_record.previous() if self.config.monitor.hold_on_broker_loss else None
        self.run_record.write(self.clock.now())
        if previous is not None:
            self._server_notice("restarted", previous[0], self.clock.now(), previous[1])
        points_stop = asyncio.Event()
        points = asyncio.create_task(self.points.run(points_stop), name="monitor-points")
        workers: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._ticker(), name="monitor-ticker"),
            asyncio.create_task(self._subscribe_forever(), name="monitor-mqtt"),
            asyncio.create_task(self._device_info_forever(), name="monitor-device-info"),
        ]
        if self.influx is not None and self.config.monitor.digest_weekday >= 0:
            digest = WeeklyDigest(
                self.registry,
                self.influx,
                self.dispatcher,
                self.config.monitor.state_dir,
                weekday=self.config.monitor.digest_weekday,
                at=self.config.monitor.digest_at,
                now=self.clock.now,
            )
            workers.append(asyncio.create_task(digest.run(), name="monitor-weekly-digest"))
        if self.influx is not None and self.config.monitor.website_check_s > 0:
            probes = run_website_probes(self.registry, self.influx, self.config.monitor.website_check_s, stop)
            workers.append(asyncio.create_task(probes, name="monitor-websites"))
        alerts = self.config.alerts
        if alerts.telegram_token and alerts.telegram_replies:
            replies = TelegramReplies(
                alerts.telegram_token,
                self.alerts,
                self.registry,
                base_url=alerts.telegram_base_url,
                poll_s=alerts.telegram_poll_s,
            )
            workers.append(asyncio.create_task(replies.run(), name="monitor-telegram-replies"))
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
            self.run_record.write(self.clock.now(), stopped=True)
            self.store.save()
            points_stop.set()
            await points

    def device_info_points(self) -> int:
        """Queue a ``device_info`` point per registered device (``registered``, and coordinates if known).

        Dashboards count registered devices from these points, so every device gets one,
        not only those with coordinates.
        """
        now = self.clock.now()
        written = 0
        for device in self.registry.devices.values():
            fields: dict[str, Any] = {"registered": True}
            if device.lat is not None and device.lon is not None:
                fields.update(lat=device.lat, lon=device.lon)
            self.points.add("device_info", self.registry.tags(device.id), fields, now)
            written += 1
        return written

    async def _device_info_forever(self) -> None:
        while True:
            self.device_info_points()
            await asyncio.sleep(self.config.monitor.device_info_s)

    async def _ticker(self) -> None:
        last_stats = self.clock.now()
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.config.monitor.tick_s
            await asyncio.sleep(self.config.monitor.tick_s)
            try:
                self.tick(late_s=loop.time() - due)
                self.run_record.write(self.clock.now())
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
                    self.server.regained(self.clock.now())
                    delay = 0.5
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
                        self.handle(message.topic.value, bytes(data), retained=bool(message.retain))
            except aiomqtt.MqttError as exc:
                self.server.lost(self.clock.now())
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
