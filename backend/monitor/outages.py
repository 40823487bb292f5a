"""Each offline episode's cause: into the history when the alert opens, refined once the
device is back.

When the offline alert opens, `backend.monitor.causes.classify` names the likely cause and an
``outage`` point records it (tags ``cause``, ``evidence``; the KPI still counts the outage,
whoever's it was). When the device returns, its birth says whether it rebooted; then its
queue replays what it read during the outage (readings of an older boot, or stamped before
the return) and its first fresh heartbeat of the new session says why it last started.
That settles the episode: if the cause changes, the technician who got the alert gets one
"CẬP NHẬT NGUYÊN NHÂN" notice and a second ``outage`` point (``refined = true``) records it;
if it agrees, the opening point itself is completed (same series and time: one outage, one
point) with what the return added (field ``returned``, e.g. ``no_reboot``). Either way the
settling point carries ``duration_s`` (alert opened to device back): the outage hours by cause.

The open episodes are kept in the monitor's state directory (``outage_episodes.json``), so
an outage that outlives a monitor restart is still settled, with its duration, when the
device returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.alerts.dispatcher import Dispatcher
from backend.alerts.messages import render
from backend.alerts.model import Alert
from backend.monitor.causes import Cause, classify, confirm, note, refine
from backend.monitor.points import PointWriter
from backend.monitor.rules import Transition
from backend.monitor.state import DeviceState
from backend.registry import Registry
from backend.statefile import write_json

__all__ = ["EPISODES_FILE", "OutageCauses"]

log = logging.getLogger(__name__)

EPISODES_FILE = "outage_episodes.json"

FieldValue = bool | int | float | str

# A device clock this far behind the monitor's still reads as "now" (replayed: older).
CLOCK_SLACK_S = 2.0
# After this long back, the next heartbeat of the current boot settles the episode whatever
# its time stamp says: a device clock minutes behind (yet "synchronised") must not keep
# it open forever; its reboot reason is the same in every heartbeat of the boot.
SETTLE_WITHIN_S = 60.0


@dataclass
class _Episode:
    since: float
    cause: Cause
    boot_id: str | None
    back: bool = False
    rebooted: bool = False
    back_at: float = 0.0
    replayed: int = 0


class OutageCauses:
    """Classifies offline episodes and refines them after the return.

    Args:
        registry: Tags and technicians.
        dispatcher: Where a refinement notice goes.
        points: Where ``outage`` points go.
        path: The file that keeps the open episodes across restarts; None keeps them in memory.
    """

    def __init__(
        self,
        registry: Registry,
        dispatcher: Dispatcher,
        points: PointWriter,
        path: Path | None = None,
    ) -> None:
        self.registry = registry
        self.dispatcher = dispatcher
        self.points = points
        self.path = path
        self.episodes: dict[str, _Episode] = {}
        self.refined = 0
        # device -> its outage was told in an area notice (backend.monitor.areas): the
        # refinement is recorded but not sent to the technician device by device.
        self.quiet: Callable[[str], bool] = lambda device: False

    def load(self, offline: Collection[str]) -> None:
        """Take up the episodes of the previous run: those still open (their device has an
        open ``offline`` alert, in ``offline``) and those back but not yet settled. A missing
        file is none; an unreadable one is set aside (those outages then keep their opening
        point only)."""
        if self.path is None or not self.path.exists():
            return
        try:
            items = json.loads(self.path.read_text(encoding="utf-8"))
            episodes = {
                device: _Episode(**{**item, "cause": Cause(**item["cause"])})
                for device, item in items.items()
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            aside = self.path.with_suffix(".corrupt")
            log.error("outage episodes %s unreadable (%s); moved to %s", self.path, exc, aside)
            self.path.replace(aside)
            return
        self.episodes = {d: e for d, e in episodes.items() if e.back or d in offline}
        if len(self.episodes) != len(episodes):
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            write_json(self.path, {device: asdict(e) for device, e in self.episodes.items()})
        except OSError as exc:
            log.warning("outage episodes %s not written: %s", self.path, exc)

    def transition(self, st: DeviceState, transition: Transition, now: float) -> None:
        """Follow the ``offline`` rule's transitions of ``st``."""
        if transition.fault != "offline":
            return
        if transition.opened:
            cause = classify(st, now)
            self.episodes[st.device] = _Episode(transition.since, cause, st.boot_id)
            self._save()
            self._point(st.device, transition.since, cause, refined=False)
            return
        episode = self.episodes.get(st.device)
        if episode is not None and not episode.back:
            episode.back, episode.back_at = True, now
            episode.rebooted = episode.boot_id is not None and st.boot_id != episode.boot_id
            self._save()

    def heard(self, st: DeviceState, msg: Mapping[str, object], now: float) -> None:
        """A live message of ``st``: signs of an outage, then after a return the replayed
        queue, and the first fresh heartbeat of the current boot that settles the cause."""
        episode = self.episodes.get(st.device)
        if episode is None or not episode.back:
            if msg.get("kind") == "birth" or _fresh(st, msg, now - 60.0):
                note(st, msg, now)  # signs come from readings taken now, never from a replay
            return
        if msg.get("kind") in ("birth", "death"):
            return
        late = now - episode.back_at > SETTLE_WITHIN_S and _fresh(st, msg, 0.0)
        if not late and not _fresh(st, msg, episode.back_at - CLOCK_SLACK_S):
            episode.replayed += 1  # kept on disk at the next change: a restart may undercount
            return
        note(st, msg, now)
        if msg.get("kind") != "heartbeat":
            return
        del self.episodes[st.device]
        self._save()
        reason = msg.get("reboot_reason")
        better = refine(
            episode.cause,
            rebooted=episode.rebooted,
            reboot_reason=str(reason) if reason else None,
            replayed=episode.replayed,
        )
        duration = round(max(0.0, episode.back_at - episode.since), 3)
        if better.code == episode.cause.code:
            # The same series and time as the opening point: it is completed, not repeated
            # (one outage, one point); what the return added is the field ``returned``.
            confirmed = confirm(episode.cause, better)
            self._point(
                st.device,
                episode.since,
                confirmed,
                refined=False,
                duration=duration,
                tag=episode.cause.evidence,
            )
            return
        self.refined += 1
        self._point(st.device, episode.since, better, refined=True, duration=duration)
        if self.quiet(st.device):
            return
        alert = Alert(st.device, "offline", episode.since, now, better.text, sent=True)
        technicians = self.registry.technicians_for(st.device)
        for language in sorted({t.language for t in technicians}):
            notice = render(alert, self.registry, "update", now, language)
            self.dispatcher.submit(notice, [t for t in technicians if t.language == language])

    def _point(
        self,
        device: str,
        since: float,
        cause: Cause,
        *,
        refined: bool,
        duration: float | None = None,
        tag: str | None = None,
    ) -> None:
        evidence = cause.evidence if tag is None else tag
        tags = {**self.registry.tags(device), "cause": cause.code, "evidence": evidence}
        fields: dict[str, FieldValue | None] = {
            "text": cause.text,
            "refined": refined,
            "since_ms": int(since * 1000),
        }
        if cause.evidence != evidence:
            fields["returned"] = cause.evidence.removeprefix(f"{evidence}+")
        if duration is not None:
            fields["duration_s"] = duration
        self.points.add("outage", tags, fields, since, exact=tag is not None)


def _fresh(st: DeviceState, msg: Mapping[str, object], after: float) -> bool:
    """``msg`` was read by the current boot at or after ``after`` (a device clock that is not
    trusted cannot tell: fresh)."""
    boot = msg.get("boot_id")
    if boot is not None and st.boot_id is not None and boot != st.boot_id:
        return False
    ts = msg.get("ts")
    if msg.get("clock_ok") is not True or not isinstance(ts, int):
        return True
    return ts / 1000.0 >= after
