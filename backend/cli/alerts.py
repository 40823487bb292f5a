"""``tincoso alerts`` (open and recent alerts) and ``tincoso alerts ack ID``.

The lists read InfluxDB (the ``alert`` points the monitor writes), so they work from any
machine that reaches the database. ``ack`` hands the acknowledgement to the monitor through
its state directory (``acks/``, see ``backend/alerts/acks.py``): run it where the monitor's
state lives, as for ``tincoso maintenance``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import time
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.table import Table

from backend.alerts.acks import ACKS_DIR, AckInbox, AckRequest
from backend.alerts.evidence import describe, duration_text
from backend.alerts.model import Alert
from backend.catalogue import fault_title, term
from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.cli.context import CliContext, find_place, load_context, parse_duration
from backend.cli.view import console, local_time, query
from backend.monitor.service import OPEN_ALERTS_FILE
from protocols.stored_data import ALERT_CLOSED, ALERT_OPEN, ALERT_OPEN_STATUSES, ALERT_UNCONFIRMED

__all__ = ["register"]

LATEST_ALERTS = (
    "SELECT status, since_ms, detail, muted, alert_id, acked_by, acked_ms FROM alert "
    "GROUP BY device, fault ORDER BY time DESC LIMIT 1"
)


def register(subparsers: Subparsers) -> None:
    """Add ``alerts`` and its ``ack`` action."""
    alerts = subparsers.add_parser(
        "alerts",
        help="open and recent alerts; acknowledge one",
        description="Open alerts, then recent ones with when they opened, closed and how long they lasted. "
        "`tincoso alerts ack ID` takes an alert in hand (no more reminders).",
    )
    _common(alerts, top=True)
    alerts.add_argument(
        "--since", default="7d", type=parse_duration, help="recent = within this (default 7d; 90m, 2h, 1d)"
    )
    alerts.add_argument("--commune", help="only this commune or hamlet (id or name, accents optional)")
    alerts.set_defaults(handler=list_alerts)
    actions = alerts.add_subparsers(title="actions (optional)", metavar="[ack ID]")
    ack = actions.add_parser(
        "ack",
        help="acknowledge an open alert: reminders stop",
        description="Take an open alert in hand: its reminders stop and `status`/`alerts` show who took it.",
    )
    _common(ack)
    ack.add_argument("id", help="the alert id from the notice (K7Q2M or #K7Q2M)")
    ack.add_argument("--by", default=None, help="who takes it (default: your login name)")
    ack.set_defaults(handler=ack_alert)


def _common(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Given before or after the action: the action's parser must not reset what the top one read.
    default: dict[str, object] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--config", help="backend.toml (required)", **default)  # type: ignore[arg-type]
    lang: dict[str, object] = {"default": "vi"} if top else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--lang",
        choices=("vi", "en"),
        help="output language (default vi)",
        **lang,  # type: ignore[arg-type]
    )


def _load(args: argparse.Namespace) -> CliContext:
    if not args.config:
        raise CliError("--config backend.toml is required")
    return load_context(args.config)


@dataclass
class _Row:
    """One alert as the recent list shows it."""

    alert_id: str
    device: str
    fault: str
    since: float | None
    opened: float
    closed: float | None = None
    detail: str = ""
    acked_by: str | None = None
    muted: bool = False
    unconfirmed: bool = False


def list_alerts(args: argparse.Namespace) -> int:
    """Print open alerts, then alerts opened or closed within ``--since``."""
    ctx = _load(args)
    devices = _devices(ctx, args.commune)
    since_ms = int((time.time() - args.since) * 1000)
    latest, recent = asyncio.run(
        query(
            ctx.config,
            LATEST_ALERTS,
            "SELECT status, since_ms, opened_ms, detail, muted, alert_id, acked_by FROM alert "
            f"WHERE time >= {since_ms}ms GROUP BY device, fault",
        )
    )
    lang = args.lang
    out = console()
    open_rows = [
        _row(r)
        for r in latest
        if r["status"] in ALERT_OPEN_STATUSES and (devices is None or r["device"] in devices)
    ]
    out.print(_table(ctx, term("alerts.open", lang), open_rows, lang, recent=False))
    merged = _merge([r for r in recent if devices is None or r["device"] in devices])
    out.print(_table(ctx, term("cli.recent_alerts", lang), merged, lang, recent=True))
    return EXIT_OK


def _devices(ctx: CliContext, commune: str | None) -> set[str] | None:
    if commune is None:
        return None
    place = find_place(ctx.registry, commune)
    return {
        d.id
        for d in ctx.registry.devices_in(place.commune.id)
        if place.hamlet is None or d.hamlet == place.hamlet
    }


def _row(r: dict[str, Any]) -> _Row:
    since = r["since_ms"] / 1000 if r.get("since_ms") is not None else None
    opened = r["opened_ms"] / 1000 if r.get("opened_ms") is not None else r["time"] / 1000
    return _Row(
        alert_id=r.get("alert_id") or "",
        device=r["device"],
        fault=r["fault"],
        since=since,
        opened=opened,
        detail=r.get("detail") or "",
        acked_by=r.get("acked_by"),
        muted=bool(r.get("muted")),
        unconfirmed=r["status"] == ALERT_UNCONFIRMED,
    )


def _merge(points: list[dict[str, Any]]) -> list[_Row]:
    """One row per alert: its open point(s) and its closed point folded together."""
    merged: dict[tuple[str, str, str], _Row] = {}
    for r in sorted(points, key=lambda p: p["time"]):
        key = (r["device"], r["fault"], r.get("alert_id") or str(r.get("since_ms")))
        row = merged.get(key)
        if row is None:
            row = merged[key] = _row(r)
            if r["status"] != ALERT_OPEN:  # opened before the period: only later points are in it
                row.opened = row.since if row.since is not None else r["time"] / 1000
        if r["status"] == ALERT_CLOSED:
            row.closed = r["time"] / 1000
        else:  # open, or still open but unconfirmed
            row.detail = r.get("detail") or row.detail
            row.acked_by = r.get("acked_by") or row.acked_by
            row.muted = row.muted or bool(r.get("muted"))
            row.unconfirmed = r["status"] == ALERT_UNCONFIRMED
    return sorted(merged.values(), key=lambda row: row.closed or row.opened, reverse=True)


def _table(ctx: CliContext, title: str, rows: list[_Row], lang: str, *, recent: bool) -> Table:
    table = Table(title=title, title_justify="left")
    columns = ["alert.id", "commune", "device", "fault", "since", "detail", "cli.status"]
    if recent:
        columns[4:5] = ["opened", "closed", "duration"]
    for key in columns:
        table.add_column(term(key, lang), no_wrap=key in ("alert.id", "device"))
    now = time.time()
    for row in rows:
        device = ctx.registry.device(row.device)
        commune = ctx.registry.commune(device.commune) if device else None
        status = _status(row, lang, recent=recent)
        when = [local_time(row.since)]
        if recent:
            start = row.since if row.since is not None else row.opened
            lasted = duration_text((row.closed or now) - start, lang)
            closed = local_time(row.closed) if row.closed else term("cli.still_open", lang)
            when = [local_time(row.opened), closed, lasted if row.closed else f"{lasted}+"]
        table.add_row(
            f"#{row.alert_id}" if row.alert_id else "",
            escape(commune.name if commune else "?"),
            row.device,
            escape(fault_title(row.fault, lang)),
            *when,
            escape(describe(row.fault, row.detail, lang) if row.detail else ""),
            status,
        )
    if not rows:
        table.caption = term("cli.no_alerts", lang)
    return table


def _status(row: _Row, lang: str, *, recent: bool) -> str:
    if recent and row.closed is not None:
        return f"[green]{term('alert.closed', lang)}[/]"
    parts = [f"[red]{term('alert.open', lang)}[/]"]
    if row.unconfirmed:
        parts.append(f"[magenta]{term('alert.unconfirmed', lang)}[/]")
    if row.acked_by:
        parts.append(f"[cyan]{term('alert.acked', lang)}: {escape(row.acked_by)}[/]")
    if row.muted:
        parts.append(f"[yellow]{term('alert.muted', lang)}[/]")
    return " · ".join(parts)


def ack_alert(args: argparse.Namespace) -> int:
    """Hand an acknowledgement to the monitor (checked against its open alerts)."""
    ctx = _load(args)
    alert_id = args.id.strip().lstrip("#").upper()
    path = ctx.state_dir / OPEN_ALERTS_FILE
    try:
        open_alerts = [Alert(**item) for item in json.loads(path.read_text(encoding="utf-8"))]
    except FileNotFoundError:
        open_alerts = []
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(f"cannot read the monitor's open alerts {path}: {exc}") from None
    alert = next((a for a in open_alerts if a.id == alert_id), None)
    if alert is None:
        known = ", ".join(f"#{a.id}" for a in open_alerts if a.id) or "none"
        raise CliError(f"no open alert #{alert_id} in {ctx.state_dir} (open: {known}); see `tincoso alerts`")
    by = args.by or getpass.getuser()
    AckInbox(ctx.state_dir / ACKS_DIR).put(AckRequest(alert.id, by, time.time(), "cli"))
    text = term("cli.ack_queued", args.lang).format(
        by=by, id=alert.id, fault=fault_title(alert.fault, args.lang), device=alert.device
    )
    console().print(escape(text))
    return EXIT_OK
