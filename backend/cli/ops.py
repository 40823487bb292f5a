"""Operator commands: ``tincoso status``, ``tincoso alerts``, ``tincoso maintenance add|list|remove``.

``status`` and ``alerts`` read InfluxDB (the ``state`` and ``alert`` points the monitor
writes), so they work from any machine that reaches the database; ``maintenance`` edits
the file in the monitor's state directory, which the monitor re-reads on change.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from backend.alerts.messages import FAULT_TEXT
from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.config import BackendConfig, ConfigError, load_config
from backend.influx import InfluxError, rows
from backend.maintenance import FILE_NAME, MaintenanceError, MaintenanceStore
from backend.monitor.config import MonitorConfig
from backend.registry import DEVICE_KINDS, LOCAL_TZ, Registry, RegistryError, load_registry

__all__ = ["parse_duration", "parse_local_time", "register"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(subparsers: Subparsers) -> None:
    """Add ``status``, ``alerts`` and ``maintenance``."""
    status = subparsers.add_parser(
        "status",
        help="fleet table per commune",
        description="Online/offline and open faults of every device.",
    )
    _add_config(status)
    status.add_argument("--commune", help="only this commune (id or name)")
    status.add_argument("--kind", choices=DEVICE_KINDS, help="only this kind of device")
    status.add_argument("--offline", action="store_true", help="only devices that are offline or never seen")
    status.set_defaults(handler=fleet_status)

    alerts = subparsers.add_parser(
        "alerts", help="open and recent alerts", description="Open and recent alerts."
    )
    _add_config(alerts)
    alerts.add_argument(
        "--since", default="7d", type=parse_duration, help="recent = within this (default 7d)"
    )
    alerts.set_defaults(handler=list_alerts)

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
    target.add_argument("--commune", help="commune id")
    add.add_argument("--from", dest="start", type=parse_local_time, help="start, local time (default: now)")
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument("--to", dest="end", type=parse_local_time, help="end, local time 'YYYY-MM-DD HH:MM'")
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


def parse_duration(text: str) -> float:
    """``90m`` -> 5400.0 seconds (units s, m, h, d)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"duration must look like 30s, 90m, 2h or 1d, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_local_time(text: str) -> float:
    """``2025-11-27 17:00`` (Vietnam local time) or ISO 8601 with an offset -> epoch seconds."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"time must look like 2025-11-27 17:00, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ)
    return moment.timestamp()


@dataclass(frozen=True)
class _Context:
    config: BackendConfig
    registry: Registry
    state_dir: Path


def _context(args: argparse.Namespace) -> _Context:
    try:
        config = load_config(args.config)
        monitor = MonitorConfig.from_backend(config)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    if config.registry_path is None:
        raise CliError(f"{args.config}: [registry] path is required")
    try:
        registry = load_registry(config.registry_path)
    except RegistryError as exc:
        raise CliError(str(exc)) from exc
    return _Context(config, registry, Path(monitor.monitor.state_dir))


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 200  # piped or captured: keep each device on one line for grep
    return console


def _local(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%d/%m %H:%M")


async def _query(config: BackendConfig, *statements: str) -> list[list[dict[str, Any]]]:
    async with config.influx.client() as db:
        try:
            return [rows(series) for series in await db.query_all(";".join(statements))]
        except InfluxError as exc:
            raise CliError(str(exc)) from exc


_LATEST_STATE = "SELECT online, reason FROM state GROUP BY device ORDER BY time DESC LIMIT 1"
_LATEST_ALERTS = (
    "SELECT status, since_ms, detail, muted FROM alert GROUP BY device, fault ORDER BY time DESC LIMIT 1"
)


def fleet_status(args: argparse.Namespace) -> int:
    """Print one table per commune: each device's state and open faults."""
    ctx = _context(args)
    states, alerts = asyncio.run(_query(ctx.config, _LATEST_STATE, _LATEST_ALERTS))
    latest = {r["device"]: r for r in states}
    faults: dict[str, list[str]] = {}
    for row in alerts:
        if row["status"] == "open":
            faults.setdefault(row["device"], []).append(
                row["fault"] + (" (muted)" if row.get("muted") else "")
            )
    console = _console()
    wanted = args.commune
    shown = 0
    for commune in ctx.registry.communes.values():
        if wanted and wanted not in (commune.id, commune.name):
            continue
        table = Table(
            title=f"{commune.name} ({commune.id}, radio {commune.radio_system})", title_justify="left"
        )
        table.add_column("device", no_wrap=True)
        for column in ("kind", "hamlet", "state", "since", "open faults"):
            table.add_column(column)
        for device in ctx.registry.devices_in(commune.id):
            state = latest.get(device.id)
            online = None if state is None else bool(state["online"])
            if (args.kind and device.kind != args.kind) or (args.offline and online):
                continue
            label = {True: "[green]online[/]", False: "[red]offline[/]", None: "[yellow]never seen[/]"}[
                online
            ]
            since = _local(state["time"] / 1000) if state else ""
            open_faults = ", ".join(faults.get(device.id, []))
            table.add_row(
                device.id, device.kind, escape(device.hamlet), label, since, f"[red]{escape(open_faults)}[/]"
            )
        if table.row_count:
            console.print(table)
            shown += table.row_count
    if wanted and not any(wanted in (c.id, c.name) for c in ctx.registry.communes.values()):
        raise CliError(f"no commune {wanted!r} in the registry")
    if not shown:
        console.print("No device matches.")
    return EXIT_OK


def list_alerts(args: argparse.Namespace) -> int:
    """Print open alerts, then alerts opened or closed within ``--since``."""
    ctx = _context(args)
    since_ms = int((time.time() - args.since) * 1000)
    latest, recent = asyncio.run(
        _query(
            ctx.config,
            _LATEST_ALERTS,
            f"SELECT status, since_ms, detail FROM alert WHERE time >= {since_ms}ms GROUP BY device, fault",
        )
    )
    console = _console()
    open_rows = [r for r in latest if r["status"] == "open"]
    console.print(_alert_table(ctx.registry, "Open alerts", open_rows, with_status=False))
    recent.sort(key=lambda r: r["time"], reverse=True)
    console.print(_alert_table(ctx.registry, "Recent", recent, with_status=True))
    return EXIT_OK


def _alert_table(registry: Registry, title: str, items: list[dict[str, Any]], *, with_status: bool) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (
        "time",
        "commune",
        "device",
        "fault",
        "since",
        "detail",
        *(("status",) if with_status else ()),
    ):
        table.add_column(column)
    for row in items:
        device = registry.device(row["device"])
        commune = registry.commune(device.commune) if device else None
        fault = FAULT_TEXT.get(row["fault"], {}).get("vi", (row["fault"], ""))[0]
        status = ("[red]open[/]" if row["status"] == "open" else "[green]closed[/]",) if with_status else ()
        table.add_row(
            _local(row["time"] / 1000),
            escape(commune.name if commune else "?"),
            row["device"],
            escape(fault),
            _local(row["since_ms"] / 1000 if row.get("since_ms") is not None else None),
            escape(row.get("detail") or ""),
            *status,
        )
    return table


def _store(ctx: _Context) -> MaintenanceStore:
    return MaintenanceStore(ctx.state_dir / FILE_NAME)


def maintenance_add(args: argparse.Namespace) -> int:
    """Add a window for a registered device or commune."""
    ctx = _context(args)
    if args.device and ctx.registry.device(args.device) is None:
        raise CliError(f"no device {args.device!r} in the registry")
    if args.commune and ctx.registry.commune(args.commune) is None:
        raise CliError(f"no commune {args.commune!r} in the registry (use its id, e.g. trang-xa)")
    start = args.start if args.start is not None else time.time()
    end = args.end if args.end is not None else start + args.duration
    target, name = ("device", args.device) if args.device else ("commune", args.commune)
    try:
        window = _store(ctx).add(target, name, start, end, args.reason)
    except MaintenanceError as exc:
        raise CliError(str(exc)) from exc
    _console().print(f"Added {window.id}: {target} {name} muted {_local(start)} – {_local(end)}")
    return EXIT_OK


def maintenance_list(args: argparse.Namespace) -> int:
    """List every window, marking which are active now."""
    ctx = _context(args)
    try:
        windows = _store(ctx).windows()
    except MaintenanceError as exc:
        raise CliError(str(exc)) from exc
    now = time.time()
    table = Table(title="Maintenance windows (local time)", title_justify="left")
    for column in ("id", "target", "name", "from", "to", "reason", "now"):
        table.add_column(column)
    for w in sorted(windows, key=lambda w: w.start):
        active = "[yellow]active[/]" if w.start <= now < w.end else ("ended" if w.end <= now else "planned")
        table.add_row(w.id, w.target, w.name, _local(w.start), _local(w.end), escape(w.reason), active)
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
    _console().print(f"Removed {args.id}")
    return EXIT_OK
