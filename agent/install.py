"""``tincoso-agent install``: lay out what the service needs under a target root.

Files (paths under ``--root``, ``/`` on the controller)::

    etc/tincoso/agent.toml                       from agent/examples/<kind>.toml (kept if present)
    var/lib/tincoso-agent/                       the state dir (queue, reboot markers), 0750
    etc/systemd/system/tincoso-agent.service     ExecStart = this installation's tincoso-agent
    etc/udev/rules.d/70-tincoso-serial.rules     stable serial names, ModemManager kept off
    usr/share/doc/tincoso-agent/README.md        what the unit's Documentation= points at

Nothing is started, enabled or chowned: the output says the commands that do it, so the
same step works in a package build, an image build and on the board itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_STATE_DIR, ConfigError, load

KINDS = ("speaker_cluster", "eboard", "district_led")
UNIT_PATH = "etc/systemd/system/tincoso-agent.service"
UDEV_PATH = "etc/udev/rules.d/70-tincoso-serial.rules"
DOC_PATH = "usr/share/doc/tincoso-agent/README.md"
CONFIG_PATH = "etc/tincoso/agent.toml"
STATE_PATH = DEFAULT_STATE_DIR.lstrip("/")
_EXAMPLE_EXEC = "/opt/tincoso/venv/bin/tincoso-agent"
_EXAMPLE_IDS = {
    "speaker_cluster": "vn-trangxa-loa-03",
    "eboard": "vn-trangxa-bangtin-01",
    "district_led": "vn-huyen-led-01",
}


class InstallError(Exception):
    """The target root cannot be written, or an option is wrong."""


def packaged(*parts: str) -> str:
    """Text of a file shipped inside the agent package (examples, unit, udev rules, README)."""
    return resources.files("agent").joinpath(*parts).read_text(encoding="utf-8")


def default_exec() -> str:
    """This installation's ``tincoso-agent`` script (beside the running Python)."""
    return str(Path(sys.executable).parent / "tincoso-agent")


def install(
    root: Path, kind: str, *, device_id: str | None = None, exec_path: str | None = None
) -> list[str]:
    """Write the files under ``root``; return one line per file (``wrote``/``kept``).

    Raises:
        InstallError: unknown kind, a bad device id, or a file that cannot be written.
    """
    if kind not in KINDS:
        raise InstallError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    config_text = packaged("examples", f"{kind}.toml")
    if device_id is not None:
        config_text = config_text.replace(_EXAMPLE_IDS[kind], device_id)
    unit = packaged("systemd", "tincoso-agent.service").replace(_EXAMPLE_EXEC, exec_path or default_exec())
    lines: list[str] = []
    try:
        lines.append(_write(root / CONFIG_PATH, config_text, 0o640, keep=True))
        state = root / STATE_PATH
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o750)
        lines.append(f"ready  {state}/")
        lines.append(_write(root / UNIT_PATH, unit, 0o644))
        lines.append(_write(root / UDEV_PATH, packaged("udev", "70-tincoso-serial.rules"), 0o644))
        lines.append(_write(root / DOC_PATH, packaged("README.md"), 0o644))
    except OSError as exc:
        raise InstallError(f"cannot write under {root}: {exc}") from None
    if device_id is not None:
        try:
            load(root / CONFIG_PATH)
        except ConfigError as exc:
            raise InstallError(f"the config written is not valid: {exc}") from None
    return lines


def _write(path: Path, text: str, mode: int, keep: bool = False) -> str:
    if keep and path.exists():
        return f"kept   {path} (already there; not overwritten)"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return f"wrote  {path}"


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``install`` subcommand."""
    parser = sub.add_parser(
        "install",
        parents=parents,
        help="lay out config, state dir, systemd unit, udev rules and docs under a root",
        description="Write the example config for --kind (kept if one exists), the state directory, "
        "the systemd unit (ExecStart = this installation), the udev rules for stable serial "
        "names and the README the unit's Documentation= names. Starts nothing.",
    )
    parser.add_argument(
        "--root", default="/", metavar="DIR", help="target root directory (default /; a temp dir to try it)"
    )
    parser.add_argument(
        "--kind", choices=KINDS, default="speaker_cluster", help="which example config to start from"
    )
    parser.add_argument(
        "--device-id", metavar="ID", help="put this device id (and MQTT username) into the new config"
    )
    parser.add_argument(
        "--exec",
        dest="exec_path",
        metavar="PATH",
        help="tincoso-agent path for the unit's ExecStart (default: the one beside this Python)",
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    root = Path(args.root)
    try:
        lines = install(root, args.kind, device_id=args.device_id, exec_path=args.exec_path)
    except InstallError as exc:
        print(f"tincoso-agent install: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    print("next: edit the config ([device] id, [mqtt] host, cafile, password_file), then")
    print(f"  tincoso-agent check-config --config {Path('/') / CONFIG_PATH} --connect")
    print("  useradd --system --groups audio,dialout tincoso")
    print("  udevadm control --reload && udevadm trigger --subsystem-match=tty")
    print("  systemctl daemon-reload && systemctl enable --now tincoso-agent")
    return 0
