"""The weekly digest to the district contacts: the week's device health in words.

Vietnamese by default (English for a contact who asks for it): the district's totals,
the five devices that did worst with what to do about each (from their main cause), and
one line per commune. Numbers are written as a Vietnamese reader writes them (``1,5`` giờ).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, timedelta

from backend.alerts.messages import Notice
from backend.catalogue import term
from backend.health.compute import CommuneHealth, DeviceHealth, commune_health, worst
from backend.kpi.model import Period
from backend.monitor.causes import CAUSES
from backend.registry import Registry

__all__ = ["DIGEST_FAULT", "digest_notice", "digest_text", "last_week"]

DIGEST_FAULT = "weekly_digest"


def last_week(today: date) -> Period:
    """The seven whole local days before ``today``."""
    return Period(today - timedelta(days=7), today - timedelta(days=1))


def _num(value: float, lang: str) -> str:
    text = f"{value:.1f}"
    return text.replace(".", ",") if lang == "vi" else text


def _hours(value: float | None, lang: str) -> str:
    if value is None:
        return term("digest.no_failure", lang)
    return term("digest.hours", lang).format(h=_num(value, lang))


def _causes(by_cause: Mapping[str, int], lang: str) -> str:
    return ", ".join(f"{term(f'cause.short.{c}', lang)} {by_cause.get(c, 0)}" for c in CAUSES)


def _day(d: date) -> str:
    return d.strftime("%d/%m/%Y")


def digest_text(registry: Registry, period: Period, devices: Iterable[DeviceHealth], lang: str = "vi") -> str:
    """The digest's body."""
    devices = list(devices)
    communes = commune_health(devices)
    district = _district(devices)
    lines = [
        term("digest.title", lang).format(district=registry.district),
        term("digest.period", lang).format(first=_day(period.first_day), last=_day(period.last_day)),
        "",
        term("digest.district", lang).format(
            devices=district.devices,
            outages=district.outages,
            causes=_causes(district.by_cause, lang),
            down=_num(district.down_h, lang),
            mtbf=_hours(district.mtbf_h, lang),
            mttr=_hours(district.mttr_h, lang),
            free=district.crash_free_h,
            operating=district.operating_h,
        ),
        "",
        f"{term('digest.worst', lang)}:",
    ]
    bad = worst(devices)
    if not bad:
        lines.append(term("digest.none_bad", lang))
    for n, d in enumerate(bad, start=1):
        commune = registry.commune(d.commune)
        lines.append(
            term("digest.device", lang).format(
                n=n,
                commune=commune.name if commune else d.commune,
                hamlet=d.hamlet,
                device=d.device,
                outages=d.outages,
                down=_num(d.down_h, lang),
                causes=_causes(d.by_cause, lang),
                crashes=d.crashes,
                free=d.crash_free_h,
                operating=d.operating_h,
            )
        )
        cause = d.main_cause or "device"
        lines.append(f"   {term('digest.todo', lang)}: {term(f'digest.todo.{cause}', lang)}")
    lines += ["", f"{term('digest.communes', lang)}:"]
    for c in communes:
        commune = registry.commune(c.commune)
        lines.append(
            term("digest.commune", lang).format(
                commune=commune.name if commune else c.commune,
                devices=c.devices,
                outages=c.outages,
                causes=_causes(c.by_cause, lang),
                down=_num(c.down_h, lang),
                mtbf=_hours(c.mtbf_h, lang),
                mttr=_hours(c.mttr_h, lang),
                free=c.crash_free_h,
                operating=c.operating_h,
            )
        )
    lines += ["", term("digest.definitions", lang)]
    return "\n".join(lines)


def _district(devices: list[DeviceHealth]) -> CommuneHealth:
    """The whole district as one commune (same pooling)."""
    pooled = commune_health([_as_district(d) for d in devices])
    return pooled[0] if pooled else CommuneHealth("", 0, 0)


def _as_district(d: DeviceHealth) -> DeviceHealth:
    return replace(d, commune="")


def digest_notice(
    registry: Registry, period: Period, devices: Iterable[DeviceHealth], at: float, lang: str = "vi"
) -> Notice:
    """The digest as a notice for the alert channels (e-mail subject and body)."""
    title = term("digest.title", lang).format(district=registry.district)
    text = digest_text(registry, period, devices, lang)
    return Notice(
        event="digest",
        device="",
        fault=DIGEST_FAULT,
        commune="",
        commune_name=registry.district,
        hamlet="",
        kind="",
        since=period.start_ms / 1000,
        at=at,
        language=lang,
        subject=f"[tincoso] {title} ({_day(period.first_day)} – {_day(period.last_day)})",
        text=text,
    )
