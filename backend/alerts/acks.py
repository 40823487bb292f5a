"""Acknowledgements handed from ``tincoso alerts ack`` to the running monitor.

The monitor alone owns the open alerts (``open_alerts.json``), so the command does not edit
them: it drops one small file per acknowledgement into ``<state dir>/acks/`` and the monitor
takes them on its next tick (every ``monitor.tick_s``), applies them and deletes them. One
file per request means two writers never share a file, and a request made while the
monitor is down waits for it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ACKS_DIR", "AckInbox", "AckRequest"]

log = logging.getLogger(__name__)

ACKS_DIR = "acks"


@dataclass(frozen=True)
class AckRequest:
    """Someone takes alert ``alert_id`` in hand.

    Attributes:
        alert_id: The short id (``K7Q2M``).
        by: Who.
        at: When it was asked (epoch s).
        via: ``cli``.
    """

    alert_id: str
    by: str
    at: float
    via: str = "cli"


class AckInbox:
    """The ``acks/`` directory.

    Args:
        path: ``<state dir>/acks``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def put(self, request: AckRequest) -> Path:
        """Write one request atomically; return its file."""
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"{request.alert_id}-{secrets.token_hex(4)}.json"
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(asdict(request), ensure_ascii=False), encoding="utf-8")
        final = self.path / name
        os.replace(tmp, final)
        return final

    def take(self) -> list[AckRequest]:
        """Every waiting request, oldest first; their files are removed (bad ones set aside)."""
        if not self.path.is_dir():
            return []
        taken: list[tuple[float, AckRequest]] = []
        for file in self.path.glob("*.json"):
            try:
                request = AckRequest(**json.loads(file.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                log.error("acknowledgement %s is unreadable (%s); moved aside", file, exc)
                file.replace(file.with_suffix(".bad"))
                continue
            file.unlink(missing_ok=True)
            taken.append((request.at, request))
        return [request for _, request in sorted(taken, key=lambda item: item[0])]
