"""Names every ``tincoso`` subcommand module shares: the user-facing error and parser types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn, TypeAlias

Handler = Callable[[argparse.Namespace], int]
# argparse has no public name for the object add_subparsers() returns.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_ERROR = 1


class CliError(Exception):
    """A problem the user can fix; its message is shown without a traceback."""


class Parser(argparse.ArgumentParser):
    """Usage errors exit 1 like every other error, not argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")
