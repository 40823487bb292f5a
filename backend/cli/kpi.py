"""``tincoso report kpi --from DATE --to DATE``: the plan's indicators, computed from measurements.

Writes ``kpi-<from>_<to>-<lang>.html``, ``.pdf``, ``.csv`` and ``.json`` into ``--out``;
``--store`` also writes the figures as the ``kpi`` measurement that Grafana reads, and
``--probe-websites`` checks every commune website once before computing (indicator 1.3).
Progress goes to stderr, the written paths to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import date
from pathlib import Path

from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.config import ConfigError, InfluxSettings, load_config
from backend.influx import InfluxClient, InfluxError
from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions, DefinitionsError, load_definitions
from backend.kpi.export import report_csv, report_json
from backend.kpi.model import KpiReport, Period
from backend.kpi.queries import fetch_measurements
from backend.kpi.render_html import render_html
from backend.kpi.store import store_report
from backend.kpi.website_probe import probe_websites
from backend.registry import Registry, RegistryError, load_registry

__all__ = ["register"]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def register(subparsers: Subparsers) -> None:
    """Add ``report`` and its ``kpi`` action.

    Args:
        subparsers: The top-level parser's subcommand collection.
    """
    report = subparsers.add_parser(
        "report", help="reports for the district office", description="Reports for the district office."
    )
    actions = report.add_subparsers(title="reports", metavar="REPORT", required=True)
    kpi = actions.add_parser(
        "kpi",
        help="the plan's indicators (1.1–1.5, 2.2) computed from measurements",
        description="Compute indicators 1.1, 1.2, 1.3, 1.4, 1.5 and 2.2 of the district plan from the "
        "measurements of whole local days FROM..TO (Vietnam time), with their evidence and data "
        "coverage; write HTML, PDF, CSV and JSON. The targets are those of the year the period ends in.",
    )
    kpi.add_argument("--from", dest="first_day", required=True, type=_day, help="first local day, YYYY-MM-DD")
    kpi.add_argument("--to", dest="last_day", required=True, type=_day, help="last local day (inclusive)")
    kpi.add_argument("--lang", choices=("vi", "en"), default="vi", help="report language (default: vi)")
    kpi.add_argument("--out", type=Path, default=Path("."), help="directory for the files (default: .)")
    kpi.add_argument("--config", type=Path, help="backend.toml (InfluxDB settings and registry path)")
    kpi.add_argument("--influx-url", help="InfluxDB URL (instead of --config)")
    kpi.add_argument("--database", default="tincoso", help="InfluxDB database (default: tincoso)")
    kpi.add_argument("--registry", type=Path, help="fleet registry YAML (instead of the one in --config)")
    kpi.add_argument("--definitions", type=Path, help="TOML file overriding thresholds and targets")
    kpi.add_argument("--store", action="store_true", help="also write the figures as the 'kpi' measurement")
    kpi.add_argument("--probe-websites", action="store_true", help="check every commune website now first")
    kpi.add_argument("--no-pdf", action="store_true", help="skip the PDF (HTML, CSV and JSON only)")
    kpi.set_defaults(handler=report_kpi)


def _say(line: str) -> None:
    print(f"kpi: {line}", file=sys.stderr, flush=True)


def report_kpi(args: argparse.Namespace) -> int:
    """Compute, render and (optionally) store the KPI report."""
    try:
        period = Period(args.first_day, args.last_day)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    settings = InfluxSettings()
    registry_path = args.registry
    try:
        if args.config is not None:
            config = load_config(args.config)
            settings = config.influx
            registry_path = registry_path or (Path(config.registry_path) if config.registry_path else None)
        if args.influx_url:
            settings = InfluxSettings(url=args.influx_url, database=args.database)
        elif args.config is None:
            raise CliError("give --config backend.toml, or --influx-url URL (with --database and --registry)")
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if registry_path is None:
        raise CliError("no registry: give --registry FILE or set [registry] path in the config")
    try:
        registry = load_registry(registry_path)
        defs = load_definitions(args.definitions)
    except (RegistryError, DefinitionsError) as exc:
        raise CliError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    influx = settings.client()
    try:
        report = asyncio.run(_compute(args, period, registry, defs, influx))
    except InfluxError as exc:
        raise CliError(str(exc)) from None
    try:
        written = _write(args, report, registry, defs)
    except OSError as exc:
        raise CliError(f"cannot write the report into {args.out}: {exc}") from None
    for path in written:
        print(path)
    return EXIT_OK


async def _compute(
    args: argparse.Namespace, period: Period, registry: Registry, defs: Definitions, influx: InfluxClient
) -> KpiReport:
    async with influx:
        if args.probe_websites:
            _say("probing commune websites")
            outcomes = await probe_websites(registry, influx, timeout_s=defs.website_timeout_s)
            for commune, outcome in outcomes.items():
                _say(f"  {commune}: {'ok' if outcome.ok else outcome.error} {outcome.url}")
        measurements = await fetch_measurements(influx, period, defs, progress=_say)
        now_ms = int(time.time() * 1000)
        report = compute_report(registry, measurements, period, defs, now_ms=now_ms, progress=_say)
        if args.store:
            _say(f"stored {await store_report(influx, report)} kpi points")
    return report


def _write(args: argparse.Namespace, report: KpiReport, registry: Registry, defs: Definitions) -> list[Path]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"kpi-{report.period.first_day}_{report.period.last_day}-{args.lang}"
    _say("rendering HTML and charts")
    html = render_html(report, registry, defs, args.lang)
    paths = [stem.with_suffix(".html"), stem.with_suffix(".csv"), stem.with_suffix(".json")]
    paths[0].write_text(html, encoding="utf-8")
    paths[1].write_text(report_csv(report), encoding="utf-8")
    paths[2].write_text(report_json(report, defs), encoding="utf-8")
    if not args.no_pdf:
        from backend.kpi.render_pdf import html_to_pdf  # loads WeasyPrint and Pango: only when asked

        _say("printing the PDF")
        paths.insert(1, html_to_pdf(html, stem.with_suffix(".pdf")))
    return paths
