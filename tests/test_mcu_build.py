"""The MicroPython agent's build: every board module compiles with mpy-cross and imports as .mpy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent import mcu_build
from tests.mcu_support import micropython_binary

pytestmark = pytest.mark.micropython


def test_every_board_module_compiles_to_mpy_and_imports_under_micropython(tmp_path: Path) -> None:
    made = mcu_build.compile_mpy(tmp_path)
    assert len(made) == len(mcu_build.board_modules())
    assert (tmp_path / "main.py").exists()
    names = [str(p.relative_to(tmp_path / "lib").with_suffix("")).replace("/", ".") for p in made]
    imports = [n for n in names if not n.endswith(("board_esp32", "__init__"))]
    script = "import " + ", ".join(imports) + f"\nprint('imported', {len(imports)})\n"
    # Only the .mpy files are on the path: a module that did not compile cannot import.
    proc = subprocess.run(
        [micropython_binary(), "-c", script],
        env=dict(os.environ, MICROPYPATH=".frozen:" + str(tmp_path / "lib")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"imported {len(imports)}" in proc.stdout
