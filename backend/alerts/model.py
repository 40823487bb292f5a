"""Open alerts and the state file that keeps them across monitor restarts."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.statefile import write_json

__all__ = ["ALERT_ID", "Alert", "AlertStore", "new_alert_id"]

# Five characters a technician can read out or type on a phone: no 0/O, 1/I.
_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
ALERT_ID = re.compile(r"#?\b([A-HJ-NP-Z2-9]{5})\b")


def new_alert_id(taken: Collection[str] = ()) -> str:
    """A fresh short alert id such as ``K7Q2M`` (32**5, about 33 million), not in ``taken``."""
    while True:
        candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(5))
        if candidate not in taken:
            return candidate


log = logging.getLogger(__name__)


@dataclass
class Alert:
    """One open fault of one device (at most one per device and fault).

    Attributes:
        device: Device id.
        fault: Rule name (``offline``, ``dead_air``...).
        since: When the fault started (epoch s).
        opened_at: When the monitor opened the alert (epoch s).
        detail: Short measured detail (``3.1 W``, ``reason: lwt``).
        sent: The opening notice went out (False while the device was in maintenance).
        last_sent_at: When a notice about it was last sent (for reminders).
        id: Short id (``K7Q2M``) shown in every notice and used to acknowledge it.
        acked_by: Who acknowledged it (no more reminders), or None.
        acked_at: When (epoch s).
        acked_via: ``cli`` or ``telegram``.
        area: The area notice that told it instead of its own (``backend.monitor.areas``),
            or "" when it is told on its own.
    """

    device: str
    fault: str
    since: float
    opened_at: float
    detail: str = ""
    sent: bool = False
    last_sent_at: float | None = None
    id: str = ""
    acked_by: str | None = None
    acked_at: float | None = None
    acked_via: str | None = None
    area: str = ""

    @property
    def acked(self) -> bool:
        """Someone has taken it in hand."""
        return self.acked_at is not None

    @property
    def key(self) -> tuple[str, str]:
        """``(device, fault)``."""
        return (self.device, self.fault)


class AlertStore:
    """Open alerts, saved to a JSON file after every change so a restart does not resend.

    Args:
        path: The state file; None keeps alerts in memory only.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self.open: dict[tuple[str, str], Alert] = {}

    def load(self) -> None:
        """Read the state file; a missing file is an empty store, a corrupt one is set aside."""
        if self.path is None or not self.path.exists():
            return
        try:
            items = json.loads(self.path.read_text(encoding="utf-8"))
            alerts = [Alert(**item) for item in items]
        except (OSError, ValueError, TypeError) as exc:
            aside = self.path.with_suffix(".corrupt")
            log.error(
                "open-alert state %s is unreadable (%s); moved to %s, starting empty", self.path, exc, aside
            )
            self.path.replace(aside)
            return
        self.open = {alert.key: alert for alert in alerts}
        for alert in alerts:  # a state file written before alerts had ids
            if not alert.id:
                alert.id = new_alert_id(self.ids())

    def ids(self) -> set[str]:
        """Ids of the open alerts."""
        return {alert.id for alert in self.open.values()}

    def by_id(self, alert_id: str) -> Alert | None:
        """The open alert with this id (any case, with or without ``#``), or None."""
        wanted = alert_id.strip().lstrip("#").upper()
        return next((a for a in self.open.values() if a.id == wanted), None)

    def save(self) -> None:
        """Write every open alert atomically (temp file + rename)."""
        if self.path is None:
            return
        write_json(self.path, [asdict(alert) for alert in self.open.values()])
