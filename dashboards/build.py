"""Render every dashboard to Grafana JSON, and keep ``dashboards/generated/`` up to date.

``python -m dashboards`` rewrites ``generated/*.json`` (Vietnamese, committed so reviews
see the diff); a test fails when the committed files differ from what this renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import backend_health, boards, bulletins, device, fleet, kpi
from dashboards.i18n import Strings

GENERATED_DIR = Path(__file__).parent / "generated"
MODULES = (fleet, device, bulletins, boards, backend_health, kpi)


def render(lang: str = "vi") -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana JSON, keyed by file name (``<uid>.json``).

    Args:
        lang: ``vi`` or ``en``.

    Raises:
        ValueError: Unknown language.
    """
    t = Strings(lang)
    out: dict[str, dict[str, Any]] = {}
    for module in MODULES:
        model: dm.Dashboard = module.build(t).build()
        out[f"{module.UID}.json"] = json.loads(json.dumps(model, cls=JSONEncoder))
    return out


def to_text(dashboard: dict[str, Any]) -> str:
    """The canonical file text of a dashboard: stable key order, UTF-8, trailing newline."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(out_dir: Path, lang: str = "vi") -> list[Path]:
    """Write every dashboard into ``out_dir``; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in render(lang).items():
        path = out_dir / name
        path.write_text(to_text(dashboard), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    """Regenerate ``dashboards/generated/`` and say which files changed."""
    before = {path.name: path.read_text(encoding="utf-8") for path in GENERATED_DIR.glob("*.json")}
    for path in write_dashboards(GENERATED_DIR):
        state = "unchanged" if before.get(path.name) == path.read_text(encoding="utf-8") else "written"
        print(f"{path}: {state}")
    for stale in sorted(before.keys() - set(render())):
        (GENERATED_DIR / stale).unlink()
        print(f"{GENERATED_DIR / stale}: removed")
