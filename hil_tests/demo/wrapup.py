"""What the demo prints before and after the day, and the files it leaves to look at."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from backend.registry import LOCAL_TZ
from hil_tests.audit import AuditResult
from hil_tests.demo.district import District
from hil_tests.demo.stack import DATABASE, Stack
from hil_tests.demo.timeline import EVENING, Timeline, clock_text, local_clock
from hil_tests.demo.watch import READINGS, FleetView, SentAlert
from hil_tests.faults.backend import backend_command

KPI_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Outcome:
    """What the run produced, for the summary."""

    view: FleetView
    day_end: FleetView
    audit: AuditResult
    alerts: list[SentAlert]
    emails: int
    webhooks: int
    sms: int
    telegram: int
    grafana: Path
    kpi: list[Path] | None


def shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


def fleet_line(district: District) -> str:
    """``30 speaker clusters (2 per commune, 15 communes), 11 e-boards (...), 1 district LED board``."""
    speakers = district.of_kind("speaker_cluster")
    towns_on, towns, communes_on, communes = district.eboard_coverage()
    share = f"{communes_on}/{communes} = {100 * communes_on / communes:.0f} %" if communes else "none"
    per = len(speakers) // max(len(district.communes), 1)
    boards = len(district.of_kind("eboard"))
    leds = len(district.of_kind("district_led"))
    return (
        f"{len(speakers)} speaker clusters ({per} per unit, {len(district.communes)} units), "
        f"{boards} e-boards (town {towns_on}/{towns}, communes {share}; plan 2025: 100 % and 70 %), "
        f"{leds} district LED board"
    )


def print_plan(console: Console, stack: Stack, timeline: Timeline, root: Path) -> None:
    """Where everything runs and how the simulated day maps onto real time."""
    assert stack.services is not None
    assert stack.smtp is not None
    assert stack.http is not None
    assert stack.sms is not None
    assert stack.telegram is not None
    district = stack.district
    urls = stack.mqtt_urls()
    say = console.print
    say(
        f"[bold]tincoso demo: {escape(district.name)} district, one simulated day (05:00–22:00) in about "
        f"{_minutes(timeline.end - timeline.start)} of real time[/]"
    )
    say(f"Data under {escape(shown(root))} (wiped by the next run). Ctrl-C stops everything.")
    say(
        f"Mosquitto  devices {urls['devices']} (TLS, a password and an ACL per device), "
        f"backend {urls['backend']} (backend identity only)"
    )
    say(f"InfluxDB   {stack.services.influxdb.url}, database {DATABASE}")
    say(
        f"Fleet      {len(district.devices)} devices, each a real tincoso-agent process on simulated "
        "hardware:"
    )
    say(f"           {escape(fleet_line(district))}")
    say(
        f"           {len(stack.credentials)} identities provisioned: "
        f"{escape(shown(stack.secrets.directory))}/devices/<id>/agent-mqtt.toml is each agent's \\[mqtt]"
    )
    say(
        f"Alerts     to a local SMTP server 127.0.0.1:{stack.smtp.port}, webhook receiver "
        f"{stack.http.url}/hook/<commune>,"
    )
    say(
        f"           SMS gateway {stack.sms.url}/sms and Telegram Bot API {stack.telegram.url} "
        "(real deliveries, nothing leaves 127.0.0.1)"
    )
    say(
        "The day, real time (UTC+7) -> simulated clock. Only the clock is accelerated: agents, broker, "
        "backend, heartbeat timeouts and rule delays run in real time."
    )
    windows = {w.name: w for w in timeline.schedule}
    for act in timeline.acts:
        note = f"registry window {windows[act.name].label()}" if act.name in windows else ""
        say(
            f"  {local_clock(act.real_start)}–{local_clock(act.real_end)}  {act.name:<13} "
            f"{clock_text(act.sim_start)}–{clock_text(act.sim_end)}  ×{act.speedup:<4.0f} {note}"
        )
    say(f"  e-boards and the LED board must be on {timeline.board_hours[0].label()} (registry board hours)")
    if not timeline.aligned:
        say(
            "  [yellow]--no-align: bulletin windows are rounded to whole minutes; the dead-air rule is off[/]"
        )


def write_dashboards(out: Path, influx_url: str, database: str) -> Path:
    """Grafana provisioning, as ``tincoso dashboards build --out OUT`` writes it."""
    from dashboards.provisioning import ProvisioningOptions, write_provisioning

    write_provisioning(out, ProvisioningOptions(influx_url=influx_url, database=database))
    return out


def write_kpi_report(
    config: Path, out: Path, timeline: Timeline, *, pdf: bool, warn: Callable[[str], None]
) -> list[Path] | None:
    """Run ``tincoso report kpi`` for the demo's local day; the files it wrote (None on failure)."""
    day = datetime.fromtimestamp(timeline.act(EVENING).real_start, LOCAL_TZ).date().isoformat()
    command = [*backend_command(), "report", "kpi", "--config", str(config), "--from", day, "--to", day]
    command += ["--out", str(out), *([] if pdf else ["--no-pdf"])]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=KPI_TIMEOUT_S, check=False, env=dict(os.environ)
        )
    except subprocess.TimeoutExpired:
        warn(f"the KPI report took more than {KPI_TIMEOUT_S:g} s; skipped")
        return None
    if done.returncode != 0:
        warn("the KPI report failed: " + (done.stderr.strip().splitlines() or ["no message"])[-1])
        return None
    return [Path(line) for line in done.stdout.splitlines() if line.strip()]


def _indicator(indicator: dict[str, Any]) -> str:
    text = f"{indicator['id']} {indicator['value_pct']:.0f} % {indicator['verdict'].replace('_', ' ')}"
    # Units that failed for a measured reason (a commune without a board is the plan's gap).
    failed = [
        f"{u['commune_name']}: {u['reason'].replace('_', ' ')}"
        for u in indicator.get("units", [])
        if u.get("verdict") == "not_met" and u.get("reason") != "no_board"
    ]
    return text + (f" ({', '.join(failed)})" if failed else "")


def kpi_line(paths: list[Path]) -> str:
    """``today (targets 2025): 1.1 100 % met · ...`` from the report's JSON."""
    data = next((p for p in paths if p.suffix == ".json"), None)
    if data is None:
        return "see the report"
    try:
        report = json.loads(data.read_text(encoding="utf-8"))
        marks = [_indicator(i) for i in report["indicators"]]
        year = report["indicators"][0]["target_year"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"cannot read {data.name}: {exc}"
    return f"the demo day, from measurements (targets {year}): " + " · ".join(marks)


def print_summary(
    console: Console, district: District, stack: Stack, timeline: Timeline, outcome: Outcome, kept: bool
) -> None:
    """The closing summary: devices, readings, alerts, audit and where to look next."""
    say = console.print
    view, totals = outcome.view, outcome.audit.totals()
    seen = sum(1 for d in district.devices if d.id in view.online)
    opened = sum(a.event == "open" for a in outcome.alerts)
    recovered = sum(a.event == "recovery" for a in outcome.alerts)
    per_kind = " · ".join(f"{m} {view.readings.get(m, 0):,}" for m in READINGS)
    clean = "[green]clean[/]" if outcome.audit.clean else "[bold red]NOT clean: see the table above[/]"
    still_open = sum(
        len([f for f in faults if f != "offline"]) for faults in outcome.day_end.open_faults.values()
    )
    say("")
    say("[bold]Summary[/]")
    count = {kind: len(district.of_kind(kind)) for kind in ("speaker_cluster", "eboard", "district_led")}
    kinds = (
        f"{count['speaker_cluster']} speaker clusters, {count['eboard']} e-boards, "
        f"{count['district_led']} district LED board"
    )
    say(f"  Devices   {len(district.devices)} real agents, {seen} reported: {kinds}")
    say(f"  Readings  {view.readings_total:,} stored in InfluxDB ({per_kind})")
    say(
        f"  Alerts    {opened} sent, {recovered} recovered, {still_open} still open at 22:00; "
        f"{outcome.emails} e-mails, {outcome.webhooks} webhook calls, {outcome.sms} SMS and "
        f"{outcome.telegram} Telegram messages delivered to the local receivers"
    )
    say(
        f"  Audit     produced {totals.get('produced', 0):,} · stored {totals.get('stored', 0):,} · "
        f"lost {totals.get('lost', 0)} · duplicated {totals.get('duplicated', 0)} "
        f"(agent queues vs broker vs InfluxDB): {clean}"
    )
    if not outcome.audit.clean:
        say(escape(str(outcome.audit)))
    say(
        f"  Played    simulated 05:00–22:00 in {_minutes(timeline.end - timeline.start)} "
        f"({local_clock(timeline.start)}–{local_clock(timeline.end)} UTC+7)"
    )
    if outcome.kpi:
        head, _, marks = kpi_line(outcome.kpi).partition(": ")
        say(f"  KPI       {escape(head)}:")
        say(f"            {escape(marks)}")
    root = shown(stack.root)
    config = shown(stack.backend.config_path) if stack.backend else "?"
    say("[bold]Where to look next[/]")
    say(f"  Grafana provisioning  {escape(shown(outcome.grafana))} (point GF_PATHS_PROVISIONING at it)")
    if outcome.kpi:
        report = next((p for p in outcome.kpi if p.suffix == ".pdf"), outcome.kpi[0])
        say(f"  KPI report            {escape(shown(report))}")
    up = "" if kept else f"tincoso services up --dir {root} && "
    say(f"  Fleet status          {escape(up)}tincoso status --config {escape(config)}")
    say(f"  Alerts                tincoso alerts --config {escape(config)}")
    say(
        f"  Logs                  {escape(root)}/agents/<device>/agent.log, "
        f"{escape(root)}/backend/backend.log"
    )
    if kept:
        say(f"  Services still run; stop them with: tincoso services down --dir {escape(root)}")
