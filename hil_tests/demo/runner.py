"""One demo run: start the stack, play the day, account for every reading, summarise, stop.

The flow is plain and synchronous: a loop wakes a few times a second, runs the script's
due steps, prints what happened (steps, alerts delivered, act changes) and redraws the
live view from InfluxDB. Ctrl-C (or SIGTERM) at any point leads to the same ``finally``:
agents, hardware, backend, receivers and services are stopped, children first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from backend.maintenance import FILE_NAME as MAINTENANCE_FILE
from backend.maintenance import MaintenanceStore
from hil_tests.audit import AuditResult, audit
from hil_tests.demo.district import District, build_district, write_demo_registry
from hil_tests.demo.script import Roles, Step, build_script, choose_roles
from hil_tests.demo.stack import AGENT_STOP_TIMEOUT_S, DATABASE, Stack, prepare_directory
from hil_tests.demo.timeline import Timeline, clock_text, local_clock, plan_timeline
from hil_tests.demo.view import alert_line, fleet_table, screen, stamp
from hil_tests.demo.watch import FleetView, SentAlert, read_fleet, sent_alerts
from hil_tests.demo.wrapup import Outcome, print_plan, print_summary, write_dashboards, write_kpi_report

POLL_S = 1.5
TICK_S = 0.2
DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DemoOptions:
    """What ``tincoso demo`` was asked for (see ``hil_tests/demo/__main__.py`` for the flags)."""

    directory: Path
    fleet_size: int = 2
    communes: int = 15
    bulletin_s: float = 60.0
    day_s: float = 60.0
    night_s: float = 15.0
    align: bool = True
    kpi: bool = True
    pdf: bool = True
    keep_services: bool = False


class Demo:
    """The Võ Nhai demo, end to end."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.root = options.directory.resolve()
        self.district: District = build_district(options.fleet_size, options.communes)
        self.roles: Roles = choose_roles(self.district)
        self.stack = Stack(self.root, self.district)
        self.timeline: Timeline | None = None
        self.view = FleetView()
        self.printed_alerts = 0
        self.finished = False

    def run(self) -> int:
        """Run to the summary; 0 when every reading is accounted for, 1 otherwise.

        Raises:
            KeyboardInterrupt: Ctrl-C; everything is stopped before it propagates.
        """
        try:
            outcome = self._run()
            self.finished = True
            return 0 if outcome.audit.clean else 1
        finally:
            if not self.finished:
                self.console.print("Stopping agents, backend, receivers and services...")
            self.stack.stop(keep_services=self.options.keep_services and self.finished, report=self._warn)
            if not self.finished:
                self.console.print("Stopped; nothing left running.")

    def _warn(self, text: str) -> None:
        self.console.print(Text(text, style="yellow"))

    def _run(self) -> Outcome:
        prepare_directory(self.root)
        services = self.stack.start_services()
        _, http = self.stack.start_receivers()
        # Measured: 42 agents are online about 4 s after launch on 2 cores.
        settle_s = 5.0 + 0.15 * len(self.district.devices)
        o = self.options
        self.timeline = timeline = plan_timeline(
            time.time(),
            settle_s=settle_s,
            bulletin_s=o.bulletin_s,
            day_s=o.day_s,
            night_s=o.night_s,
            align=o.align,
        )
        registry = write_demo_registry(
            self.root / "backend" / "registry.yaml",
            self.district,
            schedule=timeline.schedule,
            board_hours=timeline.board_hours,
            receiver_url=http.url,
        )
        print_plan(self.console, self.stack, timeline, self.root)
        self.stack.start_backend(registry, dead_air_rule=timeline.aligned)
        rig = self.stack.start_fleet(self.roles.linked())
        self._say(
            f"{len(self.district.devices)} agents started; the backend is {services.mosquitto.url} away"
        )
        steps = build_script(rig, self.district, self.roles)
        self._play(timeline, steps)
        return self._wrap_up(timeline)

    # -- the day -------------------------------------------------------------------------

    def _say(self, text: str, style: str = "") -> None:
        now = time.time()
        when = stamp(self.timeline, now) if self.timeline else local_clock(now)
        self.console.print(Text.assemble(f"{when}  ", (text, style)))

    def _play(self, timeline: Timeline, steps: list[Step]) -> None:
        assert self.stack.http is not None
        live = (
            Live(console=self.console, refresh_per_second=4, transient=True)
            if self.console.is_terminal
            else None
        )
        act = None
        all_up = False
        next_poll = 0.0
        if live is not None:
            live.start()
        try:
            while (now := time.time()) < timeline.end:
                if timeline.act_at(now) is not act:
                    act = timeline.act_at(now)
                    span = f"{clock_text(act.sim_start)}–{clock_text(act.sim_end)}"
                    self._say(f"── {act.name} {span} (×{act.speedup:.0f}) ──", "bold")
                for step in steps:
                    if not step.done and timeline.real_at(step.sim) <= now:
                        step.done = True
                        step.action()
                        self._say(
                            f"{'⚡' if step.kind == 'fault' else '•'} {step.text}", _STEP_STYLE[step.kind]
                        )
                if now >= next_poll:
                    self.view = read_fleet(self.stack.services.influxdb.url, DATABASE)  # type: ignore[union-attr]
                    next_poll = now + POLL_S
                    online = sum(1 for d in self.district.devices if self.view.online.get(d.id))
                    if not all_up and online == len(self.district.devices):
                        all_up = True
                        self._say(f"all {online} devices online (births seen by the monitor)", "green")
                alerts = self._print_alerts(timeline)
                if live is not None:
                    live.update(screen(self.district, timeline, self.view, alerts, now))
                time.sleep(TICK_S)
        finally:
            if live is not None:
                live.stop()

    def _print_alerts(self, timeline: Timeline) -> list[SentAlert]:
        assert self.stack.http is not None
        alerts = sent_alerts(self.stack.http)
        for alert in alerts[self.printed_alerts :]:
            self.console.print(alert_line(timeline, alert))
        self.printed_alerts = len(alerts)
        return alerts

    # -- after the day -------------------------------------------------------------------

    def _wrap_up(self, timeline: Timeline) -> Outcome:
        stack = self.stack
        assert stack.backend is not None
        assert stack.rig is not None
        assert stack.services is not None
        day_end = read_fleet(stack.services.influxdb.url, DATABASE)
        self._print_alerts(timeline)
        self.console.print(Text("The fleet at 22:00 as the backend sees it (● ok, ▲ open fault, ✖ offline):"))
        self.console.print(fleet_table(self.district, day_end))
        self._say("the day is over: a maintenance window mutes alerts while the equipment is switched off")
        store = MaintenanceStore(stack.backend.workdir / "backend-state" / MAINTENANCE_FILE)
        now = time.time()
        for commune in self.district.communes:
            store.add("commune", commune.id, now, now + 3600, "tincoso demo: equipment switched off")
        killed = stack.stop_agents()
        if killed:
            self._warn(
                f"{len(killed)} agent(s) did not exit within {AGENT_STOP_TIMEOUT_S:g} s of SIGTERM, killed "
                f"(stacks in their agent.log): {', '.join(killed)}"
            )
        self._print_alerts(timeline)
        self._say("agents stopped; waiting for the backend to store what they sent")
        result = self._settled_audit()
        self.view = read_fleet(stack.services.influxdb.url, DATABASE)
        self._print_alerts(timeline)
        stack.capture.stop()  # type: ignore[union-attr]
        stack.backend.stop()
        grafana = write_dashboards(self.root / "grafana", stack.services.influxdb.url, DATABASE)
        kpi = None
        if self.options.kpi:
            self._say("computing the KPI report for the demo day (tincoso report kpi)")
            kpi = write_kpi_report(
                stack.backend.config_path,
                self.root / "reports",
                timeline,
                pdf=self.options.pdf,
                warn=self._warn,
            )
        outcome = Outcome(
            view=self.view,
            day_end=day_end,
            audit=result,
            alerts=sent_alerts(stack.http),  # type: ignore[arg-type]
            emails=len(stack.smtp.messages),  # type: ignore[union-attr]
            webhooks=len(stack.http.received()),  # type: ignore[union-attr]
            sms=len(stack.sms.received()),  # type: ignore[union-attr]
            telegram=len(stack.telegram.sent),  # type: ignore[union-attr]
            grafana=grafana,
            kpi=kpi,
        )
        print_summary(self.console, self.district, self.stack, timeline, outcome, self.options.keep_services)
        return outcome

    def _settled_audit(self) -> AuditResult:
        """Compare agents' queues, the broker capture and InfluxDB until they agree (or time out)."""
        stack = self.stack
        assert stack.rig is not None
        assert stack.services is not None
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            result = audit(
                stack.services.influxdb.url,
                DATABASE,
                produced=stack.rig.produced(),
                capture=stack.capture,
                devices=list(stack.rig.devices),
                echo=False,
            )
            if result.clean or time.monotonic() > deadline:
                return result
            time.sleep(1.0)


_STEP_STYLE = {"fault": "bold red", "repair": "green", "bulletin": "cyan"}
