"""What the live view shows, read from where a district would read it.

Fleet state and open alerts come from InfluxDB (the ``state`` and ``alert`` points the
monitor writes, the same queries as ``tincoso status``); alerts *sent* come from the
demo's SMTP server and webhook receiver, i.e. only what was really delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from backend.influx import rows
from hil_tests.demo.receivers import HttpReceiver, Notice, SmtpServer
from protocols.stored_data import ALERT_OPEN_STATUSES

READINGS = ("heartbeat", "audio", "display", "event")
_STATE = "SELECT online FROM state GROUP BY device ORDER BY time DESC LIMIT 1"
# ``status`` is a tag: a query that selects no field returns nothing, so ``since_ms`` too.
_ALERTS = "SELECT since_ms, status FROM alert GROUP BY device, fault ORDER BY time DESC LIMIT 1"
_COUNTS = "SELECT count(seq) FROM {}".format(", ".join(f'"{m}"' for m in READINGS))


@dataclass
class FleetView:
    """The backend's view of the fleet at one moment."""

    online: dict[str, bool] = field(default_factory=dict)
    open_faults: dict[str, list[str]] = field(default_factory=dict)
    readings: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def readings_total(self) -> int:
        """Readings stored, all measurements together."""
        return sum(self.readings.values())


def read_fleet(influx_url: str, database: str, timeout: float = 5.0) -> FleetView:
    """Query InfluxDB; a failed query gives a view with ``error`` set, never an exception."""
    params = {"db": database, "q": ";".join((_STATE, _ALERTS, _COUNTS)), "epoch": "ms"}
    try:
        response = httpx.post(influx_url.rstrip("/") + "/query", data=params, timeout=timeout)
        response.raise_for_status()
        results: list[dict[str, Any]] = response.json().get("results", [])
    except (httpx.HTTPError, ValueError) as exc:
        return FleetView(error=f"InfluxDB did not answer: {exc}")
    if len(results) != 3:
        return FleetView(error="InfluxDB gave an incomplete answer")
    view = FleetView()
    for row in rows(results[0].get("series", [])):
        view.online[row["device"]] = bool(row["online"])
    for row in rows(results[1].get("series", [])):
        if row["status"] in ALERT_OPEN_STATUSES:
            view.open_faults.setdefault(row["device"], []).append(row["fault"])
    for series in results[2].get("series", []):
        view.readings[series["name"]] = int(series["values"][0][1])
    return view


@dataclass(frozen=True)
class SentAlert:
    """One notice the monitor sent (once, whatever the number of technicians and languages)."""

    received_at: float
    event: str
    device: str
    fault: str
    subject: str


def sent_alerts(http: HttpReceiver) -> list[SentAlert]:
    """Distinct notices delivered to the webhook receiver, oldest first (Vietnamese subject)."""
    seen: dict[tuple[str, str, str, int], SentAlert] = {}
    for notice in http.received():
        alert = _sent(notice)
        if alert is None:
            continue
        key = (alert.event, alert.device, alert.fault, int(notice.body.get("at_ms") or 0))
        if key not in seen or notice.body.get("language") == "vi":
            seen[key] = alert
    return sorted(seen.values(), key=lambda a: a.received_at)


def _sent(notice: Notice) -> SentAlert | None:
    body = notice.body
    try:
        return SentAlert(
            notice.received_at,
            str(body["event"]),
            str(body["device"]),
            str(body["fault"]),
            str(body["subject"]),
        )
    except KeyError:
        return None


@dataclass(frozen=True)
class Deliveries:
    """How many messages reached the technicians' side."""

    emails: int
    webhooks: int


def deliveries(smtp: SmtpServer, http: HttpReceiver) -> Deliveries:
    """Count e-mails accepted and webhook calls answered."""
    return Deliveries(len(smtp.messages), len(http.received()))
