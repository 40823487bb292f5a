"""The server's own outages: the monitor losing the broker, the broker restarting, the
backend restarting. None of them is a device fault.

While the monitor has lost the broker it hears nothing, so silence proves nothing: device
state is frozen (no heartbeat timeouts, no rule evaluation). Mosquitto 2.0 publishes every
client's Last Will as it shuts down, so the deaths that arrive just before the loss, or
queued in the monitor's session right after it gets the broker back, are the server's too:
they are marked ``server`` (not a link drop) and each device's offline grace starts again
from the moment the broker is back, long enough for its agent to reconnect and send its
birth. A device still silent after that is offline, as usual.

The district contacts get one backend-health notice per outage instead: after it when it
was short, at ``open_after_s`` and after it when it was long. A backend restart is told the
same way, from the run record the monitor keeps in its state directory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from backend.alerts.messages import Notice
from backend.monitor.state import FleetState
from backend.registry import LOCAL_TZ, Registry
from backend.statefile import write_json

__all__ = ["RUN_FILE", "SERVER_REASON", "RunRecord", "ServerWatch", "health_notice"]

log = logging.getLogger(__name__)

RUN_FILE = "monitor_run.json"
SERVER_REASON = "server"
HEALTH_FAULT = "server_health"

# what -> language -> (title, body) ; body gets {start} {end} {lasted}
_TEXT = {
    "broker_lost": {
        "vi": (
            "Máy chủ giám sát mất kết nối tới MQTT broker",
            "Từ {start} máy chủ giám sát không nhận được dữ liệu thiết bị. Trạng thái thiết bị được "
            "giữ nguyên; không gửi cảnh báo thiết bị cho sự cố của máy chủ. Kiểm tra dịch vụ "
            "Mosquitto và mạng của máy chủ.",
        ),
        "en": (
            "Monitor lost the MQTT broker",
            "Since {start} the monitor receives no device data. Device state is held; no device "
            "alerts are sent for the server's outage. Check the Mosquitto service and the server's network.",
        ),
    },
    "broker_back": {
        "vi": (
            "Máy chủ giám sát mất kết nối MQTT broker (đã khắc phục)",
            "Mất kết nối từ {start} đến {end} ({lasted}). Trạng thái thiết bị được giữ nguyên trong "
            "thời gian này và xác lập lại từ bản tin khởi động và nhịp tim sau khi kết nối lại; không "
            "gửi cảnh báo thiết bị cho sự cố của máy chủ.",
        ),
        "en": (
            "Monitor lost the MQTT broker (recovered)",
            "No broker from {start} to {end} ({lasted}). Device state was held and is re-established "
            "from births and heartbeats; no device alerts were sent for the server's outage.",
        ),
    },
    "restarted": {
        "vi": (
            "Máy chủ giám sát đã khởi động lại",
            "Máy chủ giám sát ngừng từ {start} ({how}) và chạy lại lúc {end} ({lasted}). Trạng thái "
            "thiết bị được xác lập lại từ bản tin khởi động và nhịp tim; không gửi cảnh báo thiết bị "
            "cho sự cố của máy chủ.",
        ),
        "en": (
            "Monitor restarted",
            "The monitor stopped at {start} ({how}) and runs again since {end} ({lasted}). Device "
            "state is re-established from births and heartbeats; no device alerts for the server's outage.",
        ),
    },
}
_HOW = {
    "vi": {True: "dừng bình thường", False: "dừng đột ngột"},
    "en": {True: "clean stop", False: "crashed"},
}


def _local(ts: float) -> str:
    return datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%H:%M:%S %d/%m/%Y")


def _lasted(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def health_notice(
    what: str,
    registry: Registry,
    start: float,
    end: float,
    at: float,
    *,
    clean: bool = True,
    language: str = "vi",
) -> Notice:
    """The district contacts' notice about the server (``broker_lost``, ``broker_back``, ``restarted``)."""
    lang = language if language in ("vi", "en") else "vi"
    title, body = _TEXT[what][lang]
    lasted = _lasted(end - start)
    text = body.format(start=_local(start), end=_local(end), lasted=lasted, how=_HOW[lang][clean])
    event = "open" if what == "broker_lost" else "recovery"
    return Notice(
        event=event,
        device="",
        fault=HEALTH_FAULT,
        commune="",
        commune_name=registry.district,
        hamlet="",
        kind="server",
        since=start,
        at=at,
        language=lang,
        subject=f"[tincoso] {title} - {registry.district}",
        text=f"{title}\n{text}",
    )


@dataclass
class _Outage:
    start: float
    opened: bool = False  # the "lost" notice went out


class ServerWatch:
    """What the monitor knows about its own link to the broker.

    Args:
        fleet: The device states to freeze and re-establish.
        grace_s: ``device -> seconds`` its agent gets to come back after the broker does.
        notify: Sends one notice to the district contacts.
        open_after_s: An outage this long gets a notice while it lasts (then one after it).
        enabled: False: the monitor trusts silence even without a broker (the old behaviour).
    """

    def __init__(
        self,
        fleet: FleetState,
        grace_s: Callable[[str], float],
        notify: Callable[[str, float, float, bool], None],
        *,
        open_after_s: float = 300.0,
        enabled: bool = True,
    ) -> None:
        self.fleet = fleet
        self.grace_s = grace_s
        self.notify = notify
        self.open_after_s = open_after_s
        self.enabled = enabled
        self.connected = True  # driven directly (tests), messages flow; `connecting` when run
        self.regained_at: float | None = None
        self.outages = 0
        self._outage: _Outage | None = None

    def holding(self) -> bool:
        """Device state is frozen: the broker is away (or was never reached yet)."""
        return self.enabled and not self.connected

    def connecting(self) -> None:
        """The monitor starts and has not reached the broker yet: hold, but no outage."""
        self.connected = False

    def lost(self, now: float) -> None:
        """The monitor's connection to the broker ended."""
        if not self.connected:
            return
        self.connected = False
        if not self.enabled:
            return
        self._outage = _Outage(now)
        for state in self.fleet.devices.values():
            recent = 2 * (state.heartbeat_s or self.fleet.default_heartbeat_s)
            went = state.down_since or 0.0
            if state.online is False and state.offline_reason == "lwt" and went >= now - recent:
                state.offline_reason = SERVER_REASON  # a Will the broker published as it went

    def regained(self, now: float) -> None:
        """The monitor is subscribed again: re-establish every device from what comes next."""
        self.connected = True
        if not self.enabled:
            return
        for state in self.fleet.devices.values():
            state.trusted_since = now
            if state.online and state.last_seen is not None:
                state.last_seen = max(state.last_seen, now)
        outage, self._outage = self._outage, None
        # Wills arriving now may be the broker's own restart only after an outage this run saw;
        # at the monitor's first connection a Will is the device's.
        self.regained_at = now if outage is not None else None
        if outage is not None:
            self.outages += 1
            self.notify("broker_back", outage.start, now, True)

    def settling(self, device: str, now: float) -> bool:
        """Deaths of ``device`` arriving now may still be the broker's restart."""
        if not self.enabled or self.regained_at is None:
            return False
        return now - self.regained_at < self.grace_s(device)

    def tick(self, now: float) -> None:
        """Send the "lost" notice once a long outage reaches ``open_after_s``."""
        outage = self._outage
        if outage is not None and not outage.opened and now - outage.start >= self.open_after_s:
            outage.opened = True
            self.notify("broker_lost", outage.start, now, True)


class RunRecord:
    """``monitor_run.json``: when this monitor started, was last alive, stopped cleanly.

    Args:
        path: The file (in the monitor's state directory).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.started_at = 0.0

    def previous(self) -> tuple[float, bool] | None:
        """``(stopped or last alive at, clean)`` of the previous run, None on a first start."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            stopped = data.get("stopped_at")
            return (float(stopped), True) if stopped is not None else (float(data["alive_at"]), False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("run record %s unreadable (%s): taken as a first start", self.path, exc)
            return None

    def write(self, now: float, *, stopped: bool = False) -> None:
        """Record that the monitor is alive at ``now`` (or stopped cleanly)."""
        if not self.started_at:
            self.started_at = now
        data = {"started_at": self.started_at, "alive_at": now, "stopped_at": now if stopped else None}
        try:
            write_json(self.path, data, sync=False)
        except OSError as exc:
            log.warning("run record %s not written: %s", self.path, exc)
