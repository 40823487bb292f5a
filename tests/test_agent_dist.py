"""The agent's own wheel: built from this tree, installed into a fresh venv without the
server stack, laid out under a temporary root, checked there."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))
import build_agent_wheel  # noqa: E402

pytestmark = pytest.mark.slow


def test_wheel_installs_without_server_dependencies_and_lays_out_a_root(tmp_path: Path) -> None:
    wheel = build_agent_wheel.build(tmp_path / "dist")
    report = build_agent_wheel.try_wheel(wheel, tmp_path)
    packages = report["packages"]
    assert isinstance(packages, list)
    assert set(packages) == {"tincoso-agent", "aiomqtt", "paho-mqtt", "pyserial"}, packages
    assert not [p for p in build_agent_wheel.SERVER_ONLY if p in packages]
    agent = Path(str(report["venv"])) / "bin" / "tincoso-agent"
    python = Path(str(report["venv"])) / "bin" / "python"
    importing = subprocess.run([str(python), "-c", "import backend"], capture_output=True, cwd=tmp_path)
    assert importing.returncode != 0, "the agent wheel carries the backend"
    version = subprocess.run([str(agent), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == "tincoso-agent 0.1.0"

    root = tmp_path / "root"
    out = subprocess.run(
        [str(agent), "install", "--root", str(root), "--kind", "speaker_cluster"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    print(out)
    unit = (root / "etc/systemd/system/tincoso-agent.service").read_text()
    assert f"ExecStart={agent} --config /etc/tincoso/agent.toml" in unit
    assert "Type=notify" in unit
    assert "WatchdogSec=" in unit
    doc = next(line for line in unit.splitlines() if line.startswith("Documentation="))
    assert (root / doc.removeprefix("Documentation=file:///")).is_file(), doc
    rules = (root / "etc/udev/rules.d/70-tincoso-serial.rules").read_text()
    assert 'SYMLINK+="tincoso-power-meter"' in rules
    assert 'ENV{ID_MM_PORT_IGNORE}="1"' in rules
    state = root / "var/lib/tincoso-agent"
    assert state.is_dir()
    assert oct(state.stat().st_mode & 0o777) == "0o750"
    config = root / "etc/tincoso/agent.toml"
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    assert config.read_text() == (REPO / "agent/examples/speaker_cluster.toml").read_text()

    check = subprocess.run(
        [str(agent), "check-config", "--config", str(config), "--no-probes"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    print(check.stdout)
    # The example names the controller's files; in a bare root each missing one is a line.
    assert check.returncode == 2
    invalid = [line for line in check.stdout.splitlines() if line.startswith("INVALID")]
    assert (
        invalid[:2]
        == [
            "INVALID: [mqtt] cafile /etc/tincoso/ca.pem: no such file",
            "INVALID: [mqtt] password_file /etc/tincoso/mqtt-password: no such file",
        ]
        or Path("/etc/tincoso").exists()
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    from agent.install import install

    root = tmp_path / "root"
    install(root, "eboard", exec_path=str(Path(sys.executable).parent / "tincoso-agent"))
    unit = root / "etc/systemd/system/tincoso-agent.service"
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    # Only problems in our unit count (the host's own units may have theirs).
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "tincoso-agent.service" in line]
    assert not ours, ours
