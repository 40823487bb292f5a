"""From rule transitions to notices: one open alert per device and fault, maintenance, reminders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from backend.alerts.acks import AckInbox
from backend.alerts.dispatcher import Delivery, Dispatcher
from backend.alerts.messages import render
from backend.alerts.model import Alert, AlertStore, new_alert_id
from backend.maintenance import MaintenanceError, MaintenanceStore
from backend.monitor.clock import Clock
from backend.monitor.rules import Transition
from backend.registry import Registry
from protocols.stored_data import ALERT, ALERT_CLOSED, ALERT_OPEN, ALERT_OPEN_STATUSES, ALERT_UNCONFIRMED

__all__ = ["AlertManager", "PointSink"]

log = logging.getLogger(__name__)

FieldValue = bool | int | float | str
# (measurement, tags, fields, timestamp in epoch seconds)
PointSink = Callable[[str, Mapping[str, str | None], Mapping[str, FieldValue | None], float], None]


class AlertManager:
    """Keeps the open alerts and sends opening, reminder and recovery notices.

    Args:
        registry: Who to route to, and names for the text.
        store: Open alerts (persisted).
        dispatcher: Delivery queue.
        clock: Source of "now".
        maintenance: Maintenance windows, or None for none.
        remind_s: Resend an open alert this often; None for never.
        points: Where ``alert`` and ``alert_delivery`` points go.
        grafana_url: The district's Grafana, for the device link in notices.
        acks: Where ``tincoso alerts ack`` leaves acknowledgements, or None.
    """

    def __init__(
        self,
        registry: Registry,
        store: AlertStore,
        dispatcher: Dispatcher,
        clock: Clock,
        *,
        maintenance: MaintenanceStore | None = None,
        remind_s: float | None = None,
        points: PointSink | None = None,
        grafana_url: str | None = None,
        acks: AckInbox | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        self.maintenance = maintenance
        self.remind_s = remind_s
        self.points = points
        self.grafana_url = grafana_url
        self.acks = acks
        dispatcher.on_outcome = self.delivery_outcome

    def handle(self, transition: Transition, *, area: str = "") -> None:
        """Open or close the alert of a rule transition (duplicates are ignored).

        Args:
            transition: The rule's transition.
            area: Open the alert as told by this area notice: no notice of its own (and no
                recovery) unless `release` tells it later.
        """
        key = (transition.device, transition.fault)
        now = self.clock.now()
        if transition.unconfirmed:
            self._unconfirmed(key, now)
            return
        if transition.opened:
            if key in self.store.open:
                return
            alert = Alert(transition.device, transition.fault, transition.since, now, transition.detail)
            alert.id = new_alert_id(self.store.ids())
            alert.area = area
            self.store.open[key] = alert
            if not area and not self._muted(alert.device, now):
                self._notify(alert, "open", now)
            self._point(alert, ALERT_OPEN, now)
            self.store.save()
            return
        closed = self.store.open.pop(key, None)
        if closed is None:
            return
        # Whoever got the opening notice gets the recovery, even during maintenance.
        if closed.sent:
            self._notify(closed, "recovery", now)
        self._point(closed, ALERT_CLOSED, now)
        self.store.save()

    def release(self, device: str, fault: str) -> Alert | None:
        """An alert told in an area notice now gets its own (still down after its neighbours)."""
        alert = self.store.open.get((device, fault))
        if alert is None or not alert.area:
            return None
        alert.area = ""
        now = self.clock.now()
        if not self._muted(device, now):
            self._notify(alert, "open", now)
        self.store.save()
        return alert

    def _unconfirmed(self, key: tuple[str, str], now: float) -> None:
        """The evidence window ended with the fault open: say so, keep the same alert open."""
        alert = self.store.open.get(key)
        if alert is None:
            return
        if alert.sent:
            self._notify(alert, "unconfirmed", now)
        self._point(alert, ALERT_UNCONFIRMED, now)
        self.store.save()

    def tick(self) -> None:
        """Apply waiting acknowledgements; send what is due: alerts whose maintenance ended, reminders."""
        if self.acks is not None:
            for request in self.acks.take():
                if self.acknowledge(request.alert_id, request.by, request.via) is None:
                    log.warning("ack of %s by %s: no such open alert", request.alert_id, request.by)
        now = self.clock.now()
        changed = False
        for alert in list(self.store.open.values()):
            if self._muted(alert.device, now):
                continue
            if not alert.sent:
                if alert.area:
                    continue  # told in its area notice
                self._notify(alert, "open", now)
                self._point(alert, ALERT_OPEN, now)  # no longer muted: status and alerts say so
                changed = True
            elif (
                self.remind_s
                and not alert.acked
                and alert.last_sent_at is not None
                and now - alert.last_sent_at >= self.remind_s
            ):
                self._notify(alert, "reminder", now)
                changed = True
        if changed:
            self.store.save()

    def acknowledge(self, alert_id: str, by: str, via: str) -> Alert | None:
        """Mark the open alert ``alert_id`` as taken in hand: no more reminders.

        Args:
            alert_id: Its short id (any case, ``#`` allowed).
            by: Who (a technician's name, or the operator's login).
            via: ``cli`` or ``telegram``.

        Returns:
            The alert, or None when no open alert has that id. Acknowledging twice keeps
            the first acknowledgement.
        """
        alert = self.store.by_id(alert_id)
        if alert is None or alert.acked:
            return alert
        alert.acked_by, alert.acked_at, alert.acked_via = by, self.clock.now(), via
        self._point(alert, ALERT_OPEN, self.clock.now())
        self.store.save()
        log.info("alert %s (%s %s) acknowledged by %s via %s", alert.id, alert.device, alert.fault, by, via)
        return alert

    def delivery_outcome(self, delivery: Delivery, outcome: str, error: str | None) -> None:
        """Record one delivery try as an ``alert_delivery`` point."""
        if self.points is None:
            return
        notice = delivery.notice
        tags = {
            "device": notice.device,
            "commune": notice.commune,
            "fault": notice.fault,
            "channel": delivery.channel,
            "outcome": outcome,
        }
        fields: dict[str, FieldValue | None] = {
            "attempt": delivery.attempt,
            "event": notice.event,
            "error": error,
        }
        self.points("alert_delivery", tags, fields, self.clock.now())

    def muted(self, device: str) -> bool:
        """``device`` (or its commune) is in a maintenance window now."""
        return self._muted(device, self.clock.now())

    def _muted(self, device: str, now: float) -> bool:
        if self.maintenance is None:
            return False
        registered = self.registry.device(device)
        try:
            return (
                self.maintenance.muting(device, registered.commune if registered else None, now) is not None
            )
        except MaintenanceError as exc:
            log.error("%s; alerts are not muted", exc)
            return False

    def _notify(self, alert: Alert, event: str, now: float) -> None:
        alert.sent = True
        alert.last_sent_at = now
        technicians = self.registry.technicians_for(alert.device)
        if not technicians:
            log.warning("no technician for %s (%s): %s not sent", alert.device, alert.fault, event)
            return
        for language in sorted({t.language for t in technicians}):
            notice = render(alert, self.registry, event, now, language, grafana_url=self.grafana_url)
            self.dispatcher.submit(notice, [t for t in technicians if t.language == language])

    def _point(self, alert: Alert, status: str, now: float) -> None:
        if self.points is None:
            return
        tags = {**self.registry.tags(alert.device), "fault": alert.fault, "status": status}
        event = status if status in ALERT_OPEN_STATUSES else "recovery"
        message = render(alert, self.registry, event, now).text
        fields: dict[str, FieldValue | None] = {
            "message": message,
            "since_ms": int(alert.since * 1000),
            "detail": alert.detail,
            "muted": not alert.sent and not alert.area,  # told in an area notice is not muted
            "area_id": alert.area or None,
            "alert_id": alert.id,
            "opened_ms": int(alert.opened_at * 1000),
            "acked_by": alert.acked_by,
            "acked_ms": None if alert.acked_at is None else int(alert.acked_at * 1000),
        }
        self.points(ALERT, tags, fields, now)
