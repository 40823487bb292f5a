"""Open alerts and the state file that keeps them across monitor restarts."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Alert", "AlertStore"]

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
    """

    device: str
    fault: str
    since: float
    opened_at: float
    detail: str = ""
    sent: bool = False
    last_sent_at: float | None = None

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

    def save(self) -> None:
        """Write every open alert atomically (temp file + rename)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data: list[dict[str, Any]] = [asdict(alert) for alert in self.open.values()]
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
