"""The generated dashboards: committed JSON is current, valid for Grafana's model, translated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from backend.cli import main
from dashboards.build import GENERATED_DIR, commune_names, render, to_text
from dashboards.i18n import LANGUAGES, STRINGS, Strings
from dashboards.influxql import DATASOURCE_UID, InfluxQLQuery
from dashboards.provisioning import ProvisioningOptions, write_provisioning

VI = render("vi", communes=commune_names())
EN = render("en", communes=commune_names())


def test_committed_json_is_what_the_generator_renders() -> None:
    committed = {path.name: path.read_text(encoding="utf-8") for path in GENERATED_DIR.glob("*.json")}
    rendered = {name: to_text(dashboard) for name, dashboard in VI.items()}
    assert committed.keys() == rendered.keys(), "run `python -m dashboards` and commit dashboards/generated/"
    stale = [name for name in rendered if committed[name] != rendered[name]]
    assert not stale, f"{stale} differ from the generator: run `python -m dashboards` and commit the result"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_dashboards_round_trip_through_the_grafana_model(lang: str) -> None:
    for name, dashboard in render(lang).items():
        model = dm.Dashboard.from_json(dashboard)
        assert json.loads(json.dumps(model, cls=JSONEncoder)) == dashboard, name
        for panel in model.panels or []:
            assert isinstance(panel, dm.Panel), f"{name}: {panel!r}"
            assert panel.targets, f"{name} / {panel.title} has no query"
            assert all(isinstance(target, InfluxQLQuery) for target in panel.targets), panel.title


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard["panels"])


@pytest.mark.parametrize("name", sorted(VI))
def test_every_panel_queries_the_tincoso_datasource_in_raw_influxql(name: str) -> None:
    dashboard = VI[name]
    assert dashboard["uid"] == name.removesuffix(".json")
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["rawQuery"] is True
            assert target["resultFormat"] in ("time_series", "table")
            assert target["query"].startswith("SELECT "), target["query"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["h"] > 0, panel["title"]


def test_location_dashboards_filter_by_commune_hamlet_and_kind() -> None:
    for name in ("tincoso-fleet.json", "tincoso-device.json", "tincoso-bulletins.json"):
        variables = {v["name"]: v for v in VI[name]["templating"]["list"]}
        assert variables["hamlet"]["query"].startswith("SHOW TAG VALUES"), name
        for tag in ("commune", "hamlet", "kind"):
            assert variables[tag]["multi"]
            assert variables[tag]["includeAll"]


def test_english_dashboards_differ_only_in_text() -> None:
    assert VI.keys() == EN.keys()
    for name in VI:
        assert VI[name]["title"] != EN[name]["title"]
        vi_queries = [t["query"] for p in _panels(VI[name]) for t in p["targets"]]
        en_queries = [t["query"] for p in _panels(EN[name]) for t in p["targets"]]
        assert vi_queries == en_queries
    assert EN["tincoso-fleet.json"]["title"] == "Fleet overview"
    assert VI["tincoso-fleet.json"]["title"] == "Tổng quan thiết bị"


def test_every_string_has_both_languages() -> None:
    missing = [key for key, texts in STRINGS.items() if len(texts) != len(LANGUAGES) or not all(texts)]
    assert not missing


def test_unknown_language_and_key_are_named() -> None:
    with pytest.raises(ValueError, match="'fr'"):
        Strings("fr")
    with pytest.raises(KeyError, match=r"fleet\.nope"):
        Strings("vi")("fleet.nope")


def test_provisioning_files_point_grafana_at_influxdb_and_the_dashboards(tmp_path: Path) -> None:
    options = ProvisioningOptions(influx_url="http://10.0.0.5:8086", database="vo_nhai", username="grafana")
    written = write_provisioning(tmp_path, options)
    source = yaml.safe_load((tmp_path / "datasources" / "tincoso.yaml").read_text())["datasources"][0]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "influxdb"
    assert source["url"] == "http://10.0.0.5:8086"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == "vo_nhai"
    assert source["user"] == "grafana"
    assert source["secureJsonData"]["password"] == "${TINCOSO_INFLUX_PASSWORD}"
    provider = yaml.safe_load((tmp_path / "dashboards" / "tincoso.yaml").read_text())["providers"][0]
    json_dir = Path(provider["options"]["path"])
    assert json_dir.is_absolute()
    assert sorted(p.name for p in json_dir.glob("*.json")) == sorted(VI)
    assert (
        json.loads((json_dir / "tincoso-fleet.json").read_text())["templating"]["list"][0]["type"] == "query"
    )
    assert len(written) == 2 + len(VI)


def test_cli_builds_english_provisioning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grafana"
    assert main(["dashboards", "build", "--out", str(out), "--lang", "en", "--database", "tincoso"]) == 0
    fleet = json.loads((out / "dashboards" / "json" / "tincoso-fleet.json").read_text())
    assert fleet["title"] == "Fleet overview"
    source = yaml.safe_load((out / "datasources" / "tincoso.yaml").read_text())["datasources"][0]
    assert "secureJsonData" not in source
    assert "paths.provisioning" in capsys.readouterr().out


def test_cli_rejects_an_unknown_language(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboards", "build", "--out", str(tmp_path), "--lang", "fr"])
    assert exit_info.value.code == 1
    assert "invalid choice: 'fr'" in capsys.readouterr().err
