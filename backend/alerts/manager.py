"""From rule transitions to notices: one open alert per device and fault, maintenance, reminders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from backend.alerts.dispatcher import Delivery, Dispatcher
from backend.alerts.messages import render
from backend.alerts.model import Alert, AlertStore
from backend.maintenance import MaintenanceError, MaintenanceStore
from backend.monitor.clock import Clock
from backend.monitor.rules import Transition
from backend.registry import Registry

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
    ) -> None:
        self.registry = registry
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        self.maintenance = maintenance
        self.remind_s = remind_s
        self.points = points
        dispatcher.on_outcome = self.delivery_outcome

    def handle(self, transition: Transition) -> None:
        """Open or close the alert of a rule transition (duplicates are ignored)."""
        key = (transition.device, transition.fault)
        now = self.clock.now()
        if transition.opened:
            if key in self.store.open:
                return
            alert = Alert(transition.device, transition.fault, transition.since, now, transition.detail)
            self.store.open[key] = alert
            if not self._muted(alert.device, now):
                self._notify(alert, "open", now)
            self._point(alert, "open", now)
            self.store.save()
            return
        closed = self.store.open.pop(key, None)
        if closed is None:
            return
        # Whoever got the opening notice gets the recovery, even during maintenance.
        if closed.sent:
            self._notify(closed, "recovery", now)
        self._point(closed, "closed", now)
        self.store.save()

    def tick(self) -> None:
        """Send what is due: alerts whose maintenance ended, and reminders."""
        now = self.clock.now()
        changed = False
        for alert in list(self.store.open.values()):
            if self._muted(alert.device, now):
                continue
            if not alert.sent:
                self._notify(alert, "open", now)
                changed = True
            elif (
                self.remind_s and alert.last_sent_at is not None and now - alert.last_sent_at >= self.remind_s
            ):
                self._notify(alert, "reminder", now)
                changed = True
        if changed:
            self.store.save()

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
            notice = render(alert, self.registry, event, now, language)
            self.dispatcher.submit(notice, [t for t in technicians if t.language == language])

    def _point(self, alert: Alert, status: str, now: float) -> None:
        if self.points is None:
            return
        tags = {**self.registry.tags(alert.device), "fault": alert.fault, "status": status}
        message = render(alert, self.registry, "open" if status == "open" else "recovery", now).text
        fields: dict[str, FieldValue | None] = {
            "message": message,
            "since_ms": int(alert.since * 1000),
            "detail": alert.detail,
            "muted": not alert.sent,
        }
        self.points("alert", tags, fields, now)
