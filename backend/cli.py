"""The ``tincoso`` command line.

Each subcommand lives in its own module, listed in ``SUBCOMMAND_MODULES``. Such a module
defines ``register(subparsers)``, which adds its parser and sets ``handler`` (a function
taking the parsed arguments and returning the exit code) with ``set_defaults``. Handlers
raise `CliError` (or `ServiceError`) for problems the user can fix; ``main`` prints those as
one line on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeAlias

from backend.localservices import ServiceError

SUBCOMMAND_MODULES = (
    "backend.cli_services",
    "backend.cli_provision",
    "backend.cli_backend",
    "backend.cli_dashboards",
    "backend.cli_ops",
    "backend.cli_kpi",
    "backend.cli_acceptance",
    "backend.cli_demo",
)

Handler = Callable[[argparse.Namespace], int]
# argparse has no public name for the object add_subparsers() returns.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_ERROR = 1


class CliError(Exception):
    """A problem the user can fix; its message is shown without a traceback."""


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1 like every other error, not argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every registered subcommand.

    Returns:
        The top-level parser.
    """
    parser = _Parser(
        prog="tincoso",
        description="Monitor commune speaker clusters, e-boards and LED boards.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
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


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy, so that CliError raised by
    # subcommand modules (which import backend.cli) is the class caught here.
    from backend.cli import main as _main

    sys.exit(_main())
