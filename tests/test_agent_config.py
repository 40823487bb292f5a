"""Agent config: errors name the key; the shipped example configs are valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, load

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "agent" / "examples").glob("*.toml"))
AGENT = Path(sys.executable).parent / "tincoso-agent"


def _config(**sections: dict[str, object]) -> AgentConfig:
    raw: dict[str, object] = {"device": {"id": "vn-trangxa-loa-03", "kind": "speaker_cluster"}}
    raw.update(sections)
    return AgentConfig(raw)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"mqtt": {"port": "abc"}}, "[mqtt] port must be an integer 1-65535, got 'abc'"),
        ({"mqtt": {"port": 70000}}, "[mqtt] port must be an integer 1-65535, got 70000"),
        ({"mqtt": {"port": True}}, "[mqtt] port must be an integer"),
        ({"mqtt": {"hots": "x"}}, "[mqtt] unknown key 'hots'"),
        ({"reporting": {"heartbeat_s": 0}}, "[reporting] heartbeat_s must be a number 1-86400, got 0"),
        ({"device": {"id": "Loa 03", "kind": "speaker_cluster"}}, "[device] id"),
        ({"device": {"kind": "speaker_cluster"}}, "[device] id is missing"),
        ({"device": {"id": "x", "kind": "radio"}}, "[device] kind must be one of speaker_cluster"),
        ({"commands": {"player": 5}}, "[commands] player must be a command"),
        ({"clock": {"sync_check": "ntp"}}, "[clock] sync_check must be one of adjtimex, timedatectl, none"),
        ({"probes": {"audio": 3}}, "[probes.audio] must be a table"),
        ({"extra": {}}, "unknown section [extra]"),
    ],
)
def test_invalid_config_names_the_key(sections: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(**sections)
    assert message in str(info.value)


def test_defaults() -> None:
    c = _config()
    assert (c.mqtt_host, c.mqtt_port, c.heartbeat_s) == ("127.0.0.1", 1883, 30.0)
    assert c.player == ["aplay", "-q", "{wav}"]
    assert not c.allow_reboot


def test_command_given_as_a_string_is_split_like_a_shell() -> None:
    c = _config(commands={"set_volume": "amixer sset 'Master Front' {level}%"})
    assert c.set_volume == ["amixer", "sset", "Master Front", "{level}%"]


def test_unreadable_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_configs_are_valid(path: Path, tmp_path: Path) -> None:
    config = load(path)
    assert config.device_kind == path.stem


def test_examples_cover_every_device_kind() -> None:
    assert {p.stem for p in EXAMPLES} == {"speaker_cluster", "eboard", "district_led"}


def test_cli_reports_a_bad_config_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[device]\nid = "vn-x-loa-01"\nkind = "speaker_cluster"\n[mqtt]\nport = "abc"\n')
    proc = subprocess.run([str(AGENT), "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "[mqtt] port must be an integer 1-65535, got 'abc'" in proc.stderr


def test_check_config_probes_each_device_once(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[device]\nid = "vn-x-loa-01"\nkind = "speaker_cluster"\nstate_dir = "{tmp_path}"\n'
        "[probes.system]\n"
        '[probes.power_meter]\nurl = "socket://127.0.0.1:9"\ntimeout_s = 0.2\n'
    )
    proc = subprocess.run(
        [str(AGENT), "check-config", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert "config" in proc.stdout
    assert "probe system: OK" in proc.stdout
    assert "probe power_meter: FAULT" in proc.stdout
    assert proc.returncode == 1
