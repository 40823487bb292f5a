"""The KPI report's inputs (readings from InfluxDB) and results, and the interval arithmetic.

Times are epoch milliseconds (UTC) throughout; local dates (UTC+7) appear only where a
person reads them: the report period and the day of a bulletin. Intervals are half-open
``(start_ms, end_ms)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from backend.registry import LOCAL_TZ, DailyWindow

__all__ = [
    "MET",
    "NOT_MET",
    "UNKNOWN",
    "AudioReading",
    "BoardResult",
    "BulletinResult",
    "ClusterResult",
    "DeviceCoverage",
    "DisplayReading",
    "DownInterval",
    "IndicatorResult",
    "Interval",
    "KpiReport",
    "Measurements",
    "Period",
    "UnitResult",
    "WebsiteCheck",
    "WebsiteResult",
    "daily_occurrences",
    "intersect",
    "local_midnight_ms",
    "total",
    "union",
]

MET = "met"
NOT_MET = "not_met"
UNKNOWN = "unknown"

Interval = tuple[int, int]


def local_midnight_ms(day: date) -> int:
    """Epoch ms of 00:00 Vietnam time on ``day``."""
    return int(datetime.combine(day, time(0), LOCAL_TZ).timestamp() * 1000)


@dataclass(frozen=True)
class Period:
    """Whole local days ``first_day`` .. ``last_day`` (inclusive), Vietnam time."""

    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise ValueError(f"the period ends ({self.last_day}) before it starts ({self.first_day})")

    @property
    def start_ms(self) -> int:
        """00:00 local on the first day."""
        return local_midnight_ms(self.first_day)

    @property
    def end_ms(self) -> int:
        """24:00 local on the last day (exclusive)."""
        return local_midnight_ms(self.last_day + timedelta(days=1))

    @property
    def days(self) -> int:
        """Number of days."""
        return (self.last_day - self.first_day).days + 1

    @property
    def target_year(self) -> int:
        """The year whose targets apply: the year the period ends in."""
        return self.last_day.year

    @property
    def spans_years(self) -> bool:
        """True when the period runs over a new year."""
        return self.first_day.year != self.last_day.year


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, merged, non-empty intervals."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The parts common to both sets of intervals."""
    left, right = union(a), union(b)
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if end > start:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def total(intervals: Iterable[Interval]) -> int:
    """Total length (ms) of the union of ``intervals``."""
    return sum(end - start for start, end in union(intervals))


def daily_occurrences(
    windows: Iterable[DailyWindow], first_day: date, last_day: date
) -> list[tuple[date, DailyWindow, int, int]]:
    """Each day's occurrence of each window: ``(local day, window, start_ms, end_ms)``.

    A window whose end is not after its start runs past midnight into the next day.
    """
    out = []
    day = first_day
    while day <= last_day:
        for window in windows:
            start = datetime.combine(day, window.start, LOCAL_TZ)
            end_day = day + timedelta(days=1) if window.end <= window.start else day
            end = datetime.combine(end_day, window.end, LOCAL_TZ)
            out.append((day, window, int(start.timestamp() * 1000), int(end.timestamp() * 1000)))
        day += timedelta(days=1)
    return sorted(out, key=lambda o: o[2])


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioReading:
    """One ``audio`` point: RMS over the ``window_s`` seconds ending at ``ts_ms``, with the
    agent's ``playing`` and ``dead_air`` flags (what `protocols.stored_data.sounded` reads)."""

    ts_ms: int
    rms_dbfs: float
    window_s: float
    playing: bool = True
    dead_air: bool = False


@dataclass(frozen=True)
class DisplayReading:
    """One ``display`` point."""

    ts_ms: int
    power: bool
    blank: bool
    frozen: bool
    source_sync_age_s: float | None = None


@dataclass(frozen=True)
class WebsiteCheck:
    """One ``website_check`` point."""

    ts_ms: int
    url: str
    ok: bool
    status: int | None
    latency_ms: float | None
    tls_days_left: float | None
    error: str | None


@dataclass(frozen=True)
class DownInterval:
    """A ``down_interval`` the monitor recorded (device offline)."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class OutageRecord:
    """An alerted outage the monitor settled: when it began, how long, and its likely cause."""

    since_ms: int
    duration_s: float
    cause: str


@dataclass
class Measurements:
    """Everything the computation reads, per device (or commune for websites)."""

    audio: dict[str, list[AudioReading]] = field(default_factory=dict)
    display: dict[str, list[DisplayReading]] = field(default_factory=dict)
    heartbeat_buckets: dict[str, set[int]] = field(default_factory=dict)
    websites: dict[str, list[WebsiteCheck]] = field(default_factory=dict)
    down: dict[str, list[DownInterval]] = field(default_factory=dict)
    # device -> boot_id -> when it booted after a crash (epoch ms)
    crashes: dict[str, dict[str, int]] = field(default_factory=dict)
    # device -> its settled outages (the monitor's ``outage`` points with ``duration_s``)
    outages: dict[str, list[OutageRecord]] = field(default_factory=dict)


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulletinResult:
    """One hamlet cluster in one scheduled bulletin."""

    device: str
    commune: str
    hamlet: str
    day: date
    name: str
    start_ms: int
    end_ms: int
    status: str  # sounded, silent, no_data
    sounded_pct: float


@dataclass(frozen=True)
class ClusterResult:
    """A hamlet speaker cluster over the period (indicator 1.1)."""

    device: str
    commune: str
    hamlet: str
    scheduled: int
    sounded: int
    silent: int
    no_data: int
    sounded_pct: float | None
    verdict: str


@dataclass(frozen=True)
class BoardResult:
    """An e-board (1.4/1.5) or the district LED board (2.2) over its operating hours."""

    device: str
    commune: str
    hamlet: str
    kind: str
    operating_s: float
    good_s: float
    covered_s: float
    value_pct: float | None
    coverage_pct: float | None
    verdict: str
    bad_intervals: tuple[tuple[int, int, str], ...] = ()
    no_data_intervals: tuple[Interval, ...] = ()


@dataclass(frozen=True)
class WebsiteResult:
    """A commune website's checks in the period (indicator 1.3)."""

    commune: str
    url: str | None
    checks: int
    ok_checks: int
    ok_pct: float | None
    median_latency_ms: float | None
    min_tls_days_left: float | None
    failures: tuple[WebsiteCheck, ...]
    verdict: str


@dataclass(frozen=True)
class UnitResult:
    """One commune/town (or the district board) under one indicator."""

    indicator: str
    commune: str
    commune_name: str
    verdict: str
    value_pct: float | None
    coverage_pct: float | None
    reason: str  # a code the renderer words: ok, failed_hamlets, no_devices, no_data, ...
    detail: str = ""
    device: str = ""


@dataclass(frozen=True)
class IndicatorResult:
    """One indicator of the plan for the district."""

    id: str
    target_pct: float
    target_year: int
    units: tuple[UnitResult, ...]
    met_units: int
    unknown_units: int
    value_pct: float | None
    value_high_pct: float | None
    verdict: str

    @property
    def in_scope(self) -> int:
        """Units the indicator counts."""
        return len(self.units)


@dataclass(frozen=True)
class DeviceCoverage:
    """How much of the period a device reported telemetry, and its gaps."""

    device: str
    commune: str
    hamlet: str
    kind: str
    expected_s: float
    coverage_pct: float | None
    gaps: tuple[Interval, ...]
    down: tuple[DownInterval, ...]


@dataclass(frozen=True)
class CrashFree:
    """Crash-free hours of one device: hours it reported, and those without a crash boot."""

    device: str
    commune: str
    hamlet: str
    operating_h: int
    crash_free_h: int
    crashes: int

    @property
    def crash_free_pct(self) -> float | None:
        """Share of reported hours without a crash (None: the device reported no hour)."""
        return 100.0 * self.crash_free_h / self.operating_h if self.operating_h else None


@dataclass(frozen=True)
class OutageHours:
    """One device's alerted outage hours in the period, by likely cause (``mains``, ``device``,
    ``cellular``, ``unknown``): evidence of whose each outage was; all of them still count
    against the indicators."""

    device: str
    commune: str
    hamlet: str
    hours: dict[str, float]
    outages: dict[str, int]


@dataclass(frozen=True)
class KpiReport:
    """Everything a report shows."""

    district: str
    period: Period
    generated_ms: int
    target_year: int
    indicators: tuple[IndicatorResult, ...]
    clusters: tuple[ClusterResult, ...]
    bulletins: tuple[BulletinResult, ...]
    boards: tuple[BoardResult, ...]
    websites: tuple[WebsiteResult, ...]
    coverage: tuple[DeviceCoverage, ...]
    crash_free: tuple[CrashFree, ...] = ()
    outage_causes: tuple[OutageHours, ...] = ()

    def indicator(self, indicator_id: str) -> IndicatorResult:
        """The result of one indicator; KeyError if it was not computed."""
        for result in self.indicators:
            if result.id == indicator_id:
                return result
        raise KeyError(f"indicator {indicator_id!r} is not in the report")
