"""Render every dashboard to Grafana JSON, and keep ``dashboards/generated/`` up to date.

``python -m dashboards`` rewrites ``generated/*.json`` (Vietnamese, committed so reviews
see the diff); a test fails when the committed files differ from what this renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import backend_health, boards, bulletins, device, fleet, kpi
from dashboards.i18n import Strings
from protocols.stored_data import SOUND_THRESHOLD_DBFS, SOUND_THRESHOLD_VARIABLE, check_sound_threshold

GENERATED_DIR = Path(__file__).parent / "generated"
# generated/ shows the example district's commune names (Võ Nhai); a deployment builds or
# pushes with its own registry.
EXAMPLE_REGISTRY = Path(__file__).parent.parent / "backend" / "examples" / "registry.yaml"
MODULES = (fleet, device, bulletins, boards, backend_health, kpi)


def commune_names(registry_path: Path = EXAMPLE_REGISTRY) -> dict[str, str]:
    """Commune id -> name from a registry file (raises ``backend.registry.RegistryError``)."""
    from backend.registry import load_registry

    registry = load_registry(registry_path)
    return {commune.id: commune.name for commune in registry.communes.values()}


def render(
    lang: str = "vi",
    sound_threshold_dbfs: float = SOUND_THRESHOLD_DBFS,
    *,
    communes: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana JSON, keyed by file name (``<uid>.json``).

    Args:
        lang: ``vi`` or ``en``.
        sound_threshold_dbfs: backend.toml's ``[definitions]`` threshold, the value of the
            hidden constant ``$sound_threshold`` of every dashboard whose queries use it.
        communes: commune id -> name for the commune filter and columns; None lists ids.

    Raises:
        ValueError: Unknown language, or a threshold out of range.
    """
    t = Strings(lang, communes)
    threshold = check_sound_threshold(sound_threshold_dbfs)
    out: dict[str, dict[str, Any]] = {}
    for module in MODULES:
        model: dm.Dashboard = module.build(t).build()
        dashboard = json.loads(json.dumps(model, cls=JSONEncoder))
        add_constants(dashboard, {SOUND_THRESHOLD_VARIABLE: f"{threshold:g}"})
        out[f"{module.UID}.json"] = dashboard
    return out


def add_constants(dashboard: dict[str, Any], constants: dict[str, str]) -> None:
    """Add each constant some panel query uses as a hidden ``constant`` template variable."""
    text = json.dumps(dashboard.get("panels", []))
    for name, value in constants.items():
        if f"${name}" not in text:
            continue
        variable = db.ConstantVariable(name).value(value).build()
        dashboard.setdefault("templating", {}).setdefault("list", []).append(
            json.loads(json.dumps(variable, cls=JSONEncoder))
        )


def constants_of(dashboard: dict[str, Any]) -> dict[str, str]:
    """The dashboard's constant variables, name -> value (what Grafana substitutes)."""
    variables = dashboard.get("templating", {}).get("list", [])
    return {v["name"]: str(v["query"]) for v in variables if v.get("type") == "constant"}


def to_text(dashboard: dict[str, Any]) -> str:
    """The canonical file text of a dashboard: stable key order, UTF-8, trailing newline."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(
    out_dir: Path,
    lang: str = "vi",
    sound_threshold_dbfs: float = SOUND_THRESHOLD_DBFS,
    *,
    communes: dict[str, str] | None = None,
) -> list[Path]:
    """Write every dashboard into ``out_dir``; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in render(lang, sound_threshold_dbfs, communes=communes).items():
        path = out_dir / name
        path.write_text(to_text(dashboard), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    """Regenerate ``dashboards/generated/`` and say which files changed."""
    before = {path.name: path.read_text(encoding="utf-8") for path in GENERATED_DIR.glob("*.json")}
    for path in write_dashboards(GENERATED_DIR, communes=commune_names()):
        state = "unchanged" if before.get(path.name) == path.read_text(encoding="utf-8") else "written"
        print(f"{path}: {state}")
    for stale in sorted(before.keys() - set(render())):
        (GENERATED_DIR / stale).unlink()
        print(f"{GENERATED_DIR / stale}: removed")
