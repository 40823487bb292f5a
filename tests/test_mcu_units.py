"""The MCU agent's clock, flash counter, drop counting and receipt-driven outbox, under
MicroPython's unix port."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.mcu_support import REPO, micropython_binary

pytestmark = pytest.mark.micropython
SCRIPTS = {"mcu_units": 5, "mcu_outbox": 7}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_mcu_agent_units_pass_under_micropython(tmp_path: Path, name: str) -> None:
    script = REPO / "tests" / "micropython_unix" / f"{name}.py"
    runner = f"SCRIPT_ARGS = [{str(script)!r}, {str(tmp_path)!r}]\nexec(open({str(script)!r}).read())\n"
    path = ".frozen:" + str(REPO) + ":" + str(REPO / "tests" / "micropython")
    proc = subprocess.run(
        [micropython_binary(), "-c", runner],
        env=dict(os.environ, MICROPYPATH=path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [line for line in lines if line.startswith("FAIL")]
    assert len([line for line in lines if line.startswith("PASS")]) == SCRIPTS[name], proc.stdout
