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
from dataclasses import replace
from datetime import date
from pathlib import Path

from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.cli.context import parse_day
from backend.config import ConfigError, InfluxSettings, load_config
from backend.influx import InfluxClient, InfluxError
from backend.kpi.compute import compute_report
from backend.kpi.definitions import Definitions, DefinitionsError, load_definitions
from backend.kpi.export import report_csv, report_json
from backend.kpi.model import KpiReport, Period
from backend.kpi.provenance import provenance
from backend.kpi.queries import fetch_measurements
from backend.kpi.render_html import render_html
from backend.kpi.store import store_report
from backend.kpi.website_probe import probe_websites
from backend.registry import Registry, RegistryError, load_registry
from protocols.stored_data import RAW_RP

__all__ = ["register"]


def _day(text: str) -> date:
    return parse_day(text)


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
    kpi.add_argument(
        "--from", dest="first_day", required=True, type=_day, help="first local day, dd/mm/yyyy or YYYY-MM-DD"
    )
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


def with_sound_threshold(defs: Definitions, threshold: float | None) -> Definitions:
    """The definitions with backend.toml's ``[definitions] sound_threshold_dbfs`` (None: as they are).

    The threshold is set once, in backend.toml, for the continuous queries, the monitor,
    the dashboards and this report; a definitions file that says otherwise is refused.

    Raises:
        DefinitionsError: the definitions file sets a different threshold.
    """
    if threshold is None or defs.dead_air_threshold_dbfs == threshold:
        return replace(defs, dead_air_threshold_dbfs=threshold) if threshold is not None else defs
    if defs.dead_air_threshold_dbfs != Definitions().dead_air_threshold_dbfs:
        raise DefinitionsError(
            f"dead_air_threshold_dbfs {defs.dead_air_threshold_dbfs:g} differs from backend.toml "
            f"[definitions] sound_threshold_dbfs {threshold:g}: set it once, in backend.toml"
        )
    return replace(defs, dead_air_threshold_dbfs=threshold)


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
    threshold: float | None = None
    try:
        if args.config is not None:
            config = load_config(args.config)
            settings = config.influx
            threshold = config.sound_threshold_dbfs
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
        defs = with_sound_threshold(load_definitions(args.definitions), threshold)
    except (RegistryError, DefinitionsError) as exc:
        raise CliError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    influx = settings.client()
    try:
        report = asyncio.run(_compute(args, period, registry, defs, influx))
    except InfluxError as exc:
        raise CliError(str(exc)) from None
    try:
        source = f"InfluxDB {settings.url}, database {settings.database}, {RAW_RP}"
        written = _write(args, report, registry, defs, source)
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


def _write(
    args: argparse.Namespace, report: KpiReport, registry: Registry, defs: Definitions, source: str
) -> list[Path]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"kpi-{report.period.first_day}_{report.period.last_day}-{args.lang}"
    _say("rendering HTML and charts")
    html = render_html(report, registry, defs, args.lang, source=source)
    paths = [stem.with_suffix(".html"), stem.with_suffix(".csv"), stem.with_suffix(".json")]
    paths[0].write_text(html, encoding="utf-8")
    paths[1].write_text(report_csv(report), encoding="utf-8")
    paths[2].write_text(
        report_json(report, defs, provenance(report, registry, defs, source)), encoding="utf-8"
    )
    if not args.no_pdf:
        from backend.kpi.render_pdf import html_to_pdf  # loads WeasyPrint and Pango: only when asked

        _say("printing the PDF")
        paths.insert(1, html_to_pdf(html, stem.with_suffix(".pdf")))
    return paths
