"""The ``tincoso`` command line.

Each subcommand lives in its own module of this package, listed in ``COMMANDS``. Such a module
defines ``register(subparsers)``, which adds its parser and sets ``handler`` (a function
taking the parsed arguments and returning the exit code) with ``set_defaults``. Handlers
raise `CliError` (or `ServiceError`) for problems the user can fix; ``main`` prints those as
one line on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backend.cli import (
    acceptance,
    alerts,
    backend,
    dashboards,
    demo,
    digest,
    kpi,
    ops,
    provision,
    server,
    services,
)
from backend.cli.common import EXIT_ERROR, EXIT_OK, CliError, Handler, Parser, Subparsers
from backend.localservices import ServiceError

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_OK", "CliError", "Handler", "Subparsers", "build_parser", "main"]

# Roles first: run the services, provision devices, run the backend, look at the fleet,
# report, accept equipment; then the tools around them.
COMMANDS = (services, provision, backend, ops, alerts, kpi, digest, acceptance, dashboards, demo, server)


def _version() -> str:
    """The installed distribution's version (a source checkout without metadata: unknown)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tincoso")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The parser with every registered subcommand.

    Returns:
        The top-level parser.
    """
    parser = Parser(
        prog="tincoso",
        description="Monitor commune speaker clusters, e-boards and LED boards.",
    )
    parser.add_argument("--version", action="version", version=f"tincoso {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tincoso`` with ``argv`` (default: the process arguments).

    Args:
        argv: Arguments after the program name.

    Returns:
        The exit code: 0 on success, 1 on error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return handler(args)
    except (CliError, ServiceError) as error:
        # Multi-line service errors carry a log tail: the first line is the message.
        lines = str(error).splitlines() or [type(error).__name__]
        print(f"tincoso: error: {lines[0]}", file=sys.stderr)
        if len(lines) > 1:
            print("\n".join(lines[1:]), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
