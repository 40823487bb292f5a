"""The KPI report as one self-contained HTML page (Jinja2 template, charts as data URIs).

`report_context` turns a `KpiReport` into plain rows of already-formatted text, so the
template only lays them out and the PDF, made from the same HTML, shows the same words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.kpi.causes import CAUSES
from backend.kpi.charts import availability_chart, bulletin_heatmap
from backend.kpi.compute import data_coverage_pct, failed_bulletins
from backend.kpi.definitions import Definitions, explain, title
from backend.kpi.i18n import Text
from backend.kpi.model import KpiReport, UnitResult
from backend.registry import Registry

__all__ = ["EVIDENCE_ROWS", "render_html", "report_context"]

TEMPLATES = Path(__file__).parent / "templates"
# Evidence lists longer than this are cut in the page (the CSV/JSON files have every row).
EVIDENCE_ROWS = 60


def _unit_evidence(unit: UnitResult, t: Text) -> str:
    if unit.reason == "ok":
        return ""
    return t(f"reason.{unit.reason}", detail=unit.detail)


def _limited(rows: list[dict[str, str]], t: Text) -> tuple[list[dict[str, str]], str]:
    if len(rows) <= EVIDENCE_ROWS:
        return rows, ""
    return rows[:EVIDENCE_ROWS], t("evidence.more", n=len(rows) - EVIDENCE_ROWS)


def report_context(
    report: KpiReport, registry: Registry, defs: Definitions, lang: str, source: str = ""
) -> dict[str, Any]:
    """Everything the template shows, formatted in ``lang``."""
    from backend.kpi.provenance import not_measured, provenance

    t = Text(lang)
    names = {c.id: c.name for c in registry.communes.values()}
    hamlets = {d.id: d.hamlet for d in registry.devices.values()}
    p = report.period
    notes = [t("target_year", year=report.target_year)]
    if p.spans_years:
        notes.append(
            t("spans_years", first=t.day(p.first_day), last=t.day(p.last_day), year=report.target_year)
        )
    indicators = []
    for ind in report.indicators:
        if ind.target_year != report.target_year:
            notes.append(f"{ind.id}: " + t("plan_year", year=report.target_year, plan=ind.target_year))
        yes_no = ind.id == "2.2"
        measured = (t("yes") if ind.value_pct else t("no")) if yes_no else t.pct(ind.value_pct)
        units = [
            {
                "commune": u.commune_name + (f" — {u.device}" if u.device and yes_no else ""),
                "verdict": t.verdict(u.verdict),
                "verdict_class": u.verdict,
                "value": t.pct(u.value_pct),
                "coverage": t.pct(u.coverage_pct),
                "evidence": _unit_evidence(u, t),
            }
            for u in ind.units
        ]
        indicators.append(
            {
                "id": ind.id,
                "title": title(ind.id, lang),
                "target": (t("yes") if ind.target_pct else t("no")) if yes_no else t.pct(ind.target_pct),
                "measured": measured,
                "units": f"{ind.met_units} / {ind.unknown_units} / {ind.in_scope}",
                "verdict": t.verdict(ind.verdict),
                "verdict_class": ind.verdict,
                "definition": explain(ind.id, defs, lang),
                "rows": units,
                "empty": t("no_led") if yes_no and not units else "",
            }
        )
    failed = [
        {
            "commune": names.get(b.commune, b.commune),
            "hamlet": b.hamlet,
            "day": t.day(b.day),
            "bulletin": b.name,
            "status": t(f"status.{b.status}"),
            "status_class": b.status,
            "sounded": t.pct(b.sounded_pct),
        }
        for b in failed_bulletins(report.bulletins)
    ]
    failed, failed_more = _limited(failed, t)
    clusters = [
        {
            "commune": names.get(c.commune, c.commune),
            "hamlet": c.hamlet,
            "device": c.device,
            "counts": f"{c.sounded} / {c.silent} / {c.no_data} / {c.scheduled}",
            "value": t.pct(c.sounded_pct),
            "verdict": t.verdict(c.verdict),
            "verdict_class": c.verdict,
        }
        for c in report.clusters
    ]
    types = {c.id: c.type for c in registry.communes.values()}
    board_rows: dict[str, list[dict[str, Any]]] = {"1.4": [], "1.5": [], "2.2": []}
    for b in report.boards:
        intervals = [f"{t.span(s, e)} ({t(f'bad.{reason}')})" for s, e, reason in b.bad_intervals]
        intervals += [f"{t.span(s, e)} ({t('bad.no_data')})" for s, e in b.no_data_intervals]
        indicator = "1.4" if types.get(b.commune) == "town" else "1.5"
        if b.kind == "district_led":
            indicator = "2.2"
        board_rows[indicator].append(
            {
                "commune": names.get(b.commune, b.commune),
                "device": b.device,
                "hamlet": b.hamlet,
                "operating": t.number(b.operating_s / 3600),
                "value": t.pct(b.value_pct),
                "coverage": t.pct(b.coverage_pct),
                "verdict": t.verdict(b.verdict),
                "verdict_class": b.verdict,
                "intervals": intervals[:20],
                "more": t("evidence.more", n=len(intervals) - 20) if len(intervals) > 20 else "",
            }
        )
    websites = [
        {
            "commune": names.get(w.commune, w.commune),
            "url": w.url or "—",
            "checks": f"{w.ok_checks}/{w.checks}",
            "value": t.pct(w.ok_pct),
            "latency": "—" if w.median_latency_ms is None else f"{t.number(w.median_latency_ms, 0)} ms",
            "tls": "—" if w.min_tls_days_left is None else t.number(w.min_tls_days_left, 0),
            "failures": [f"{t.when(f.ts_ms)}: {f.error or f.status}" for f in w.failures[:10]],
            "verdict": t.verdict(w.verdict),
            "verdict_class": w.verdict,
        }
        for w in report.websites
    ]
    coverage = [
        {
            "commune": names.get(c.commune, c.commune),
            "hamlet": hamlets.get(c.device, c.hamlet),
            "device": c.device,
            "kind": c.kind,
            "value": t.pct(c.coverage_pct),
            "gaps": [t.span(s, e) for s, e in c.gaps[:10]],
            "down": [t.span(d.start_ms, d.end_ms) for d in c.down[:10]],
        }
        for c in report.coverage
    ]
    grid: dict[str, list[dict[str, str]]] = {}
    for c in report.clusters:
        grid.setdefault(names.get(c.commune, c.commune), []).append(
            {"hamlet": c.hamlet, "verdict_class": c.verdict, "value": t.pct(c.sounded_pct, 0)}
        )
    settings = [(name, value) for name, value in vars(defs).items() if name != "targets"]
    return {
        "lang": lang,
        "t": t,
        "district": report.district,
        "period": f"{t.day(p.first_day)} – {t.day(p.last_day)}",
        "generated": t.when(report.generated_ms),
        "notes": notes,
        "banner": coverage_banner(report, defs, t),
        "crash_free": _crash_free_rows(report, names, hamlets, t),
        "outage_causes": _outage_cause_rows(report, names, hamlets, t),
        "causes": [t(f"cause.{c}") for c in CAUSES],
        "provenance": _provenance_rows(provenance(report, registry, defs, source), t),
        "not_measured": not_measured(lang),
        "indicators": indicators,
        "failed": failed,
        "failed_more": failed_more,
        "clusters": clusters,
        "board_rows": board_rows,
        "websites": websites,
        "coverage": coverage,
        "grid": grid,
        "settings": settings,
        "availability_chart": availability_chart(report, names, t),
        "heatmap": bulletin_heatmap(report, t),
    }


def _crash_free_rows(
    report: KpiReport, names: dict[str, str], hamlets: dict[str, str], t: Text
) -> list[dict[str, str]]:
    """Per commune (bold, first) then per device: reported hours, crash-free hours and share."""
    rows = []
    for commune in sorted({c.commune for c in report.crash_free}):
        mine = [c for c in report.crash_free if c.commune == commune]
        hours = sum(c.operating_h for c in mine)
        free = sum(c.crash_free_h for c in mine)
        rows.append(
            {
                "commune": names.get(commune, commune),
                "device": "",
                "hours": str(hours),
                "free": str(free),
                "crashes": str(sum(c.crashes for c in mine)),
                "pct": t.pct(100.0 * free / hours if hours else None),
            }
        )
        for c in mine:
            rows.append(
                {
                    "commune": "",
                    "device": f"{hamlets.get(c.device, c.hamlet)} ({c.device})",
                    "hours": str(c.operating_h),
                    "free": str(c.crash_free_h),
                    "crashes": str(c.crashes),
                    "pct": t.pct(c.crash_free_pct),
                }
            )
    return rows


def _outage_cause_rows(
    report: KpiReport, names: dict[str, str], hamlets: dict[str, str], t: Text
) -> list[dict[str, Any]]:
    """Per commune (bold, first) then per device with an outage: hours (count) by cause."""

    def cells(hours: dict[str, float], counts: dict[str, int]) -> list[str]:
        return [f"{t.number(hours[c])} ({counts[c]})" if counts[c] else "–" for c in CAUSES]

    rows: list[dict[str, Any]] = []
    for commune in sorted({o.commune for o in report.outage_causes if any(o.outages.values())}):
        mine = [o for o in report.outage_causes if o.commune == commune and any(o.outages.values())]
        hours = {c: sum(o.hours[c] for o in mine) for c in CAUSES}
        counts = {c: sum(o.outages[c] for o in mine) for c in CAUSES}
        total = t.number(sum(hours.values()))
        rows.append(
            {
                "commune": names.get(commune, commune),
                "device": "",
                "cells": cells(hours, counts),
                "total": total,
            }
        )
        for o in mine:
            device = f"{hamlets.get(o.device, o.hamlet)} ({o.device})"
            total = t.number(sum(o.hours.values()))
            rows.append({"commune": "", "device": device, "cells": cells(o.hours, o.outages), "total": total})
    return rows


def _provenance_rows(block: dict[str, Any], t: Text) -> list[tuple[str, str]]:
    rows = []
    for key, value in block.items():
        shown = t.pct(value) if key == "data_coverage_pct" else str(value)
        rows.append((t(f"provenance.{key}"), shown))
    return rows


def coverage_banner(report: KpiReport, defs: Definitions, t: Text) -> str:
    """The warning the report opens with when data coverage is below the threshold ("" if none)."""
    pct = data_coverage_pct(report)
    if pct is None or pct <= 0:
        return t("coverage.none")
    if pct < defs.coverage_warn_pct:
        return t("coverage.banner", pct=t.pct(pct), warn=t.pct(defs.coverage_warn_pct))
    return ""


def render_html(
    report: KpiReport, registry: Registry, defs: Definitions, lang: str = "vi", *, source: str = ""
) -> str:
    """The report page as HTML text (``source``: where the readings were read, for provenance)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html").render(**report_context(report, registry, defs, lang, source))
