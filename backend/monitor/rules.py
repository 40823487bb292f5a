"""Fault rules: conditions on a device's state, each behind a small open/clear state machine.

A rule's condition answers True (fault present), False (absent) or None (no data to tell:
keep the current state). A fault opens once its condition has held for the rule's
``for_s`` and clears the first time it is false. Rules are evaluated on every message and
on a timer, with time from the injected clock. While a device is offline only the
``offline`` rule is evaluated; the others keep their state until it reports again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

from backend.monitor.causes import classify
from backend.monitor.clock import Clock
from backend.monitor.state import DeviceState
from backend.registry import DEVICE_KINDS, DailyWindow, Registry, local_time
from protocols import stored_data

__all__ = [
    "EVIDENCE_ENDED",
    "FAULTS",
    "RuleEngine",
    "RuleError",
    "RuleSettings",
    "RulesConfig",
    "Transition",
]

SPEAKER = ("speaker_cluster",)
# Faults judged on a device's history (drops, boots, lost messages), not on its live
# readings: a device going dark takes no evidence from them (no "unconfirmed" notice).
_HISTORY_FAULTS = frozenset({"link_flapping", "reboot_loop", "data_loss"})
BOARDS = ("eboard", "district_led")
CELLULAR = ("4g", "3g", "2g")


class RuleError(ValueError):
    """A ``[rules]`` setting is wrong (the message names it)."""


@dataclass(frozen=True)
class RuleSettings:
    """Settings of one rule, for one device kind.

    Attributes:
        enabled: Evaluate the rule at all.
        for_s: How long the condition must hold before the fault opens.
        threshold: The rule's limit (watts, dBm, °C, seconds), where it has one.
        count: How many (reboots, lost messages) within ``window_s``.
        window_s: The period ``count`` is taken over.
        grace_s: Seconds after a scheduled window opens before the rule looks (the
            agent needs a moment to hear the bulletin begin and say so).
        grace_heartbeats: ``offline`` only: a device back within this many of its own
            heartbeat intervals was never offline for the technician (flap damping; time
            scales with the device's reporting, 5 min at a 60 s heartbeat).
    """

    enabled: bool = True
    for_s: float = 0.0
    threshold: float | None = None
    count: int | None = None
    window_s: float | None = None
    grace_s: float = 0.0
    grace_heartbeats: float = 0.0


# A condition's answer when the window in which it can be judged has ended (bulletin over,
# board hours over) while its fault is open: the fault is neither confirmed nor cleared.
EVIDENCE_ENDED = (None, "")

Condition = Callable[[DeviceState, "RuleContext", RuleSettings], "tuple[bool | None, str] | None"]


@dataclass(frozen=True)
class RuleContext:
    """What a condition may look at besides the device's state."""

    now: float
    kind: str | None
    registry: Registry
    sound_threshold_dbfs: float = stored_data.SOUND_THRESHOLD_DBFS

    def sounded(self, audio: Mapping[str, Any]) -> bool:
        """`protocols.stored_data.sounded` of an audio reading, at the configured threshold."""
        return stored_data.sounded(
            audio["playing"], audio["dead_air"], audio["rms_dbfs"], self.sound_threshold_dbfs
        )


@dataclass(frozen=True)
class Transition:
    """A fault opened (``opened``) or cleared on a device."""

    device: str
    fault: str
    opened: bool
    at: float
    since: float
    detail: str = ""
    unconfirmed: bool = False


def _offline(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    if st.online is None:
        return None
    if not st.online and s.grace_heartbeats > 0:
        # Damping: a drop shorter than the grace is not an outage. The grace runs from the
        # last time heard, or from when the monitor got the broker back if that is later.
        start = max(st.down_since or ctx.now, st.trusted_since or 0.0)
        if ctx.now - start < s.grace_heartbeats * (st.heartbeat_s or 60.0):
            return None
    if st.online:
        return (False, "")
    return (True, f"{classify(st, ctx.now).text} (reason: {st.offline_reason})")


def _dead_air(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool | None, str] | None:
    agent = st.agent_faults.get("dead_air") is not None
    if st.audio is None and "dead_air" not in st.agent_faults:
        return None
    audio = st.audio
    # Silent: the agent's dead air, or playing below the configured threshold.
    silent = agent or bool(audio and (audio["dead_air"] or (audio["playing"] and not ctx.sounded(audio))))
    bulletin = ctx.registry.bulletin_at(st.device, ctx.now)
    # The silence before a bulletin is still on record in its first seconds (the agent
    # clears dead air only after it has heard sound for a while): look after the grace.
    if bulletin is not None and _seconds_into(bulletin, ctx.now) < s.grace_s:
        bulletin = None
    if bulletin is None:
        # Outside a bulletin (or in its first seconds) silence proves nothing either way.
        return EVIDENCE_ENDED
    # How long it has been silent (not the last window's quiet seconds: a reading sent just
    # before the agent's dead-air event would make a long silence read "1 s").
    seconds = round(ctx.now - st.silent_since) if silent and st.silent_since is not None else 0
    return (silent, f"{bulletin.label()}, {seconds:g} s")


def _seconds_into(window: DailyWindow, now: float) -> float:
    local = local_time(now)
    start = local.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
    if start > local:  # a window that began before midnight
        start -= timedelta(days=1)
    return (local - start).total_seconds()


def _playing_off_schedule(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    if st.audio is None:
        return None
    playing = ctx.sounded(st.audio)
    return (playing and ctx.registry.bulletin_at(st.device, ctx.now) is None, st.audio.get("programme") or "")


def _amp_idle(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool | None, str] | None:
    if st.agent_faults.get("amp_idle") is not None:
        return (True, "agent")
    audio = st.audio
    if audio is None or audio.get("amp_power_w") is None:
        return None if audio is None and "amp_idle" not in st.agent_faults else (False, "")
    present = ctx.sounded(audio)
    if not present:
        # No audio on the line, so the amplifier's draw says nothing about the fault.
        return EVIDENCE_ENDED
    power = float(audio["amp_power_w"])
    return (present and power < (s.threshold or 0), f"{power:g} W")


def _board(flag: str) -> Condition:
    def condition(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool | None, str] | None:
        display = st.display
        if display is None:
            return None
        operating = ctx.registry.operating_at(st.device, ctx.now) is not False
        if not operating:
            return EVIDENCE_ENDED
        if flag == "dark":
            return (operating and not display["power"], "")
        return (operating and display["power"] and display[flag], display.get("content_id") or "")

    return condition


def _source_sync_stale(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    age = st.display.get("source_sync_age_s") if st.display else None
    if age is None:
        return None
    return (age > (s.threshold or 0), f"{age:g} s")


def _weak_signal(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    hb = st.heartbeat
    if hb is None or hb["signal_dbm"] is None or hb["net_type"] not in CELLULAR:
        return None if hb is None else (False, "")
    return (hb["signal_dbm"] < (s.threshold or -200), f"{hb['signal_dbm']:g} dBm")


def _overheating(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    temps = [m["temp_c"] for m in (st.heartbeat, st.display) if m is not None and m["temp_c"] is not None]
    if not temps:
        return None
    return (max(temps) > (s.threshold or 200), f"{max(temps):g} °C")


def _storage_readonly(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    return None if st.heartbeat is None else (bool(st.heartbeat["disk_ro"]), "")


def _recent(ctx: RuleContext, s: RuleSettings, times: Iterable[float]) -> list[float]:
    window = s.window_s or 0
    return [t for t in times if ctx.now - t <= window]


def _reboot_loop(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    reboots = len(_recent(ctx, s, st.boots))
    return (reboots >= (s.count or 1), f"{reboots} reboots in {s.window_s or 0:g} s")


def _link_flapping(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    drops = len(_recent(ctx, s, st.link_drops))
    return (drops >= (s.count or 1), f"{drops} drops in {s.window_s or 0:g} s")


def _data_loss(st: DeviceState, ctx: RuleContext, s: RuleSettings) -> tuple[bool, str] | None:
    window = s.window_s or 0
    lost = sum(m for t, m in st.gaps if ctx.now - t <= window)
    return (lost >= (s.count or 1), f"{lost} messages in {window:g} s")


@dataclass(frozen=True)
class _Rule:
    condition: Condition
    kinds: tuple[str, ...]
    defaults: RuleSettings


FAULTS: dict[str, _Rule] = {
    "offline": _Rule(_offline, DEVICE_KINDS, RuleSettings(grace_heartbeats=5)),
    "dead_air": _Rule(_dead_air, SPEAKER, RuleSettings(grace_s=30)),
    "playing_off_schedule": _Rule(_playing_off_schedule, SPEAKER, RuleSettings(for_s=300)),
    "amp_idle": _Rule(_amp_idle, SPEAKER, RuleSettings(for_s=30, threshold=5.0)),
    "board_dark": _Rule(_board("dark"), BOARDS, RuleSettings(for_s=120)),
    "board_blank": _Rule(_board("blank"), BOARDS, RuleSettings(for_s=300)),
    "board_frozen": _Rule(_board("frozen"), BOARDS, RuleSettings(for_s=60)),
    "source_sync_stale": _Rule(_source_sync_stale, ("district_led",), RuleSettings(threshold=3600)),
    "weak_signal": _Rule(_weak_signal, DEVICE_KINDS, RuleSettings(for_s=600, threshold=-105)),
    "overheating": _Rule(_overheating, DEVICE_KINDS, RuleSettings(for_s=120, threshold=75)),
    "storage_readonly": _Rule(_storage_readonly, DEVICE_KINDS, RuleSettings()),
    "reboot_loop": _Rule(_reboot_loop, DEVICE_KINDS, RuleSettings(count=3, window_s=1800)),
    "data_loss": _Rule(_data_loss, DEVICE_KINDS, RuleSettings(count=20, window_s=900)),
    "link_flapping": _Rule(_link_flapping, DEVICE_KINDS, RuleSettings(count=5, window_s=3600)),
}


@dataclass(frozen=True)
class RulesConfig:
    """Per-rule settings with per-kind overrides (``[rules.<fault>]``, ``[rules.<fault>.<kind>]``)."""

    overrides: Mapping[tuple[str, str | None], Mapping[str, Any]] = field(default_factory=dict)
    # backend.toml [definitions]: the "sounded" threshold (protocols/stored_data.py).
    sound_threshold_dbfs: float = stored_data.SOUND_THRESHOLD_DBFS
    # Resolved once per (fault, kind): rules are evaluated on every message and every tick.
    _resolved: dict[tuple[str, str | None], RuleSettings] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def settings(self, fault: str, kind: str | None) -> RuleSettings:
        """The effective settings of ``fault`` for a device of ``kind``."""
        key = (fault, kind)
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = replace(FAULTS[fault].defaults, **self.overrides.get((fault, None), {}))
            if kind:
                resolved = replace(resolved, **self.overrides.get((fault, kind), {}))
            self._resolved[key] = resolved
        return resolved

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RulesConfig:
        """Validate the ``[rules]`` table.

        Raises:
            RuleError: an unknown rule, kind or setting, or a value of the wrong type.
        """
        overrides: dict[tuple[str, str | None], dict[str, Any]] = {}
        for fault, table in raw.items():
            if fault not in FAULTS:
                raise RuleError(f"rules.{fault} is not a rule (rules: {', '.join(FAULTS)})")
            if not isinstance(table, Mapping):
                raise RuleError(f"rules.{fault} must be a table")
            for key, value in table.items():
                if key in DEVICE_KINDS:
                    if not isinstance(value, Mapping):
                        raise RuleError(f"rules.{fault}.{key} must be a table")
                    overrides[(fault, key)] = {
                        k: _setting(f"rules.{fault}.{key}", k, v) for k, v in value.items()
                    }
                else:
                    overrides.setdefault((fault, None), {})[key] = _setting(f"rules.{fault}", key, value)
        return cls(overrides)


_SETTING_TYPES = {f.name: f.type for f in fields(RuleSettings)}


def _setting(where: str, key: str, value: Any) -> Any:
    if key not in _SETTING_TYPES:
        known = ", ".join([*_SETTING_TYPES, *DEVICE_KINDS])
        raise RuleError(f"{where}.{key} is not a rule setting (known: {known})")
    wanted = str(_SETTING_TYPES[key])
    if wanted == "bool":
        ok = isinstance(value, bool)
    elif wanted.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or (key in ("for_s", "window_s") and value < 0):
        raise RuleError(f"{where}.{key} must be {wanted.split(' ')[0]} (non-negative), got {value!r}")
    return float(value) if wanted.startswith("float") else value


@dataclass
class _Tracker:
    pending_since: float | None = None
    open: bool = False
    since: float = 0.0
    unconfirmed: bool = False


class RuleEngine:
    """Evaluates every applicable rule for a device and reports open/clear transitions.

    Args:
        registry: Schedules, operating hours and device kinds.
        config: Rule settings.
        clock: Source of "now".
    """

    def __init__(self, registry: Registry, config: RulesConfig, clock: Clock) -> None:
        self.registry = registry
        self.config = config
        self.clock = clock
        self._trackers: dict[tuple[str, str], _Tracker] = {}
        self.sound_threshold_dbfs = config.sound_threshold_dbfs

    def restore(self, device: str, fault: str, since: float) -> None:
        """Mark a fault open (from alerts persisted before a restart), so it can clear."""
        if fault in FAULTS:
            self._trackers[(device, fault)] = _Tracker(pending_since=since, open=True, since=since)

    def open_faults(self) -> set[tuple[str, str]]:
        """``(device, fault)`` pairs currently open."""
        return {key for key, tracker in self._trackers.items() if tracker.open}

    def evaluate(self, st: DeviceState) -> list[Transition]:
        """Run the device's rules now; return the faults that opened or cleared."""
        now = self.clock.now()
        registered = self.registry.device(st.device)
        kind = registered.kind if registered else st.device_kind
        ctx = RuleContext(now, kind, self.registry, self.sound_threshold_dbfs)
        transitions = []
        for fault, rule in FAULTS.items():
            if kind is not None and kind not in rule.kinds:
                continue
            if fault != "offline" and not st.online:
                if fault in _HISTORY_FAULTS:
                    continue  # judged on past drops and boots: going dark is part of them
                # Offline: the evidence is gone; an open fault becomes unconfirmed.
                unconfirmed = self._unconfirm(st.device, fault, now, "offline")
                if unconfirmed is not None:
                    transitions.append(unconfirmed)
                continue
            settings = self.config.settings(fault, kind)
            result = rule.condition(st, ctx, settings) if settings.enabled else (False, "")
            if result is None:
                continue
            if result[0] is None:
                unconfirmed = self._unconfirm(st.device, fault, now, result[1])
                if unconfirmed is not None:
                    transitions.append(unconfirmed)
                continue
            since = st.down_since if fault == "offline" and st.down_since is not None else now
            transition = self._step(st.device, fault, (result[0], result[1]), settings.for_s, now, since)
            if transition is not None:
                transitions.append(transition)
        return transitions

    def unconfirmed_faults(self) -> set[tuple[str, str]]:
        """Open ``(device, fault)`` pairs whose evidence window ended: neither confirmed nor fixed."""
        return {key for key, tracker in self._trackers.items() if tracker.open and tracker.unconfirmed}

    def _unconfirm(self, device: str, fault: str, now: float, detail: str) -> Transition | None:
        """The evidence window ended: an open fault stays open, marked unconfirmed (once)."""
        tracker = self._trackers.get((device, fault))
        if tracker is None:
            return None
        tracker.pending_since = None
        if not tracker.open or tracker.unconfirmed:
            return None
        tracker.unconfirmed = True
        return Transition(device, fault, False, now, tracker.since, detail, unconfirmed=True)

    def _step(
        self, device: str, fault: str, result: tuple[bool, str], for_s: float, now: float, since: float
    ) -> Transition | None:
        active, detail = result
        tracker = self._trackers.setdefault((device, fault), _Tracker())
        if active:
            # Measured again: a fault kept open without evidence is confirmed again.
            tracker.unconfirmed = False
        if not active:
            tracker.pending_since = None
            tracker.unconfirmed = False
            if tracker.open:
                tracker.open = False
                return Transition(device, fault, False, now, tracker.since, detail)
            return None
        if tracker.open:
            return None
        if tracker.pending_since is None:
            tracker.pending_since = now
            tracker.since = min(since, now)
        if now - tracker.pending_since >= for_s:
            tracker.open = True
            return Transition(device, fault, True, now, tracker.since, detail)
        return None
