"""``tincoso demo [options]``: the Võ Nhai district demo (what ``make demo`` runs).

The demo is built on the hardware-in-loop rig (``hil_tests``), which the backend must not
import. So this command only checks that the rig is installed and then *replaces itself*
(``os.execv``) with ``python -m hil_tests.demo`` and the same options: one process, so
Ctrl-C and SIGTERM reach the demo directly, and its exit code is the command's. Every
option, including ``--help``, is the demo's own.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from backend.cli.common import CliError, Subparsers

DEMO_MODULE = "hil_tests.demo"


def register(subparsers: Subparsers) -> None:
    """Add the ``demo`` command (options are passed through to the demo).

    Args:
        subparsers: The top-level parser's subcommand collection.
    """
    parser = subparsers.add_parser(
        "demo",
        help="run a simulated Võ Nhai district on local services (tincoso demo --help for options)",
        description="Run the Võ Nhai district demo (python -m hil_tests.demo).",
        add_help=False,
        # No option prefix of its own: "--fleet-size 3" and "--help" are passed through untouched.
        prefix_chars="+",
    )
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the demo's options (see --help)")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Exec the demo with the given options (does not return on success).

    Raises:
        CliError: the HIL rig that the demo runs on is not installed.
    """
    # find_spec on the top-level name locates the package without importing it.
    if importlib.util.find_spec(DEMO_MODULE.split(".")[0]) is None:
        raise CliError(
            f"the demo needs the {DEMO_MODULE.split('.')[0]} package (the HIL rig); "
            "run it from a source checkout installed with `pip install -e '.[dev]'` (make demo does)"
        )
    command = [sys.executable, "-m", DEMO_MODULE, *args.options]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
