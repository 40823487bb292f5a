"""Alert texts: Vietnamese by default, English when a technician asks for it.

Each fault has a title and a hint saying what to check on site.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from backend.alerts.evidence import describe, duration_text
from backend.alerts.model import Alert
from backend.alerts.short import SHORT_TITLE, short_text
from backend.catalogue import LANGUAGES, TERMS, kind_name, term
from backend.registry import DEVICE_KINDS, LOCAL_TZ, Registry

__all__ = ["DEVICE_DASHBOARD_UID", "FAULT_TEXT", "Notice", "device_link", "render"]

# The uid of the per-device Grafana dashboard (dashboards/device.py; a test keeps them equal).
DEVICE_DASHBOARD_UID = "tincoso-device"


def _fault_text() -> dict[str, dict[str, tuple[str, str]]]:
    faults = [key[len("fault.") :] for key in TERMS if key.startswith("fault.") and key.count(".") == 1]
    return {
        fault: {
            lang: (term(f"fault.{fault}", lang), term(f"fault.{fault}.check", lang)) for lang in LANGUAGES
        }
        for fault in faults
    }


# fault -> language -> (title, what to check), from the catalogue (backend/catalogue.py): a
# new fault's words go there, so the CLI, dashboards and reports name it the same way.
FAULT_TEXT: dict[str, dict[str, tuple[str, str]]] = _fault_text()

_KIND = {lang: {kind: kind_name(kind, lang) for kind in DEVICE_KINDS} for lang in LANGUAGES}
# ``unconfirmed``: the evidence window ended (bulletin over, board hours over, device offline)
# while the fault was still measured; ``update``: an offline episode's cause, refined once the
# device is back (backend.monitor.outages).
_EVENT = {
    lang: {
        event: term(f"event.{event}", lang)
        for event in ("open", "reminder", "recovery", "unconfirmed", "update")
    }
    for lang in LANGUAGES
}
_UNCONFIRMED_NOTE = {lang: term("alert.unconfirmed.note", lang) for lang in LANGUAGES}
_LABELS = {
    lang: tuple(
        term(key, lang)
        for key in (
            "commune",
            "hamlet",
            "device",
            "since",
            "detail",
            "what_to_check",
            "duration",
            "local_time",
        )
    )
    for lang in LANGUAGES
}
# id, dashboard link, how to acknowledge, acknowledged by, from (short form), lasted (short form)
_ACK_LABELS = {
    lang: tuple(
        term(key, lang)
        for key in ("alert.id", "alert.link", "alert.how_to_ack", "alert.acked", "from", "lasted")
    )
    for lang in LANGUAGES
}


# Faults whose evidence needs no measured detail (the fault itself is the evidence).
_NO_DETAIL = frozenset({"board_dark", "storage_readonly"})


@dataclass(frozen=True)
class Notice:
    """One rendered message about one alert, for one language."""

    event: str
    device: str
    fault: str
    commune: str
    commune_name: str
    hamlet: str
    kind: str
    since: float
    at: float
    language: str
    subject: str
    text: str
    alert_id: str = ""
    link: str = ""
    short: str = ""


def _local(ts: float) -> str:
    return datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%H:%M %d/%m/%Y")


def device_link(grafana_url: str | None, device: str) -> str:
    """The device's dashboard in Grafana, or "" when no Grafana URL is configured."""
    if not grafana_url:
        return ""
    return f"{grafana_url.rstrip('/')}/d/{DEVICE_DASHBOARD_UID}?var-device={quote(device, safe='')}"


def render(
    alert: Alert,
    registry: Registry,
    event: str,
    at: float,
    language: str = "vi",
    *,
    grafana_url: str | None = None,
) -> Notice:
    """The notice for ``event`` (``open``, ``reminder``, ``unconfirmed``, ``update`` or ``recovery``).

    Args:
        alert: The alert.
        registry: Names of the device's commune and hamlet.
        event: Which notice.
        at: When it is sent (epoch s): a recovery states how long the fault lasted.
        language: ``vi`` or ``en``.
        grafana_url: Base URL of the district's Grafana, for the device link.
    """
    lang = language if language in _LABELS else "vi"
    device = registry.device(alert.device)
    commune = registry.commune(device.commune) if device else None
    commune_name = commune.name if commune else "?"
    hamlet = device.hamlet if device else "?"
    kind = device.kind if device else ""
    title, hint = FAULT_TEXT.get(alert.fault, {}).get(lang, (alert.fault, ""))
    l_commune, l_hamlet, l_device, l_since, l_detail, l_check, l_lasted, l_tz = _LABELS[lang]
    l_id, l_link, l_ack, l_acked, l_from, l_lasted_short = _ACK_LABELS[lang]
    head = f"{_EVENT[lang][event]}: {title}"
    tag = f" #{alert.id}" if alert.id else ""
    subject = f"[tincoso] {head} - {commune_name}, {hamlet} ({alert.device}){tag}"
    evidence = describe(alert.fault, alert.detail, lang) if alert.detail or alert.fault in _NO_DETAIL else ""
    link = device_link(grafana_url, alert.device)
    lines = [
        head,
        *([f"{l_id}: #{alert.id}"] if alert.id else []),
        f"{l_commune}: {commune_name}",
        f"{l_hamlet}: {hamlet}",
        f"{l_device}: {alert.device} ({_KIND[lang].get(kind, kind)})",
        f"{l_since}: {_local(alert.since)} ({l_tz}, UTC+7)",
    ]
    if event == "recovery":
        lines.append(f"{l_lasted}: {duration_text(at - alert.since, lang)}")
    if event == "unconfirmed":
        lines.append(_UNCONFIRMED_NOTE[lang])
    if evidence:
        lines.append(f"{l_detail}: {evidence}")
    if event != "recovery" and hint:
        lines.append(f"{l_check}: {hint}")
    if alert.acked_by is not None and alert.acked_at is not None:
        lines.append(f"{l_acked}: {alert.acked_by} ({_local(alert.acked_at)})")
    if link:
        lines.append(f"{l_link}: {link}")
    if event != "recovery" and alert.id and not alert.acked:
        lines.append(f"{l_ack} `tincoso alerts ack {alert.id}`")
    short_title = SHORT_TITLE.get(alert.fault, {}).get(lang, title)
    when = (
        f"{l_lasted_short} {duration_text(at - alert.since, lang)}"
        if event == "recovery"
        else f"{l_from} {_local(alert.since)[:11]}"
    )
    short = short_text(
        f"{_EVENT[lang][event]}{tag} {short_title}",
        (commune_name, hamlet),
        alert.device,
        when,
        "" if event == "recovery" else evidence,
    )
    return Notice(
        event=event,
        device=alert.device,
        fault=alert.fault,
        commune=device.commune if device else "",
        commune_name=commune_name,
        hamlet=hamlet,
        kind=kind,
        since=alert.since,
        at=at,
        language=lang,
        subject=subject,
        text="\n".join(lines),
        alert_id=alert.id,
        link=link,
        short=short,
    )
