"""Fleet state: which devices are online, and the latest readings of each.

Online/offline comes from the retained ``birth``/``death`` on each device's state topic
(a death whose ``bdseq`` is older than the current birth's is a stale Last Will of an
earlier session and is ignored) and from a heartbeat timeout: a device not heard for
``missed_heartbeats`` times its birth's ``heartbeat_s`` is offline. Times are the
monitor's receive times (its injected clock), never the device's clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from backend.monitor.clock import Clock

__all__ = ["DeviceState", "FleetState", "StateChange"]

Message = dict[str, Any]
# Offline reasons that, ended by the same boot, are a dropped link (not "clean", nor
# "server": the broker's own outage, see backend.monitor.infrastructure).
LINK_DROP_REASONS = ("lwt", "timeout")


@dataclass(frozen=True)
class StateChange:
    """A device went online or offline.

    Attributes:
        device: Device id.
        online: The new state.
        at: When it changed (epoch s): the birth's receive time, or for offline the last
            time the device was heard from.
        reason: ``birth``, ``resumed`` (heard again after a timeout), ``first_seen``,
            ``lwt``, ``clean`` or ``timeout``.
        bdseq: The session counter the change belongs to, when known.
        down_since: For a device coming back: when its down interval started.
    """

    device: str
    online: bool
    at: float
    reason: str
    bdseq: int | None = None
    down_since: float | None = None


@dataclass
class DeviceState:
    """What the monitor knows about one device."""

    device: str
    online: bool | None = None
    offline_reason: str | None = None
    bdseq: int | None = None
    boot_id: str | None = None
    heartbeat_s: float | None = None
    device_kind: str | None = None
    last_seen: float | None = None
    down_since: float | None = None
    heartbeat: Message | None = None
    audio: Message | None = None
    display: Message | None = None
    # Since when the audio has been silent, from the live readings' ``dead_air_s`` (seconds
    # of each report window below the agent's threshold); None while there is sound.
    silent_since: float | None = None
    # code -> since when the agent reports it, or None once the agent reported its end
    agent_faults: dict[str, float | None] = field(default_factory=dict)
    boots: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    gaps: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=1024))
    stale_deaths: int = 0
    # When each short link drop ended (same boot before and after: not a reboot, not the
    # server's own outage): the input of the link_flapping rule.
    link_drops: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    # Since when the monitor trusts silence about this device: the moment it last got the
    # broker back (None: always). Offline damping counts its grace from here at the earliest.
    trusted_since: float | None = None
    # Signs of a coming outage and when each was first seen (mains_lost, voltage_lost,
    # signal_weak, disk_ro) or last seen (cellular): the input of backend.monitor.causes.
    signs: dict[str, float] = field(default_factory=dict)

    def record_gap(self, at: float, missing: int) -> None:
        """Remember ``missing`` lost messages found at ``at`` (input of the data-loss rule)."""
        self.gaps.append((at, missing))


class FleetState:
    """Online/offline and latest readings of every device seen.

    Args:
        clock: Source of receive times.
        missed_heartbeats: Heartbeats missed before a device counts as offline.
        default_heartbeat_s: Heartbeat interval assumed until a birth says otherwise.
    """

    def __init__(
        self, clock: Clock, *, missed_heartbeats: float = 3, default_heartbeat_s: float = 60
    ) -> None:
        self.clock = clock
        self.missed_heartbeats = missed_heartbeats
        self.default_heartbeat_s = default_heartbeat_s
        self.devices: dict[str, DeviceState] = {}

    def get(self, device: str) -> DeviceState:
        """The state of ``device``, created empty on first use."""
        state = self.devices.get(device)
        if state is None:
            state = self.devices[device] = DeviceState(device)
        return state

    def apply(self, msg: Message, *, live: bool = True, retained: bool = False) -> list[StateChange]:
        """Take one decoded message into account.

        Args:
            msg: A valid v1 message (not a batch: unpack batches first).
            live: False for items replayed from a batch: they prove the device is alive
                but are too old to become its latest readings.
            retained: The broker delivered a retained message (a state left from before).

        Returns:
            The online/offline change this message caused, if any.
        """
        state = self.get(msg["device"])
        kind = msg["kind"]
        if kind == "birth":
            return self._birth(state, msg, retained)
        if kind == "death":
            return self._death(state, msg)
        if kind == "event":
            self._event(state, msg)
        elif live and kind in ("heartbeat", "audio", "display"):
            setattr(state, kind, msg)
            if kind == "audio":
                self._follow_silence(state, msg)
        return self._heard(state)

    def check_timeouts(self) -> list[StateChange]:
        """Mark devices not heard for too long offline; call this on a timer."""
        now = self.clock.now()
        changes = []
        for state in self.devices.values():
            if state.online and state.last_seen is not None:
                interval = state.heartbeat_s or self.default_heartbeat_s
                if now - state.last_seen > self.missed_heartbeats * interval:
                    changes.append(self._go_offline(state, "timeout", state.last_seen))
        return changes

    def _birth(self, state: DeviceState, msg: Message, retained: bool) -> list[StateChange]:
        now = self.clock.now()
        rebooted = state.boot_id is not None and msg["boot_id"] != state.boot_id
        if rebooted and not retained:
            state.boots.append(now)
        state.bdseq = msg["bdseq"]
        state.boot_id = msg["boot_id"]
        state.heartbeat_s = float(msg["heartbeat_s"])
        state.device_kind = msg["device_kind"]
        state.last_seen = now
        if state.online:
            return []  # a quick reconnect: the old session's Last Will will be stale
        return [self._go_online(state, "birth", now, rebooted=rebooted)]

    def _death(self, state: DeviceState, msg: Message) -> list[StateChange]:
        if state.bdseq is not None and msg["bdseq"] < state.bdseq:
            state.stale_deaths += 1
            return []
        state.bdseq = msg["bdseq"]
        if state.online is False:
            state.offline_reason = msg["reason"]
            return []
        since = state.last_seen if state.last_seen is not None else self.clock.now()
        return [self._go_offline(state, msg["reason"], since)]

    def _event(self, state: DeviceState, msg: Message) -> None:
        if msg["event"] == "fault_start":
            if state.agent_faults.get(msg["code"]) is None:
                state.agent_faults[msg["code"]] = self.clock.now()
        elif msg["event"] == "fault_end":
            state.agent_faults[msg["code"]] = None

    def _follow_silence(self, state: DeviceState, msg: Message) -> None:
        quiet = float(msg["dead_air_s"])
        if quiet <= 0:
            state.silent_since = None
        elif quiet < float(msg["window_s"]) or state.silent_since is None:
            # Sound earlier in the window (or the first quiet one): the silence is its end.
            state.silent_since = self.clock.now() - quiet
        # else: a whole window below the threshold: the silence goes on

    def _heard(self, state: DeviceState) -> list[StateChange]:
        now = self.clock.now()
        state.last_seen = now
        if state.online is None:
            return [self._go_online(state, "first_seen", now)]
        # After a death only a new birth brings a device back: the agent always sends one first.
        if state.online is False and state.offline_reason == "timeout":
            return [self._go_online(state, "resumed", now)]
        return []

    def _go_online(
        self, state: DeviceState, reason: str, at: float, *, rebooted: bool = False
    ) -> StateChange:
        if state.online is False and not rebooted and state.offline_reason in LINK_DROP_REASONS:
            state.link_drops.append(at)
        down_since = state.down_since if state.online is False else None
        state.online, state.offline_reason, state.down_since = True, None, None
        return StateChange(state.device, True, at, reason, state.bdseq, down_since)

    def _go_offline(self, state: DeviceState, reason: str, since: float) -> StateChange:
        state.online, state.offline_reason, state.down_since = False, reason, since
        return StateChange(state.device, False, since, reason, state.bdseq)
