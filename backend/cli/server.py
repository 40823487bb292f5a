"""``tincoso server``: install and run tincoso on a district's Debian 12 server.

    tincoso server install --config server.toml [--dry-run]   configs, units, certificates
    tincoso server influx-init --config /etc/tincoso/server.toml   (the InfluxDB unit runs it)
    tincoso server doctor --config /etc/tincoso/server.toml        what is wrong, what to do
    tincoso server backup --config ... ; tincoso server restore --config ... [BACKUP]

See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from backend.cli.common import EXIT_ERROR, EXIT_OK, CliError, Subparsers
from backend.server.render import UNITS
from backend.server.settings import ServerConfig, ServerConfigError, load_server_config


def register(subparsers: Subparsers) -> None:
    """Add the ``server`` command and its actions."""
    server = subparsers.add_parser(
        "server",
        help="install tincoso on the district server",
        description="Generate and install what a district server runs (Mosquitto, InfluxDB, the "
        "backend's units, Grafana provisioning, log rotation, backups) from one server.toml.",
    )
    actions = server.add_subparsers(title="actions", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install",
        help="write configs, units and certificates (idempotent)",
        description="Write every file server.toml describes; unchanged files are left alone, data "
        "is never touched. Under a running systemd the units are enabled and (re)started.",
    )
    install.add_argument("--config", required=True, type=Path, help="server.toml")
    install.add_argument("--dry-run", action="store_true", help="create nothing; list what would be written")
    install.add_argument("--no-start", action="store_true", help="do not enable or start the units")
    install.set_defaults(handler=server_install)
    init = actions.add_parser(
        "influx-init",
        help="database, least-privilege users, retention and rollups (run by the InfluxDB unit)",
        description="Wait for InfluxDB, create the admin on first start, then keep the database, the "
        "ingest (WRITE), monitor (ALL) and reader (READ) users, retention policies and rollups.",
    )
    init.add_argument("--config", required=True, type=Path, help="server.toml")
    init.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for InfluxDB (120)")
    init.set_defaults(handler=server_influx_init)
    doctor = actions.add_parser(
        "doctor",
        help="check a running server and say what to fix",
        description="Check the certificate, the broker's listeners (as devices reach them), InfluxDB, "
        "the ingest and monitor (their backend_stats), free disk, the clock and backups; exit 1 on failure.",
    )
    doctor.add_argument("--config", required=True, type=Path, help="server.toml")
    doctor.add_argument("--lang", choices=("vi", "en"), default="vi", help="output language (default: vi)")
    doctor.set_defaults(handler=server_doctor)
    backup = actions.add_parser(
        "backup",
        help="back up the database and the configuration now (the nightly timer runs this)",
        description="influxd backup -portable of the database, plus etc/ (configs, registry, secrets), "
        "into [paths] backups/<UTC stamp>/; backups older than backup.keep_days are removed.",
    )
    backup.add_argument("--config", required=True, type=Path, help="server.toml")
    backup.set_defaults(handler=server_backup)
    restore = actions.add_parser(
        "restore",
        help="replace the database with a backup",
        description="Drop the database and load BACKUP into the running InfluxDB, then restore its users, "
        "grants, policies and rollups. --with-config also unpacks the backed-up etc/ (a new machine).",
    )
    restore.add_argument("--config", required=True, type=Path, help="server.toml")
    restore.add_argument("backup", type=Path, help="a backup directory (default: the newest)", nargs="?")
    restore.add_argument("--with-config", action="store_true", help="also restore etc/ from the backup")
    restore.set_defaults(handler=server_restore)


def _config(path: Path) -> ServerConfig:
    try:
        return load_server_config(path)
    except ServerConfigError as exc:
        raise CliError(str(exc)) from exc


def server_install(args: argparse.Namespace) -> int:
    """Write (or list) the server's files and start the units under systemd."""
    from backend.server.install import install

    config = _config(args.config)
    try:
        result = install(config, dry_run=args.dry_run)
    except OSError as exc:
        raise CliError(f"cannot install: {exc}") from exc
    verb = "would write" if args.dry_run else "wrote"
    for planned, status in result.files:
        secret = " (secret, 0600)" if planned.secret else ""
        print(f"  {status:<9} {planned.path}{secret}")
    for note in result.notes:
        print(f"  note: {note}")
    changed = len(result.changed)
    kept = len(result.files) - changed
    print(f"{len(result.files)} files: {changed} {verb if changed else 'to change'}, {kept} unchanged.")
    if args.dry_run:
        return EXIT_OK
    grafana = _grafana(config)
    print(f"Grafana provisioning: {grafana}")
    if args.no_start or not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        print("systemd is not running here: start the units in this order: " + ", ".join(UNITS))
        return EXIT_OK
    _systemctl(config, result.changed)
    return EXIT_OK


def _grafana(config: ServerConfig) -> Path:
    from backend.cli.dashboards import write_grafana

    out = config.paths.path("grafana")
    write_grafana(
        out,
        f"http://127.0.0.1:{config.influx_port}",
        config.database,
        "tincoso-reader",
        Path(config.registry),
    )
    return out


def _systemctl(config: ServerConfig, changed: list[Path]) -> None:
    def run(*argv: str) -> None:
        print("  $ systemctl " + " ".join(argv))
        subprocess.run(["systemctl", *argv], check=False)

    run("daemon-reload")
    # Debian's own broker and database would hold the same ports.
    run("disable", "--now", "mosquitto.service", "influxdb.service")
    units = [f"{unit}.service" for unit in UNITS]
    run("enable", *units, "tincoso-backup.timer")
    names = {path.name for path in changed}
    for unit in units:
        stem = unit.removeprefix("tincoso-").removesuffix(".service")
        touched = unit in names or any(stem in name for name in names)
        touched |= stem in ("ingest", "monitor") and "registry.yaml" in names
        run("restart" if touched else "start", unit)
    run("start", "tincoso-backup.timer")


def server_influx_init(args: argparse.Namespace) -> int:
    """Bring the database's users, grants, policies and rollups in line with the config."""
    from backend.server.influx_init import InfluxInitError, influx_init

    config = _config(args.config)
    try:
        for line in influx_init(config, timeout_s=args.timeout):
            print(line)
    except InfluxInitError as exc:
        raise CliError(str(exc)) from exc
    return EXIT_OK


def server_doctor(args: argparse.Namespace) -> int:
    """Run every check; exit 1 if one failed."""
    from backend.server.doctor import format_checks, run_checks

    checks = run_checks(_config(args.config))
    print(format_checks(checks, args.lang))
    return EXIT_ERROR if any(check.status == "fail" for check in checks) else EXIT_OK


def server_backup(args: argparse.Namespace) -> int:
    """Take a backup now and say where it is."""
    from backend.server.backup import BackupError, backup

    try:
        path = backup(_config(args.config))
    except (BackupError, OSError) as exc:
        raise CliError(str(exc)) from exc
    print(f"backup written: {path}")
    return EXIT_OK


def server_restore(args: argparse.Namespace) -> int:
    """Restore a backup (the newest by default)."""
    from backend.server.backup import BackupError, list_backups, restore

    config = _config(args.config)
    source = args.backup
    if source is None:
        backups = list_backups(config)
        if not backups:
            raise CliError(f"no backup in {config.paths.backups}; name one")
        source = backups[-1]
    try:
        for line in restore(config, source, with_config=args.with_config):
            print(line)
    except (BackupError, OSError) as exc:
        raise CliError(str(exc)) from exc
    return EXIT_OK
