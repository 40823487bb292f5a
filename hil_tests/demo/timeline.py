"""The accelerated day: how the simulated clock maps onto the demo's real minutes.

Agents, broker and backend all run on real time (heartbeat timeouts, rule delays and
InfluxDB timestamps stay true). The demo plays a simulated day 05:00–22:00 as five acts of
chosen real lengths, each at its own speed-up:

====================  =============  ======================================
act                   simulated      real length
====================  =============  ======================================
Rạng sáng (dawn)      05:00–05:30    until the fleet is up (``settle_s``)
Bản tin sáng          05:30–06:30    ``bulletin_s``
Ban ngày (daytime)    06:30–17:00    ``day_s``
Bản tin chiều         17:00–18:00    ``bulletin_s``
Buổi tối (evening)    18:00–22:00    ``night_s``
====================  =============  ======================================

The registry's bulletin windows are the **real** local times (UTC+7) of the two bulletin
acts, under their real names, so the monitor's schedule-aware rules (dead air during a
bulletin) and the KPI report judge the demo exactly as they judge a district. Registry
times are whole minutes: with ``align`` the bulletins start on a minute boundary and last
whole minutes, so windows and acts coincide; without it the windows are rounded outwards
and the dead-air rule is switched off (silence at a window's edge would look like dead air).
Boards must be on from 06:00 to the end of the day, rounded inwards to whole minutes.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import datetime, time

from backend.registry import LOCAL_TZ, DailyWindow

MORNING = "Bản tin sáng"
EVENING = "Bản tin chiều"
_ACTS = (
    ("Rạng sáng", "05:00", "05:30"),
    (MORNING, "05:30", "06:30"),
    ("Ban ngày", "06:30", "17:00"),
    (EVENING, "17:00", "18:00"),
    ("Buổi tối", "18:00", "22:00"),
)


def sim_minutes(clock: str) -> float:
    """``"17:10"`` -> 1030.0 minutes after midnight."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + float(minutes)


def clock_text(minutes: float) -> str:
    """1030.0 -> ``"17:10"``."""
    whole = int(minutes)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def local_clock(ts: float, seconds: bool = True) -> str:
    """Epoch seconds as Vietnam local wall time, ``14:05:12``."""
    return datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%H:%M:%S" if seconds else "%H:%M")


@dataclass(frozen=True)
class Act:
    """One stretch of the simulated day and the real seconds it takes."""

    name: str
    sim_start: float
    sim_end: float
    real_start: float
    real_end: float

    @property
    def speedup(self) -> float:
        """Simulated seconds per real second."""
        return (self.sim_end - self.sim_start) * 60 / max(self.real_end - self.real_start, 1e-9)


@dataclass(frozen=True)
class Timeline:
    """The acts, their registry windows and the clock mapping."""

    acts: tuple[Act, ...]
    schedule: tuple[DailyWindow, ...]
    board_hours: tuple[DailyWindow, ...]
    aligned: bool

    @property
    def start(self) -> float:
        """Real time the simulated day starts (05:00)."""
        return self.acts[0].real_start

    @property
    def end(self) -> float:
        """Real time the simulated day ends (22:00)."""
        return self.acts[-1].real_end

    def act(self, name: str) -> Act:
        """The act called ``name``."""
        return next(a for a in self.acts if a.name == name)

    def act_at(self, ts: float) -> Act:
        """The act playing at real time ``ts`` (the first before, the last after)."""
        ends = [a.real_end for a in self.acts]
        return self.acts[min(bisect.bisect_right(ends, ts), len(self.acts) - 1)]

    def sim_at(self, ts: float) -> float:
        """Simulated minutes after midnight at real time ``ts``."""
        act = self.act_at(ts)
        share = (ts - act.real_start) / max(act.real_end - act.real_start, 1e-9)
        return act.sim_start + (act.sim_end - act.sim_start) * min(max(share, 0.0), 1.0)

    def real_at(self, sim: float) -> float:
        """Real time at which the simulated clock shows ``sim`` minutes."""
        for act in self.acts:
            if act.sim_start <= sim <= act.sim_end:
                share = (sim - act.sim_start) / (act.sim_end - act.sim_start)
                return act.real_start + share * (act.real_end - act.real_start)
        return self.start if sim < self.acts[0].sim_start else self.end


def plan_timeline(
    now: float, *, settle_s: float, bulletin_s: float, day_s: float, night_s: float, align: bool
) -> Timeline:
    """Place the acts on the real clock, starting ``now``.

    Args:
        now: real time the fleet starts coming up (sim 05:00).
        settle_s: at least this long for dawn (backend and agents starting).
        bulletin_s: real seconds of each bulletin hour (whole minutes when aligned).
        day_s: real seconds of the daytime act (whole minutes when aligned).
        night_s: real seconds of the evening act.
        align: start the morning bulletin on a minute boundary (see the module doc).
    """
    morning = now + settle_s
    if align:
        morning = math.ceil(morning / 60) * 60
        bulletin_s = max(60, math.ceil(bulletin_s / 60 - 1e-9) * 60)
        day_s = max(60, math.ceil(day_s / 60 - 1e-9) * 60)
    lengths = (morning - now, bulletin_s, day_s, bulletin_s, night_s)
    acts = []
    start = now
    for (name, sim_start, sim_end), length in zip(_ACTS, lengths, strict=True):
        acts.append(Act(name, sim_minutes(sim_start), sim_minutes(sim_end), start, start + length))
        start += length
    first, first_end = _window(acts[1].real_start, acts[1].real_end, MORNING)
    # The evening window may not overlap the morning one (same minute when not aligned).
    second, _ = _window(max(acts[3].real_start, first_end), acts[3].real_end, EVENING)
    # Boards operate from 06:00 (06:30 once rounded to a whole minute) to the last whole
    # minute of the day, so no operating minute lies outside the agents' lifetime.
    timeline = Timeline(tuple(acts), (first, second), (), align)
    opens = math.ceil(timeline.real_at(sim_minutes("06:00")) / 60) * 60
    closes = max(math.floor(timeline.end / 60) * 60, opens + 60)
    hours, _ = _window(opens, closes, "")
    return Timeline(tuple(acts), (first, second), (hours,), align)


def _window(start: float, end: float, name: str) -> tuple[DailyWindow, float]:
    """Whole local minutes covering ``start``..``end``, and the real time the window ends."""
    first = math.floor(start / 60) * 60
    last = max(math.ceil(end / 60) * 60, first + 60)
    return DailyWindow(_hhmm(first), _hhmm(last), name), last


def _hhmm(ts: float) -> time:
    local = datetime.fromtimestamp(ts, LOCAL_TZ)
    return time(local.hour, local.minute)
