"""Run the portable core's test scripts under real MicroPython 1.27 (Node.js + WebAssembly)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "tests" / "micropython" / "run.mjs"
SCRIPTS = sorted((REPO / "tests" / "micropython").glob("mp_*.py"))

pytestmark = pytest.mark.micropython


def run_micropython(script: Path) -> subprocess.CompletedProcess[str]:
    """Run one script under MicroPython; fail with a how-to-fix message if it cannot start."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run `make test` (it installs nodejs and npm)")
    if not (REPO / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").is_dir():
        pytest.fail("MicroPython npm package missing: run `npm ci` or `make test`")
    return subprocess.run(
        [node, str(HARNESS), "--repo", str(REPO), str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_portable_code_passes_under_real_micropython(script: Path) -> None:
    proc = run_micropython(script)
    lines = proc.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    passed = [line for line in lines if line.startswith("PASS")]
    assert proc.returncode == 0, f"MicroPython run failed:\n{proc.stdout}\n{proc.stderr}"
    assert not failed, "\n".join(failed)
    assert passed, f"no MicroPython test ran:\n{proc.stdout}\n{proc.stderr}"


def test_harness_reports_a_failing_script(tmp_path: Path) -> None:
    script = tmp_path / "mp_broken.py"
    script.write_text(
        "from mptest import test, run\n@test\ndef boom():\n    assert 1 == 2, 'one is not two'\nrun()\n"
    )
    proc = run_micropython(script)
    assert proc.returncode == 1
    assert "FAIL boom" in proc.stdout
