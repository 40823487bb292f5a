"""The demo's terminal view: fleet per commune, alerts as they are sent, the simulated day.

Lines about what happens (bulletins, faults, alerts) are printed as they occur, so a log
of the run stays in the terminal (and in a pipe, where no live view is drawn). The live
view below them is redrawn from the latest :class:`~hil_tests.demo.watch.FleetView`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from backend.alerts.messages import FAULT_TEXT
from hil_tests.demo.district import District
from hil_tests.demo.timeline import Timeline, clock_text, local_clock
from hil_tests.demo.watch import FleetView, SentAlert

_KIND_LABEL = {"eboard": "e-board", "district_led": "LED"}


def fault_title(fault: str, lang: str = "en") -> str:
    """The fault's title as the alerts word it (``Amplifier idle while audio is present``)."""
    return FAULT_TEXT.get(fault, {}).get(lang, (fault, ""))[0]


def stamp(timeline: Timeline, ts: float) -> str:
    """``14:05:12 | 17:14``: real local time, then the simulated clock."""
    return f"{local_clock(ts)} | {clock_text(timeline.sim_at(ts))}"


def _dot(device: str, view: FleetView) -> Text:
    online = view.online.get(device)
    if online is None:
        return Text("○", style="dim")
    if not online:
        return Text("✖", style="bold red")
    return Text("▲", style="yellow") if view.open_faults.get(device) else Text("●", style="green")


def fleet_table(district: District, view: FleetView) -> Table:
    """One row per commune, a mark per device: ● ok, ▲ open fault, ✖ offline, ○ not seen yet."""
    table = Table(title_justify="left", expand=False, pad_edge=False, box=None)
    table.add_column("commune", no_wrap=True)
    table.add_column("speaker clusters", no_wrap=True)
    table.add_column("boards", no_wrap=True)
    table.add_column("open faults (hamlet: fault)")
    for commune in district.communes:
        devices = [d for d in district.devices if d.commune == commune.id]
        speakers = Text(" ").join(_dot(d.id, view) for d in devices if d.kind == "speaker_cluster")
        boards = Text(" ").join(
            Text.assemble(_dot(d.id, view), f" {_KIND_LABEL[d.kind]}")
            for d in devices
            if d.kind != "speaker_cluster"
        )
        faults = []
        for d in devices:
            names = ["offline"] if view.online.get(d.id) is False else []
            names += [f for f in view.open_faults.get(d.id, []) if f != "offline"]
            faults += [f"{d.hamlet}: {fault_title(f)}" for f in names]
        label = commune.name + (" (town)" if commune.type == "town" else "")
        table.add_row(label, speakers, boards, Text("; ".join(faults), style="red"))
    return table


def alert_lines(timeline: Timeline, alerts: Sequence[SentAlert], last: int = 8) -> Text:
    """The latest notices delivered, newest last."""
    out = Text()
    for alert in alerts[-last:]:
        out.append(alert_line(timeline, alert))
        out.append("\n")
    return out


def alert_line(timeline: Timeline, alert: SentAlert) -> Text:
    """``14:05:12 | 17:14  ✉ ALERT     Cảnh báo: ... (vn-trangxa-loa-01)``."""
    label, style = {"open": ("ALERT", "bold red"), "recovery": ("RECOVERED", "bold green")}.get(
        alert.event, (alert.event.upper(), "yellow")
    )
    subject = alert.subject.removeprefix("[tincoso] ")
    return Text.assemble(f"{stamp(timeline, alert.received_at)}  ✉ ", (f"{label:<9}", style), f" {subject}")


def screen(
    district: District,
    timeline: Timeline,
    view: FleetView,
    alerts: Sequence[SentAlert],
    now: float,
) -> RenderableType:
    """The whole live view."""
    act = timeline.act_at(now)
    online = sum(1 for d in district.devices if view.online.get(d.id))
    sent = sum(a.event == "open" for a in alerts)
    recovered = sum(a.event == "recovery" for a in alerts)
    head = Text.assemble(
        (f"{district.name} · simulated {clock_text(timeline.sim_at(now))} ", "bold"),
        f"· {act.name} (×{act.speedup:.0f}) · real {local_clock(now)} UTC+7 · ",
        f"online {online}/{len(district.devices)} · readings stored {view.readings_total:,} · ",
        f"alerts sent {sent}, recovered {recovered}",
    )
    span = max(timeline.end - timeline.start, 1.0)
    progress = ProgressBar(total=span, completed=min(max(now - timeline.start, 0.0), span), width=60)
    parts: list[RenderableType] = [head, progress, fleet_table(district, view)]
    if view.error:
        parts.append(Text(view.error, style="yellow"))
    parts.append(Text("Latest alerts delivered (real | simulated time):", style="bold"))
    parts.append(alert_lines(timeline, alerts) if alerts else Text("  none yet", style="dim"))
    return Group(*parts)
