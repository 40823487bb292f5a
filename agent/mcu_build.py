"""Build and check the MicroPython agent: type check against the ESP32 stubs, compile to .mpy.

    python -m agent.mcu_build typecheck      # mypy on agent/micropython/ with ESP32 stubs
    python -m agent.mcu_build mpy DIR        # every board module as .mpy under DIR/lib, main.py

The stubs come from PyPI (``micropython-esp32-stubs``, ``micropython-stdlib-stubs``) and
install their ``.pyi`` files straight into site-packages; mypy cannot take site-packages
as a search path, so the stub files are gathered into ``build/mcu-stubs`` first.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What goes on the board: the portable packages and the MCU agent.
BOARD_PACKAGES = ("protocols", "agent/core", "agent/micropython")
# protocols/ modules that are CPython tooling, not needed on a board.
HOST_ONLY = {"protocols/docgen.py", "protocols/examples.py"}


def board_modules() -> list[Path]:
    """Every module copied to a board, relative to the repository."""
    out = [Path("agent/__init__.py")]
    for package in BOARD_PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            rel = path.relative_to(REPO)
            if str(rel) not in HOST_ONLY and rel.name != "main.py":
                out.append(rel)
    return out


def gather_stubs(target: Path) -> Path:
    """Copy the ESP32 and MicroPython stdlib stubs into ``target``; return it."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for dist in ("micropython-esp32-stubs", "micropython-stdlib-stubs"):
        files = importlib.metadata.distribution(dist).files or []
        for f in files:
            if f.suffix != ".pyi" and f.name != "VERSIONS":
                continue
            dest = target / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.locate(), dest)
    return target


def typecheck(stubs: Path) -> int:
    """mypy on agent/micropython/ against the stubs (MicroPython's stdlib as typeshed)."""
    gather_stubs(stubs)
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(REPO / "agent" / "micropython" / "mypy.ini"),
        "--custom-typeshed-dir",
        str(stubs),
        "agent/micropython",
    ]
    return subprocess.run(command, cwd=REPO, env={"MYPYPATH": str(stubs), "PATH": ""}, check=False).returncode


def compile_mpy(out: Path) -> list[Path]:
    """Compile every board module with mpy-cross into ``out/lib``; copy main.py beside it."""
    made = []
    for rel in board_modules():
        dest = out / "lib" / rel.with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-o", str(dest), "-s", str(rel), str(rel)],
            cwd=REPO,
            check=True,
        )
        made.append(dest)
    shutil.copyfile(REPO / "agent" / "micropython" / "main.py", out / "main.py")
    return made


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["typecheck"]:
        return typecheck(REPO / "build" / "mcu-stubs")
    if args[:1] == ["mpy"] and len(args) == 2:
        made = compile_mpy(Path(args[1]).resolve())
        print(f"{len(made)} modules compiled to .mpy under {args[1]}/lib, main.py beside it")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
