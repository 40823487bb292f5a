"""Charts of the KPI report as PNG data URIs (matplotlib, Agg backend, DejaVu Sans for Vietnamese).

Matplotlib is imported inside the functions so that computing or storing a report does not
load it.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from backend.kpi.i18n import Text
from backend.kpi.model import KpiReport

__all__ = ["availability_chart", "bulletin_heatmap"]

_STATUS_CODE = {"sounded": 2, "silent": 0, "no_data": 1}
_COLORS = ("#d62728", "#c7c7c7", "#2ca02c")  # silent, no data, sounded


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.family"] = "DejaVu Sans"
    plt.rcParams["font.size"] = 8
    return plt


def _data_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def availability_chart(report: KpiReport, names: dict[str, str], t: Text) -> str:
    """Per commune: % of scheduled bulletins sounded, and % of operating hours its e-board showed content."""
    plt = _pyplot()
    communes = list(names)
    bulletins: list[float | None] = []
    boards: list[float | None] = []
    for commune in communes:
        mine = [c for c in report.clusters if c.commune == commune]
        # Over the bulletins with data: one without data is neither sounded nor silent.
        measured = sum(c.scheduled - c.no_data for c in mine)
        bulletins.append(100.0 * sum(c.sounded for c in mine) / measured if measured else None)
        lit = [b.value_pct for b in report.boards if b.commune == commune and b.kind == "eboard"]
        boards.append(max((v for v in lit if v is not None), default=None))
    fig, ax = plt.subplots(figsize=(7.0, 0.35 * len(communes) + 1.0))
    positions = range(len(communes))
    ax.barh(
        [p + 0.2 for p in positions],
        [v or 0.0 for v in bulletins],
        height=0.4,
        color="#1f77b4",
        label=t("chart.bulletins_pct"),
    )
    ax.barh(
        [p - 0.2 for p in positions],
        [v or 0.0 for v in boards],
        height=0.4,
        color="#ff7f0e",
        label=t("chart.board_pct"),
    )
    for p, (sounded_pct, lit_pct) in enumerate(zip(bulletins, boards, strict=True)):
        for offset, value in ((0.2, sounded_pct), (-0.2, lit_pct)):
            if value is None:  # no data is written out, never drawn as 0 %
                ax.text(1, p + offset, t("verdict.no_data"), va="center", fontsize=6, color="#555555")
    ax.set_yticks(list(positions), [names[c] for c in communes])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_title(t("chart.availability"))
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    uri = _data_uri(fig)
    plt.close(fig)
    return uri


def bulletin_heatmap(report: KpiReport, t: Text) -> str | None:
    """One row per hamlet cluster, one column per scheduled bulletin: sounded, silent or no data."""
    if not report.bulletins:
        return None
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    columns = sorted({(b.start_ms, b.name) for b in report.bulletins})
    index = {start: i for i, (start, _) in enumerate(columns)}
    rows = sorted({(b.commune, b.hamlet, b.device) for b in report.bulletins})
    row_index = {device: i for i, (_, _, device) in enumerate(rows)}
    grid = [[float("nan")] * len(columns) for _ in rows]
    for b in report.bulletins:
        grid[row_index[b.device]][index[b.start_ms]] = _STATUS_CODE[b.status]
    fig, ax = plt.subplots(figsize=(7.0, 0.3 * len(rows) + 1.4))
    ax.imshow(grid, aspect="auto", cmap=ListedColormap(_COLORS), vmin=0, vmax=2, interpolation="nearest")
    step = max(1, len(columns) // 16)
    ticks = list(range(0, len(columns), step))
    ax.set_xticks(ticks, [f"{t.day(columns[i][0])[:5]} {columns[i][1][-11:-6]}" for i in ticks], rotation=60)
    ax.set_yticks(list(range(len(rows))), [hamlet for _, hamlet, _ in rows])
    ax.set_title(t("chart.heatmap"), loc="left")
    legend = [Patch(color=_COLORS[code], label=t(f"status.{s}")) for s, code in _STATUS_CODE.items()]
    ax.legend(handles=legend, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=7, frameon=False)
    uri = _data_uri(fig)
    plt.close(fig)
    return uri
