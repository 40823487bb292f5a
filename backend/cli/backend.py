"""``tincoso backend --config backend.toml [--role all|ingest|monitor]``: run the district backend.

``all`` (the default) runs ingest and the monitor in one process; ``ingest`` and
``monitor`` split them (several ingest processes can share a broker's load through
``mqtt.shared_group``; exactly one monitor runs per district). SIGTERM and SIGINT stop
it cleanly: waiting points are flushed and acknowledged before the session closes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.cli.context import load_registry_for
from backend.config import BackendConfig, ConfigError, load_config
from backend.ingest import IngestService
from backend.monitor.config import MonitorConfig
from backend.monitor.service import run_monitor
from backend.registry import Registry
from backend.server.notify import notify, watchdog_pings
from backend.spool import SpoolError

ROLES = ("all", "ingest", "monitor")


def register(subparsers: Subparsers) -> None:
    """Add the ``backend`` command.

    Args:
        subparsers: The top-level parser's subcommand collection.
    """
    parser = subparsers.add_parser(
        "backend",
        help="run ingest (MQTT to InfluxDB) and the monitor",
        description="Run the district backend: ingest (MQTT to InfluxDB, durable through an "
        "on-disk spool) and the monitor (fleet state, gaps, fault rules, alerts).",
    )
    parser.add_argument("--config", required=True, help="backend.toml")
    parser.add_argument("--role", choices=ROLES, default="all", help="which role(s) to run (default: all)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    parser.set_defaults(handler=run_backend)


def _setup_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise CliError(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    # One line per event: "time level logger event=... key=value".
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mqtt").setLevel(logging.WARNING)


def run_backend(args: argparse.Namespace) -> int:
    """Load the config and registry, then run the chosen role(s) until signalled."""
    _setup_logging(args.log_level)
    try:
        config = load_config(args.config)
        monitor_config = MonitorConfig.from_backend(config) if args.role in ("all", "monitor") else None
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    if config.registry_path is None:
        raise CliError(f"{args.config}: [registry] path is required (the fleet registry YAML)")
    registry = load_registry_for(config.registry_path)
    try:
        asyncio.run(_run(config, registry, args.role, monitor_config))
    except SpoolError as exc:
        raise CliError(str(exc)) from exc
    return EXIT_OK


async def _run(
    config: BackendConfig, registry: Registry, role: str, monitor_config: MonitorConfig | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    influx = config.influx.client()
    try:
        async with asyncio.TaskGroup() as group:
            # Under systemd (Type=notify): ready now, then a watchdog ping from this loop.
            notify("READY=1")
            group.create_task(watchdog_pings(stop))
            if role in ("all", "ingest"):
                group.create_task(IngestService(config, registry, role=role).run(stop))
            if monitor_config is not None:
                group.create_task(run_monitor(monitor_config, registry, influx, stop))
    finally:
        notify("STOPPING=1")
        await influx.aclose()
