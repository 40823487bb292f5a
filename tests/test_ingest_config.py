"""backend.toml: typed sections, clear errors, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.cli import main
from backend.config import ConfigError, config_from_dict, load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "backend" / "examples" / "backend.toml"


def test_example_config_loads_with_paths_relative_to_it() -> None:
    config = load_config(EXAMPLE)
    assert config.mqtt.shared_group == "tincoso-ingest"
    assert config.mqtt.port == 1883
    assert config.mqtt.protocol == 4
    assert config.registry_path == str(EXAMPLE.parent / "registry.yaml")
    assert Path(config.spool.dir).is_relative_to(EXAMPLE.parent)
    assert config.section("monitor") == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mqtt": {"urll": "mqtt://x"}}, "mqtt.urll is not a known setting"),
        ({"mqtt": {"url": "http://x"}}, "mqtt.url must start with mqtt://"),
        ({"ingest": {"batch_points": "5000"}}, "ingest.batch_points must be int, got str"),
        ({"ingest": {"batch_points": 0}}, "ingest.batch_points must be >= 1"),
        ({"ingest": {"idle_flush_ms": -5}}, r"ingest.idle_flush_ms must be >= 0 \(0 = off\), got -5"),
        ({"influx": {"gzip": 1}}, "influx.gzip must be bool"),
        ({"spool": {"max_mb": -1}}, r"spool.max_mb must be >= 0 \(0 = no cap\)"),
        ({"mqtt": {"shared_group": "a/b"}}, "mqtt.shared_group must not contain"),
        ({"ingset": {}}, r"\[ingset\] is not a known section"),
    ],
)
def test_bad_settings_are_named(raw: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_and_broken_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "backend.toml"
    broken.write_text("[mqtt\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_passwords_do_not_appear_in_reprs() -> None:
    config = config_from_dict(
        {"mqtt": {"password": "s3cret-mqtt"}, "influx": {"username": "u", "password": "s3cret-influx"}}
    )
    assert "s3cret" not in repr(config)
    assert config.influx.password == "s3cret-influx"


def test_monitor_and_alert_sections_are_kept_for_the_monitor() -> None:
    config = config_from_dict({"monitor": {"heartbeat_timeout_s": 90}, "alerts": {"smtp": {"host": "x"}}})
    assert config.section("monitor") == {"heartbeat_timeout_s": 90}
    assert config.section("alerts")["smtp"] == {"host": "x"}


def test_backend_command_reports_a_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "backend.toml"
    config.write_text('[ingest]\nbatch_points = "many"\n', encoding="utf-8")
    assert main(["backend", "--config", str(config), "--role", "ingest"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tincoso: error: ingest.batch_points must be int, got str 'many'"]


def test_backend_command_needs_a_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "backend.toml"
    config.write_text("[mqtt]\nurl = 'mqtt://127.0.0.1:1'\n", encoding="utf-8")
    assert main(["backend", "--config", str(config)]) == 1
    assert "[registry] path is required" in capsys.readouterr().err
