"""The plan's indicators for the district, from per-device results and the registry.

Pure: it reads a `Measurements` (what `backend.kpi.queries` fetched), the registry and the
definitions, and takes the time of the report as an argument. Every commune gets a verdict
per indicator: met, not met, or unknown when missing data decides; the district value is
the share of units met, and its verdict is unknown when counting the unknown units as
met or as failed would change it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable

from backend.kpi.causes import outage_hours
from backend.kpi.definitions import INDICATORS, Definitions, target_for
from backend.kpi.devices import (
    board_result,
    bounded_verdict,
    cluster_bulletins,
    cluster_result,
    crash_free,
    device_coverage,
)
from backend.kpi.model import (
    MET,
    NOT_MET,
    UNKNOWN,
    BoardResult,
    BulletinResult,
    ClusterResult,
    IndicatorResult,
    KpiReport,
    Measurements,
    Period,
    UnitResult,
    WebsiteResult,
)
from backend.registry import Commune, Registry

__all__ = ["compute_report", "data_coverage_pct"]

ProgressFn = Callable[[str], None]


def compute_report(
    registry: Registry,
    m: Measurements,
    period: Period,
    defs: Definitions,
    *,
    now_ms: int,
    progress: ProgressFn | None = None,
) -> KpiReport:
    """Compute every indicator with its evidence.

    Args:
        registry: the fleet registry (communes, devices, schedules, operating hours).
        m: the readings of the period (see `backend.kpi.queries.fetch_measurements`).
        period: whole local days.
        defs: thresholds and targets.
        now_ms: when the report is made (printed on it).
        progress: called with a short line per step (the CLI prints it on stderr).
    """
    say = progress or (lambda _line: None)
    devices = list(registry.devices.values())
    say(f"bulletins of {sum(d.kind == 'speaker_cluster' for d in devices)} speaker clusters")
    bulletins: list[BulletinResult] = []
    clusters: dict[str, ClusterResult] = {}
    for device in devices:
        if device.kind == "speaker_cluster":
            mine = cluster_bulletins(device, registry, m, period, defs)
            bulletins.extend(mine)
            clusters[device.id] = cluster_result(device, mine, defs)
    say("boards over their operating hours")
    boards = {
        d.id: board_result(d, registry, m, period, defs) for d in devices if d.kind != "speaker_cluster"
    }
    say("websites")
    websites = {c.id: website_result(c, m, defs) for c in registry.communes.values()}
    say("data coverage")
    coverage = tuple(device_coverage(d, m, period, defs) for d in devices)
    health = tuple(crash_free(d, m, period) for d in devices)
    causes = tuple(outage_hours(d, m, period) for d in devices)
    year = period.target_year
    communes = list(registry.communes.values())
    units = {
        "1.1": [_radio_unit(c, registry, clusters) for c in communes],
        "1.2": [_ip_unit(c, registry, clusters) for c in communes],
        "1.3": [_website_unit(c, websites[c.id]) for c in communes],
        "1.4": [_eboard_unit("1.4", c, registry, boards) for c in communes if c.type == "town"],
        "1.5": [_eboard_unit("1.5", c, registry, boards) for c in communes if c.type == "commune"],
        "2.2": _led_units(registry, boards),
    }
    indicators = tuple(_district(i, units[i], defs, year) for i in INDICATORS)
    return KpiReport(
        district=registry.district,
        period=period,
        generated_ms=now_ms,
        target_year=year,
        indicators=indicators,
        clusters=tuple(clusters.values()),
        bulletins=tuple(bulletins),
        boards=tuple(boards.values()),
        websites=tuple(websites.values()),
        coverage=coverage,
        crash_free=health,
        outage_causes=causes,
    )


# Unit reasons that come from the registry, not from measurements.
_REGISTRY_REASONS = ("no_board", "not_ip", "no_website")


def data_coverage_pct(report: KpiReport) -> float | None:
    """Share of the devices' expected telemetry buckets that held data (None: no device)."""
    values = [c.coverage_pct for c in report.coverage if c.coverage_pct is not None]
    return sum(values) / len(values) if values else None


def _district(indicator: str, units: list[UnitResult], defs: Definitions, year: int) -> IndicatorResult:
    target, plan_year = target_for(defs, indicator, year)
    met = sum(u.verdict == MET for u in units)
    unknown = sum(u.verdict == UNKNOWN for u in units)
    if indicator == "2.2":
        # A yes/no indicator: the district has a board that qualifies, or not.
        value: float | None = 100.0 if met else 0.0
        high: float | None = 100.0 if met or unknown else 0.0
    elif units:
        value = 100.0 * met / len(units)
        high = 100.0 * (met + unknown) / len(units)
    else:
        value = high = None
    measured = sum(u.verdict in (MET, NOT_MET) and u.reason not in _REGISTRY_REASONS for u in units)
    if units and (met + sum(u.verdict == NOT_MET for u in units) == 0 or (measured == 0 and unknown)):
        # No unit has data that decides it: "no data", never a 0 % nor a pass on nothing.
        value = high = None
    if value is None or high is None:
        verdict = MET if target == 0 and not units else UNKNOWN
    else:
        verdict = bounded_verdict(value, high, target)
    if verdict == MET and units and measured == 0:
        # Met only through registry facts (e.g. a 0 % target): nothing was measured.
        verdict = UNKNOWN
    return IndicatorResult(indicator, target, plan_year, tuple(units), met, unknown, value, high, verdict)


def _radio_unit(c: Commune, registry: Registry, clusters: dict[str, ClusterResult]) -> UnitResult:
    mine = [clusters[d.id] for d in registry.devices_in(c.id) if d.id in clusters]
    if not mine:
        return UnitResult("1.1", c.id, c.name, UNKNOWN, None, None, "no_devices")
    passing = sum(r.verdict == MET for r in mine)
    value = 100.0 * passing / len(mine)
    scheduled = sum(r.scheduled for r in mine)
    coverage = 100.0 * (scheduled - sum(r.no_data for r in mine)) / scheduled if scheduled else None
    failed = [r.hamlet for r in mine if r.verdict == NOT_MET]
    if failed:
        return UnitResult("1.1", c.id, c.name, NOT_MET, value, coverage, "failed_hamlets", ", ".join(failed))
    undecided = [r.hamlet for r in mine if r.verdict == UNKNOWN]
    if undecided:
        return UnitResult("1.1", c.id, c.name, UNKNOWN, value, coverage, "no_data", ", ".join(undecided))
    return UnitResult("1.1", c.id, c.name, MET, value, coverage, "ok")


def _ip_unit(c: Commune, registry: Registry, clusters: dict[str, ClusterResult]) -> UnitResult:
    if c.radio_system != "ip":
        return UnitResult("1.2", c.id, c.name, NOT_MET, None, None, "not_ip", c.radio_system)
    mine = [clusters[d.id] for d in registry.devices_in(c.id) if d.id in clusters]
    if not mine:
        return UnitResult("1.2", c.id, c.name, UNKNOWN, None, None, "no_devices")
    sounded = sum(r.sounded for r in mine)
    if sounded:
        return UnitResult("1.2", c.id, c.name, MET, None, None, "sounded", str(sounded))
    if any(r.no_data or not r.scheduled for r in mine):
        return UnitResult("1.2", c.id, c.name, UNKNOWN, None, None, "no_data")
    return UnitResult("1.2", c.id, c.name, NOT_MET, None, None, "never_sounded")


def website_result(c: Commune, m: Measurements, defs: Definitions) -> WebsiteResult:
    """Indicator 1.3 for one commune from its website checks."""
    checks = sorted(m.websites.get(c.id, []), key=lambda w: w.ts_ms)
    if c.website is None:
        return WebsiteResult(c.id, None, 0, 0, None, None, None, (), NOT_MET)
    if not checks:
        return WebsiteResult(c.id, c.website, 0, 0, None, None, None, (), UNKNOWN)
    ok = sum(w.ok for w in checks)
    pct = 100.0 * ok / len(checks)
    latencies = [w.latency_ms for w in checks if w.ok and w.latency_ms is not None]
    tls = [w.tls_days_left for w in checks if w.tls_days_left is not None]
    return WebsiteResult(
        c.id,
        c.website,
        len(checks),
        ok,
        pct,
        statistics.median(latencies) if latencies else None,
        tls[-1] if tls else None,
        tuple(w for w in checks if not w.ok),
        MET if pct >= defs.website_ok_pct - 1e-9 else NOT_MET,
    )


def _website_unit(c: Commune, w: WebsiteResult) -> UnitResult:
    if w.url is None:
        return UnitResult("1.3", c.id, c.name, NOT_MET, None, None, "no_website")
    if not w.checks:
        return UnitResult("1.3", c.id, c.name, UNKNOWN, None, None, "not_probed", w.url)
    reason = "ok" if w.verdict == MET else "unreachable"
    return UnitResult("1.3", c.id, c.name, w.verdict, w.ok_pct, None, reason, f"{w.ok_checks}/{w.checks}")


def _eboard_unit(
    indicator: str, c: Commune, registry: Registry, boards: dict[str, BoardResult]
) -> UnitResult:
    mine = [boards[d.id] for d in registry.devices_in(c.id) if d.kind == "eboard"]
    if not mine:
        return UnitResult(indicator, c.id, c.name, NOT_MET, None, None, "no_board")
    best = max(mine, key=lambda b: (b.verdict == MET, b.value_pct or 0.0))
    if any(b.verdict == MET for b in mine):
        verdict, reason = MET, "ok"
    elif all(b.verdict == NOT_MET for b in mine):
        verdict, reason = NOT_MET, "board_dark"
    else:
        verdict, reason = UNKNOWN, "no_data"
    value, coverage = best.value_pct, best.coverage_pct
    return UnitResult(indicator, c.id, c.name, verdict, value, coverage, reason, device=best.device)


def _led_units(registry: Registry, boards: dict[str, BoardResult]) -> list[UnitResult]:
    out = []
    for board in (b for b in boards.values() if b.kind == "district_led"):
        commune = registry.commune(board.commune)
        name = commune.name if commune else board.commune
        reason = {MET: "ok", NOT_MET: "led_offline", UNKNOWN: "no_data"}[board.verdict]
        out.append(
            UnitResult(
                "2.2",
                board.commune,
                name,
                board.verdict,
                board.value_pct,
                board.coverage_pct,
                reason,
                board.hamlet,
                board.device,
            )
        )
    return out


def failed_bulletins(bulletins: Iterable[BulletinResult]) -> list[BulletinResult]:
    """Bulletins that did not sound (silent or without data), in time order."""
    return sorted((b for b in bulletins if b.status != "sounded"), key=lambda b: (b.start_ms, b.device))
