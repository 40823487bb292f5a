"""Operator commands: ``tincoso status`` and ``tincoso maintenance add|list|remove``.

``status`` reads InfluxDB (the ``state`` and ``alert`` points the monitor writes), so it
works from any machine that reaches the database; where the monitor's state directory is
local it also shows maintenance windows. ``maintenance`` edits the file in the monitor's
state directory, which the monitor re-reads on change. ``alerts`` lives in ``alerts.py``.
Output is Vietnamese unless ``--lang en``; communes and hamlets are given by id or name.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from rich.markup import escape
from rich.table import Table

from backend.catalogue import fault_title, kind_name, term
from backend.cli.alerts import LATEST_ALERTS
from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.cli.context import (
    CliContext,
    find_place,
    load_context,
    parse_duration,
    parse_local_time,
)
from backend.cli.view import console, local_time, query
from backend.maintenance import FILE_NAME, MaintenanceError, MaintenanceStore, MaintenanceWindow
from backend.registry import DEVICE_KINDS
from protocols.stored_data import ALERT_OPEN_STATUSES, ALERT_UNCONFIRMED

__all__ = ["parse_duration", "parse_local_time", "register"]

_Context = CliContext


def register(subparsers: Subparsers) -> None:
    """Add ``status`` and ``maintenance``."""
    status = subparsers.add_parser(
        "status",
        help="fleet table per commune",
        description="Online/offline, maintenance and open faults (with who took them) of every device.",
    )
    _add_config(status)
    status.add_argument("--lang", choices=("vi", "en"), default="vi", help="output language (default vi)")
    status.add_argument("--commune", help="only this commune or hamlet (id or name, accents optional)")
    status.add_argument("--kind", choices=DEVICE_KINDS, help="only this kind of device")
    status.add_argument("--offline", action="store_true", help="only devices that are offline or never seen")
    status.set_defaults(handler=fleet_status)

    maintenance = subparsers.add_parser(
        "maintenance",
        help="mute alerts of a device or commune for a while",
        description="Maintenance windows.",
    )
    actions = maintenance.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a window", description="Mute a device or a whole commune.")
    _add_config(add)
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="device id")
    target.add_argument("--commune", help="commune id or name (Tràng Xá, trang-xa)")
    add.add_argument(
        "--from",
        dest="start",
        type=parse_local_time,
        help="start, local time 27/11/2025 17:00 (default: now)",
    )
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument(
        "--to", dest="end", type=parse_local_time, help="end, local time 27/11/2025 18:00 or 2025-11-27 18:00"
    )
    end.add_argument("--for", dest="duration", type=parse_duration, help="length, e.g. 90m, 2h, 1d")
    add.add_argument("--reason", default="", help="why (shown in the list)")
    add.set_defaults(handler=maintenance_add)
    listing = actions.add_parser("list", help="list windows", description="List maintenance windows.")
    _add_config(listing)
    listing.set_defaults(handler=maintenance_list)
    remove = actions.add_parser("remove", help="remove a window", description="Remove a window by id.")
    _add_config(remove)
    remove.add_argument("id", help="window id, as shown by list")
    remove.set_defaults(handler=maintenance_remove)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="backend.toml")
    if parser.prog.split()[-1] in ("add", "list", "remove"):
        parser.add_argument("--lang", choices=("vi", "en"), default="vi", help="output language (default vi)")


def _context(args: argparse.Namespace) -> CliContext:
    return load_context(args.config)


_local = local_time
_console = console

_LATEST_STATE = "SELECT online, reason FROM state GROUP BY device ORDER BY time DESC LIMIT 1"


def fleet_status(args: argparse.Namespace) -> int:
    """Print one table per commune: each device's state, maintenance and open faults."""
    ctx = _context(args)
    lang = args.lang
    place = find_place(ctx.registry, args.commune) if args.commune else None
    states, alerts = asyncio.run(query(ctx.config, _LATEST_STATE, LATEST_ALERTS))
    latest = {r["device"]: r for r in states}
    faults: dict[str, list[str]] = {}
    for row in alerts:
        if row["status"] in ALERT_OPEN_STATUSES:
            faults.setdefault(row["device"], []).append(_fault_cell(row, lang))
    windows = _windows(ctx)
    now = time.time()
    out = console()
    shown = 0
    for commune in ctx.registry.communes.values():
        if place is not None and commune.id != place.commune.id:
            continue
        radio = term("cli.radio_system", lang).format(system=commune.radio_system)
        table = Table(title=f"{commune.name} ({commune.id}, {radio})", title_justify="left")
        table.add_column(term("device", lang), no_wrap=True)
        for key in ("kind", "hamlet", "state", "since", "faults.open"):
            table.add_column(term(key, lang))
        for device in ctx.registry.devices_in(commune.id):
            state = latest.get(device.id)
            online = None if state is None else bool(state["online"])
            if (args.kind and device.kind != args.kind) or (args.offline and online):
                continue
            if place is not None and place.hamlet is not None and device.hamlet != place.hamlet:
                continue
            window = next((w for w in windows if w.covers(device.id, commune.id, now)), None)
            table.add_row(
                device.id,
                kind_name(device.kind, lang),
                escape(device.hamlet),
                _state_cell(online, window, lang),
                local_time(state["time"] / 1000) if state else "",
                " · ".join(faults.get(device.id, [])),
            )
        if table.row_count:
            out.print(table)
            shown += table.row_count
    if not shown:
        out.print(term("cli.none_match", lang))
    return EXIT_OK


def _state_cell(online: bool | None, window: MaintenanceWindow | None, lang: str) -> str:
    colour, key = {
        True: ("green", "state.online"),
        False: ("red", "state.offline"),
        None: ("yellow", "state.never_seen"),
    }[online]
    text = f"[{colour}]{term(key, lang)}[/]"
    if window is not None:
        text += f" · [yellow]{term('state.muted', lang)} {term('until', lang)} {local_time(window.end)}[/]"
    return text


def _fault_cell(row: dict[str, Any], lang: str) -> str:
    text = escape(fault_title(row["fault"], lang))
    if row.get("alert_id"):
        text += f" #{row['alert_id']}"
    marks = []
    if row["status"] == ALERT_UNCONFIRMED:
        marks.append(f"[magenta]{term('alert.unconfirmed', lang)}[/]")
    if row.get("acked_by"):
        marks.append(f"[cyan]{term('alert.acked', lang)}: {escape(row['acked_by'])}[/]")
    if row.get("muted"):
        marks.append(f"[yellow]{term('alert.muted', lang)}[/]")
    return f"[red]{text}[/]" + (f" ({', '.join(marks)})" if marks else "")


def _windows(ctx: CliContext) -> list[MaintenanceWindow]:
    try:
        return _store(ctx).windows()
    except MaintenanceError:
        return []


def _store(ctx: _Context) -> MaintenanceStore:
    return MaintenanceStore(ctx.state_dir / FILE_NAME)


def maintenance_add(args: argparse.Namespace) -> int:
    """Add a window for a registered device or commune."""
    ctx = _context(args)
    if args.device and ctx.registry.device(args.device) is None:
        raise CliError(f"no device {args.device!r} in the registry")
    commune = find_place(ctx.registry, args.commune, hamlets=False).commune if args.commune else None
    start = args.start if args.start is not None else time.time()
    end = args.end if args.end is not None else start + args.duration
    target, name = ("device", args.device) if args.device else ("commune", commune.id if commune else "")
    try:
        window = _store(ctx).add(target, name, start, end, args.reason)
    except MaintenanceError as exc:
        raise CliError(str(exc)) from exc
    label = term(target, args.lang)
    text = term("cli.maintenance_added", args.lang).format(
        id=window.id, target=label, name=name, start=_local(start), end=_local(end)
    )
    _console().print(escape(text))
    return EXIT_OK


def maintenance_list(args: argparse.Namespace) -> int:
    """List every window, marking which are active now."""
    ctx = _context(args)
    try:
        windows = _store(ctx).windows()
    except MaintenanceError as exc:
        raise CliError(str(exc)) from exc
    now = time.time()
    lang = args.lang
    table = Table(title=term("cli.maintenance_windows", lang), title_justify="left")
    for key in ("cli.window_id", "cli.target", "cli.name", "cli.from", "cli.to", "cli.reason", "cli.status"):
        table.add_column(term(key, lang))
    for w in sorted(windows, key=lambda w: w.start):
        if w.start <= now < w.end:
            active = f"[yellow]{term('cli.active', lang)}[/]"
        else:
            active = term("cli.ended" if w.end <= now else "cli.planned", lang)
        target = term(w.target, lang) if w.target in ("device", "commune") else w.target
        table.add_row(w.id, target, w.name, _local(w.start), _local(w.end), escape(w.reason), active)
    _console().print(table)
    return EXIT_OK


def maintenance_remove(args: argparse.Namespace) -> int:
    """Remove a window by id."""
    ctx = _context(args)
    try:
        removed = _store(ctx).remove(args.id)
    except MaintenanceError as exc:
        raise CliError(str(exc)) from exc
    if not removed:
        raise CliError(f"no maintenance window {args.id!r}; see `tincoso maintenance list`")
    _console().print(term("cli.maintenance_removed", args.lang).format(id=args.id))
    return EXIT_OK
