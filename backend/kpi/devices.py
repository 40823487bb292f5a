"""Per-device results: each hamlet cluster in each bulletin, each board over its hours, coverage.

Telemetry is sent on change plus periodic snapshots, so a reading stands for the device's
state until the next reading, for at most a hold time (`Definitions.audio_hold_s`,
``display_hold_s``); past that the state is unknown (no data), never assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta

from backend.kpi.definitions import Definitions
from backend.kpi.model import (
    MET,
    NOT_MET,
    UNKNOWN,
    AudioReading,
    BoardResult,
    BulletinResult,
    ClusterResult,
    CrashFree,
    DeviceCoverage,
    DisplayReading,
    Interval,
    Measurements,
    Period,
    daily_occurrences,
    intersect,
    local_midnight_ms,
    total,
    union,
)
from backend.registry import Device, Registry
from protocols import stored_data

__all__ = [
    "board_result",
    "bounded_verdict",
    "cluster_bulletins",
    "cluster_result",
    "crash_free",
    "device_coverage",
    "device_start_ms",
    "operating_intervals",
    "subtract",
]

_EPS = 1e-9


def bounded_verdict(low_pct: float, high_pct: float, threshold_pct: float) -> str:
    """MET if even the pessimistic value reaches the threshold, NOT_MET if even the optimistic
    one (every unknown counted a success) misses it, otherwise UNKNOWN: the missing data decides.
    """
    if low_pct >= threshold_pct - _EPS:
        return MET
    if high_pct < threshold_pct - _EPS:
        return NOT_MET
    return UNKNOWN


def subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The parts of ``a`` not in ``b``."""
    out: list[Interval] = []
    holes = union(b)
    for start, end in union(a):
        cursor = start
        for h_start, h_end in holes:
            if h_end <= cursor or h_start >= end:
                continue
            if h_start > cursor:
                out.append((cursor, h_start))
            cursor = max(cursor, h_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def device_start_ms(device: Device, period: Period) -> int:
    """Where the device's period starts: the period start, or its installation day if later."""
    start = period.start_ms
    if device.installed is not None:
        start = max(start, local_midnight_ms(device.installed))
    return start


def _audio_spans(readings: list[AudioReading], hold_ms: int) -> list[tuple[int, int, AudioReading]]:
    ordered = sorted(readings, key=lambda r: r.ts_ms)
    spans = []
    for i, reading in enumerate(ordered):
        end = reading.ts_ms + hold_ms
        if i + 1 < len(ordered):
            following = ordered[i + 1]
            end = min(end, max(reading.ts_ms, following.ts_ms - int(following.window_s * 1000)))
        spans.append((reading.ts_ms - int(reading.window_s * 1000), end, reading))
    return spans


def _present(m: Measurements, device: str, start_ms: int, end_ms: int, bucket_ms: int) -> bool:
    if any(start_ms <= r.ts_ms < end_ms for r in m.audio.get(device, ())):
        return True
    return any(b < end_ms and b + bucket_ms > start_ms for b in m.heartbeat_buckets.get(device, ()))


def cluster_bulletins(
    device: Device, registry: Registry, m: Measurements, period: Period, defs: Definitions
) -> list[BulletinResult]:
    """Every scheduled bulletin of the device's commune in the period, and how it went there."""
    commune = registry.commune(device.commune)
    if commune is None:
        return []
    first = device_start_ms(device, period)
    spans = _audio_spans(m.audio.get(device.id, []), int(defs.audio_hold_s * 1000))
    threshold = defs.dead_air_threshold_dbfs
    sounded = union(
        (s, e) for s, e, r in spans if stored_data.sounded(r.playing, r.dead_air, r.rms_dbfs, threshold)
    )
    out = []
    for day, window, start, end in daily_occurrences(commune.schedule, period.first_day, period.last_day):
        if start < first or end > period.end_ms:
            continue
        pct = 100.0 * total(intersect(sounded, [(start, end)])) / (end - start)
        if pct >= defs.bulletin_sounded_pct - _EPS:
            status = "sounded"
        elif _present(m, device.id, start, end, defs.bucket_s * 1000):
            status = "silent"
        else:
            status = "no_data"
        where = (device.id, device.commune, device.hamlet)
        out.append(BulletinResult(*where, day, window.label(), start, end, status, pct))
    return out


def cluster_result(device: Device, bulletins: list[BulletinResult], defs: Definitions) -> ClusterResult:
    """Indicator 1.1 for one hamlet cluster from its bulletins."""
    scheduled = len(bulletins)
    counts = {s: sum(1 for b in bulletins if b.status == s) for s in ("sounded", "silent", "no_data")}
    if scheduled == 0:
        return ClusterResult(device.id, device.commune, device.hamlet, 0, 0, 0, 0, None, UNKNOWN)
    low = 100.0 * counts["sounded"] / scheduled
    high = 100.0 * (counts["sounded"] + counts["no_data"]) / scheduled
    return ClusterResult(
        device.id,
        device.commune,
        device.hamlet,
        scheduled,
        counts["sounded"],
        counts["silent"],
        counts["no_data"],
        low,
        bounded_verdict(low, high, defs.cluster_bulletins_pct),
    )


def operating_intervals(device: Device, registry: Registry, period: Period) -> list[Interval]:
    """The device's operating hours in the period (own hours, else its commune's board hours)."""
    start = device_start_ms(device, period)
    hours = device.operating_hours
    if not hours:
        commune = registry.commune(device.commune)
        hours = commune.board_hours if commune else ()
    if not hours:
        return [(start, period.end_ms)] if period.end_ms > start else []
    occurrences = daily_occurrences(hours, period.first_day - timedelta(days=1), period.last_day)
    return intersect(((s, e) for _, _, s, e in occurrences), [(start, period.end_ms)])


GoodSpan = Callable[[DisplayReading, int, int], "tuple[int, int] | None"]


def eboard_good(reading: DisplayReading, start: int, end: int) -> tuple[int, int] | None:
    """On and showing content: power on, not blank, not frozen."""
    ok = stored_data.board_showing(reading.power, reading.blank, reading.frozen)
    return (start, end) if ok else None


def led_good(max_age_s: float) -> GoodSpan:
    """Online with a provincial source sync younger than ``max_age_s`` (the age grows while held)."""

    def good(reading: DisplayReading, start: int, end: int) -> tuple[int, int] | None:
        age = reading.source_sync_age_s
        if age is None or age > max_age_s:
            return None
        return (start, min(end, start + int((max_age_s - age) * 1000)))

    return good


def _bad_reason(reading: DisplayReading, kind: str) -> str:
    if kind == "district_led":
        return "no_sync" if reading.source_sync_age_s is None else "sync_stale"
    if not reading.power:
        return "power_off"
    return "blank" if reading.blank else "frozen"


def board_result(
    device: Device, registry: Registry, m: Measurements, period: Period, defs: Definitions
) -> BoardResult:
    """Indicators 1.4/1.5 (e-board) or 2.2 (district LED) for one board over its operating hours."""
    is_led = device.kind == "district_led"
    good_span = led_good(defs.led_sync_max_h * 3600) if is_led else eboard_good
    operating = operating_intervals(device, registry, period)
    ordered = sorted(m.display.get(device.id, []), key=lambda r: r.ts_ms)
    hold_ms = int(defs.display_hold_s * 1000)
    covered: list[Interval] = []
    good: list[Interval] = []
    bad: list[tuple[int, int, str]] = []
    for i, reading in enumerate(ordered):
        end = reading.ts_ms + hold_ms
        if i + 1 < len(ordered):
            end = min(end, ordered[i + 1].ts_ms)
        covered.append((reading.ts_ms, end))
        span = good_span(reading, reading.ts_ms, end)
        if span is not None:
            good.append(span)
        if span is None or span[1] < end:
            bad_from = reading.ts_ms if span is None else span[1]
            for s, e in intersect([(bad_from, end)], operating):
                _append_bad(bad, s, e, _bad_reason(reading, device.kind))
    op_ms = total(operating)
    covered_ms = total(intersect(covered, operating))
    good_ms = total(intersect(good, operating))
    no_data = subtract(operating, covered)
    if op_ms == 0:
        value = coverage = None
        verdict = UNKNOWN
    else:
        value = 100.0 * good_ms / op_ms
        coverage = 100.0 * covered_ms / op_ms
        # For 2.2 "online" is the measured quantity, so time without data counts as offline.
        high = value if is_led else 100.0 * (good_ms + op_ms - covered_ms) / op_ms
        verdict = bounded_verdict(value, high, defs.led_online_pct if is_led else defs.board_on_pct)
        if covered_ms == 0 and not is_led:
            value = None  # nothing measured: no data, not 0 %
    return BoardResult(
        device.id,
        device.commune,
        device.hamlet,
        device.kind,
        op_ms / 1000,
        good_ms / 1000,
        covered_ms / 1000,
        value,
        coverage,
        verdict,
        tuple(bad),
        tuple(no_data),
    )


def _append_bad(bad: list[tuple[int, int, str]], start: int, end: int, reason: str) -> None:
    if bad and bad[-1][2] == reason and bad[-1][1] >= start:
        bad[-1] = (bad[-1][0], max(bad[-1][1], end), reason)
    else:
        bad.append((start, end, reason))


def device_coverage(device: Device, m: Measurements, period: Period, defs: Definitions) -> DeviceCoverage:
    """Share of the period's buckets with any telemetry from the device, and its gaps."""
    bucket = defs.bucket_s * 1000
    start, end = device_start_ms(device, period), period.end_ms
    present = set(m.heartbeat_buckets.get(device.id, ()))
    present.update(r.ts_ms // bucket * bucket for r in m.audio.get(device.id, ()))
    present.update(r.ts_ms // bucket * bucket for r in m.display.get(device.id, ()))
    expected = list(range(start // bucket * bucket, end, bucket))
    missing = [(max(b, start), min(b + bucket, end)) for b in expected if b not in present]
    gaps = tuple(g for g in union(missing) if g[1] - g[0] >= defs.gap_min_s * 1000)
    down = tuple(d for d in m.down.get(device.id, ()) if d.end_ms > start and d.start_ms < end)
    pct = 100.0 * (len(expected) - len(missing)) / len(expected) if expected else None
    return DeviceCoverage(
        device.id, device.commune, device.hamlet, device.kind, max(0, end - start) / 1000, pct, gaps, down
    )


def crash_free(device: Device, m: Measurements, period: Period) -> CrashFree:
    """Crash-free hours: hours with any heartbeat, less those in which a crash boot happened."""
    start, end = device_start_ms(device, period), period.end_ms
    hour = 3_600_000
    reported = {b // hour for b in m.heartbeat_buckets.get(device.id, ()) if start <= b < end}
    crashes = [ts for ts in m.crashes.get(device.id, {}).values() if start <= ts < end]
    crashed = {ts // hour for ts in crashes} & reported
    return CrashFree(
        device.id, device.commune, device.hamlet, len(reported), len(reported - crashed), len(crashes)
    )
