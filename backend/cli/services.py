"""``tincoso services up|down|status``: a local Mosquitto and InfluxDB for development."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.localservices import LocalService, LocalServices, ServiceStatus

DEFAULT_DIR = "var/"


def register(subparsers: Subparsers) -> None:
    """Add the ``services`` command and its ``up``, ``down`` and ``status`` actions.

    Args:
        subparsers: The top-level parser's subcommand collection.
    """
    services = subparsers.add_parser(
        "services",
        help="run a local Mosquitto and InfluxDB",
        description="Run Mosquitto and InfluxDB as local processes on 127.0.0.1, with "
        "config, data and logs under --dir, recorded in DIR/services.json.",
    )
    actions = services.add_subparsers(title="actions", metavar="ACTION", required=True)

    up = actions.add_parser(
        "up",
        help="start both in the background",
        description="Start Mosquitto and InfluxDB in the background. Ports recorded in "
        "DIR/services.json are reused; otherwise free ports are picked.",
    )
    _add_dir(up)
    up.add_argument("--mqtt-port", type=_port, help="Mosquitto port (default: free port)")
    up.add_argument("--influx-port", type=_port, help="InfluxDB HTTP port (default: free port)")
    up.add_argument(
        "--secure",
        action="store_true",
        help="no anonymous access: TLS, per-device passwords and ACLs (credentials in DIR/secrets)",
    )
    up.set_defaults(handler=services_up)

    status = actions.add_parser(
        "status",
        help="show pid, port and whether each answers",
        description="Show each service's pid and port and probe it. Exits 1 unless both answer.",
    )
    _add_dir(status)
    status.set_defaults(handler=services_status)

    down = actions.add_parser("down", help="stop both", description="Stop both services; data stays in DIR.")
    _add_dir(down)
    down.set_defaults(handler=services_down)


def services_up(args: argparse.Namespace) -> int:
    """Start the services detached and say where they are."""
    local = LocalServices.open(
        args.dir, mqtt_port=args.mqtt_port, influx_port=args.influx_port, secure=args.secure or None
    )
    already = [service.name for service in local.services if service.running]
    local.start(detach=True)
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Local services in {escape(str(local.root))}:")
    for service in local.services:
        note = "already running" if service.name in already else "started"
        console.print(_service_line(service, f"[green]{note}[/]"))
    console.print(f"Config, data and logs: {escape(str(local.root))}/{{mosquitto,influxdb}}/")
    if local.secrets is not None:
        console.print(
            f"Secure broker: devices connect with TLS to port {local.device_port}, the backend to port "
            f"{local.mosquitto.port} as {escape(local.secrets.ensure_backend()[0])}; "
            f"credentials in {escape(str(local.secrets.directory))} "
            f"(add devices with `tincoso provision DEVICE_ID --dir {escape(str(local.secrets.directory))}`)."
        )
    console.print(f"Stop with: [bold]{escape(_command('down', args.dir))}[/]")
    return EXIT_OK


def services_status(args: argparse.Namespace) -> int:
    """Show each service and probe it; exit 1 unless both answer."""
    local = LocalServices.load(args.dir)
    if local is None:
        raise CliError(f"no services recorded in {args.dir}; start them with `{_command('up', args.dir)}`")
    statuses = local.status()
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Local services in {escape(str(local.root))}:")
    for status in statuses:
        console.print(_status_line(status))
    failing = [status for status in statuses if not status.answering]
    if failing:
        what = ", ".join(f"{status.name} is {_state_word(status)}" for status in failing)
        raise CliError(f"{what}; start with `{_command('up', args.dir)}`")
    return EXIT_OK


def services_down(args: argparse.Namespace) -> int:
    """Stop the services recorded in the directory."""
    local = LocalServices.load(args.dir)
    console = Console(highlight=False, soft_wrap=True)
    if local is None:
        console.print(f"No services recorded in {escape(args.dir)}; nothing to stop.")
        return EXIT_OK
    stopped = local.stop()
    if not stopped:
        console.print(f"Nothing running in {escape(str(local.root))}.")
        return EXIT_OK
    names = " and ".join(f"{name} (pid {pid})" for name, pid in stopped)
    console.print(f"Stopped {names}; data kept in {escape(str(local.root))}.")
    return EXIT_OK


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        help=f"directory for config, data, logs and services.json (default: {DEFAULT_DIR})",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {port}")
    return port


def _command(action: str, directory: str) -> str:
    command = f"tincoso services {action}"
    if Path(directory) != Path(DEFAULT_DIR):
        command += f" --dir {shlex.quote(directory)}"
    return command


def _service_line(service: LocalService, note: str) -> str:
    return f"  {service.name:<10} {escape(service.url):<28} pid {service.pid!s:<8} {note}"


def _status_line(status: ServiceStatus) -> str:
    colour = {"answering": "green", "stopped": "red"}.get(_state_word(status), "yellow")
    pid = f"pid {status.pid}" if status.pid is not None else "-"
    state = f"[{colour}]{_state_word(status)}[/]"
    return f"  {status.name:<10} {escape(status.url):<28} {pid:<12} {state}"


def _state_word(status: ServiceStatus) -> str:
    if status.answering:
        return "answering"
    return "running but not answering" if status.running else "stopped"
