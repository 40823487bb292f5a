"""Dashboards at a glance: colours, words instead of codes, names instead of ids, totals beside counts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from backend.cli import main
from dashboards.build import GENERATED_DIR, commune_names

README = GENERATED_DIR.parent / "README.md"
GENERATED = {path.name: json.loads(path.read_text(encoding="utf-8")) for path in GENERATED_DIR.glob("*.json")}
STATUS_TYPES = ("stat", "table")


def _overrides(panel: dict[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for override in panel["fieldConfig"].get("overrides", []):
        if override["matcher"]["options"] == name:
            props.update({p["id"]: p["value"] for p in override["properties"]})
    return props


def _renames(panel: dict[str, Any]) -> dict[str, str]:
    renames: dict[str, str] = {}
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "organize":
            renames.update(transformation["options"]["renameByName"])
    return renames


def _columns(panel: dict[str, Any]) -> set[str]:
    """Column names the panel's queries return (aliases, selected fields, grouped tags)."""
    names: set[str] = set()
    for target in panel["targets"]:
        query = target["query"]
        outer = re.sub(r"\(\s*SELECT.*\)", "", query)
        names |= set(re.findall(r'AS "(\w+)"', outer))
        select = outer.split(" FROM ")[0]
        names |= set(re.findall(r'(?<![(\w])"(\w+)"(?!\))', select))
        if " GROUP BY " in outer:
            names |= set(re.findall(r'"(\w+)"', outer.rsplit(" GROUP BY ", 1)[1]))
    return names


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_every_stat_and_table_panel_has_colours_or_words(name: str) -> None:
    for panel in GENERATED[name]["panels"]:
        if panel["type"] not in STATUS_TYPES:
            continue
        defaults = panel["fieldConfig"]["defaults"]
        steps = defaults.get("thresholds", {}).get("steps", [])
        has_mappings = bool(defaults.get("mappings")) or any(
            p["id"] == "mappings" for o in panel["fieldConfig"].get("overrides", []) for p in o["properties"]
        )
        assert steps or has_mappings, f"{name} / {panel['title']}: no thresholds or value mappings"
        # Grafana's default is green until 80, red above: a fault count must not use it.
        assert [s.get("value") for s in steps] != [None, 80], f"{name} / {panel['title']}: default thresholds"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_tables_show_named_columns_and_times_as_dates(name: str) -> None:
    for panel in GENERATED[name]["panels"]:
        if panel["type"] != "table":
            continue
        renames = _renames(panel)
        columns = _columns(panel)
        raw = {c for c in columns if "_" in c or c in ("commune", "hamlet", "kind", "device", "status")}
        assert raw <= set(renames), f"{name} / {panel['title']}: raw column names shown: {raw - set(renames)}"
        for column in columns:
            if column.endswith("_ms"):
                unit = _overrides(panel, renames[column]).get("unit")
                assert unit, f"{name} / {panel['title']}: {column} as epoch ms"
                assert unit.startswith("dateTime"), f"{name} / {panel['title']}: {column} as {unit}"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_every_filter_shows_names(name: str) -> None:
    names = commune_names()
    for variable in GENERATED[name].get("templating", {}).get("list", []):
        if variable["name"] == "commune":
            assert variable["type"] == "custom"
            shown = dict(pair.split(" : ") for pair in variable["query"].split(","))
            assert shown == {v: k for k, v in names.items()}
            assert "Tràng Xá" in shown
        if variable["name"] == "kind":
            assert variable["type"] == "custom"
            assert "Cụm loa : speaker_cluster" in variable["query"].split(",")


def test_kpi_result_reads_dat_khong_dat_khong_co_du_lieu_in_colour() -> None:
    kpi = GENERATED["tincoso-kpi.json"]
    for panel in (p for p in kpi["panels"] if p["type"] == "table"):
        status = _overrides(panel, "Kết quả")
        options = status["mappings"][0]["options"]
        assert {k: (v["text"], v["color"]) for k, v in options.items()} == {
            "met": ("Đạt", "green"),
            "not_met": ("Không đạt", "red"),
            "unknown": ("Không có dữ liệu", "gray"),
        }
        assert status["mappings"][1]["options"]["result"]["text"] == "Không có dữ liệu"  # null
        assert status["custom.cellOptions"] == {"type": "color-background"}


def test_fleet_counts_registered_devices_and_shows_totals_beside_counts() -> None:
    fleet = GENERATED["tincoso-fleet.json"]
    stats = {p["title"]: p for p in fleet["panels"] if p["type"] == "stat"}
    online = stats["Đang trực tuyến"]
    assert len(online["targets"]) == 2
    assert 'count("registered")' in online["targets"][1]["query"]
    assert "lat" not in online["targets"][1]["query"]  # devices without coordinates count too
    assert _override_names(online) == ["Đang trực tuyến", "Thiết bị đã đăng ký"]
    faults = stats["Thiết bị đang lỗi"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert faults == [{"value": None, "color": "green"}, {"value": 1, "color": "red"}]


def _override_names(panel: dict[str, Any]) -> list[str]:
    return [
        p["value"]
        for o in panel["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "displayName"
    ]


def test_readme_lists_every_dashboard() -> None:
    text = README.read_text(encoding="utf-8")
    for name in GENERATED:
        assert f"`{name.removesuffix('.json')}`" in text, f"dashboards/README.md does not list {name}"
    assert "the five dashboards" not in text


def test_cli_build_with_a_registry_shows_its_commune_names(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        "district: Thử\ncommunes:\n  - {id: xa-mot, name: Xã Một, radio_system: ip}\ndevices: []\n",
        encoding="utf-8",
    )
    out = tmp_path / "grafana"
    assert main(["dashboards", "build", "--out", str(out), "--registry", str(registry)]) == 0
    fleet = json.loads((out / "dashboards" / "json" / "tincoso-fleet.json").read_text())
    assert fleet["templating"]["list"][0]["query"] == "Xã Một : xa-mot"
