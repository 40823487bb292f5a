"""``python -m hil_tests.demo [options]`` (what ``tincoso demo`` runs): the Võ Nhai demo.

Exit codes: 0 the day ran and every reading is accounted for; 1 an error, or the audit
found a reading lost or duplicated; 130 interrupted (Ctrl-C or SIGTERM), after stopping
everything.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from rich.console import Console

from backend.localservices import ServiceError
from hil_tests.demo.runner import Demo, DemoOptions
from hil_tests.demo.stack import DemoError

DEFAULT_SPEED = 60.0
# The real day splits as bulletin : daytime : bulletin : evening = 4 : 4 : 4 : 1.
_SHARES = 13


def parser() -> argparse.ArgumentParser:
    """The demo's options."""
    p = argparse.ArgumentParser(
        prog="tincoso demo",
        description="Run tincoso on local services with a simulated Võ Nhai district: every device a real "
        "agent process on simulated hardware, one accelerated day with scripted faults, alerts delivered "
        "to a local SMTP server and webhook receiver, then a summary and an audit of every reading.",
    )
    p.add_argument(
        "--dir", type=Path, default=Path("var/demo"), help="demo data, wiped each run (default: var/demo)"
    )
    p.add_argument(
        "--fleet-size",
        type=int,
        default=2,
        metavar="N",
        help="hamlet speaker clusters per commune (default: 2)",
    )
    p.add_argument(
        "--communes",
        type=int,
        default=15,
        metavar="K",
        help="take part: the first K of the 15 units (default: 15)",
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help=f"bulletins play X times faster than real (default: {DEFAULT_SPEED:g}, one real minute each)",
    )
    pace.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="real seconds from the morning bulletin to 22:00 instead",
    )
    p.add_argument(
        "--no-align",
        action="store_true",
        help="start at once instead of on a minute boundary (registry windows are whole minutes, "
        "so the dead-air rule is turned off)",
    )
    p.add_argument("--no-kpi", action="store_true", help="skip the KPI report at the end")
    p.add_argument("--no-pdf", action="store_true", help="KPI report without the PDF")
    p.add_argument(
        "--keep-services", action="store_true", help="leave Mosquitto and InfluxDB running after the summary"
    )
    return p


def options_from(args: argparse.Namespace) -> DemoOptions:
    """Turn the flags into :class:`DemoOptions` (act lengths from ``--speed`` or ``--duration``).

    Raises:
        DemoError: a value out of range, with what is allowed.
    """
    if args.duration is not None:
        if args.duration < 13:
            raise DemoError(f"--duration must be at least 13 seconds, got {args.duration:g}")
        unit = args.duration / _SHARES
        bulletin = day = 4 * unit
    else:
        speed = DEFAULT_SPEED if args.speed is None else args.speed
        if not 1 <= speed <= 3600:
            raise DemoError(f"--speed must be between 1 and 3600, got {speed:g}")
        bulletin = day = 3600 / speed
        unit = bulletin / 4
    return DemoOptions(
        directory=args.dir,
        fleet_size=args.fleet_size,
        communes=args.communes,
        bulletin_s=bulletin,
        day_s=day,
        night_s=unit,
        align=not args.no_align,
        kpi=not args.no_kpi,
        pdf=not args.no_pdf,
        keep_services=args.keep_services,
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; the exit code (see the module doc)."""
    args = parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 160  # piped or captured: one event per line
    # SIGTERM takes the same path as Ctrl-C: stop everything, children first. SIGINT is set
    # too, because a shell starting us in the background leaves it ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        demo = Demo(options_from(args), console)
    except (DemoError, ValueError) as exc:  # bad options: the message names them
        return _error(exc)
    try:
        return demo.run()
    except (DemoError, ServiceError) as exc:
        return _error(exc)
    except KeyboardInterrupt:
        return 130


def _error(exc: Exception) -> int:
    lines = str(exc).splitlines() or [type(exc).__name__]
    print(f"tincoso demo: error: {lines[0]}", file=sys.stderr)
    if len(lines) > 1:
        print("\n".join(lines[1:]), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
