"""Nightly backup and restore: ``influxd backup -portable`` plus the server's configuration.

A backup is one directory ``<backups>/<UTC stamp>/`` holding ``influx/`` (the database in
InfluxDB's portable format, taken online over the loopback RPC port) and ``etc.tar.gz``
(server.toml, the backend configs, the registry and the provisioning store: CA, passwords,
ACL, device bundles). It is written under a ``.partial`` name and renamed when complete,
so a half-written backup never counts. Backups older than ``backup.keep_days`` are removed.

Restore drops the database and loads the backup into the running InfluxDB, then puts
the users, grants, policies and rollups back (``influx-init``). ``--with-config`` also
unpacks ``etc.tar.gz`` over ``[paths] etc`` (a new machine).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tarfile
from pathlib import Path

import httpx

from backend.server.install import load_secrets
from backend.server.render import INFLUX_USERS
from backend.server.settings import ServerConfig

__all__ = ["BackupError", "backup", "list_backups", "restore"]

STAMP = "%Y%m%dT%H%M%SZ"


class BackupError(RuntimeError):
    """A backup or restore step failed (the message names the step and its output)."""


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
    except OSError as exc:
        raise BackupError(f"{what}: cannot run {argv[0]}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BackupError(f"{what} failed ({argv[0]} exit {done.returncode}): {' / '.join(tail)}")


def list_backups(config: ServerConfig) -> list[Path]:
    """Complete backups, oldest first."""
    root = config.paths.path("backups")
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p / "influx").is_dir())


def backup(config: ServerConfig, *, now: dt.datetime | None = None) -> Path:
    """Take one backup; prune old ones; return the new backup's directory."""
    now = now or dt.datetime.now(dt.UTC)
    root = config.paths.path("backups")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)  # the configuration holds the CA key and passwords
    final = root / now.strftime(STAMP)
    partial = root / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    host = f"127.0.0.1:{config.influx_rpc_port}"
    _run(
        [
            config.paths.influxd,
            "backup",
            "-portable",
            "-host",
            host,
            "-db",
            config.database,
            str(partial / "influx"),
        ],
        "influxd backup",
    )
    with tarfile.open(partial / "etc.tar.gz", "w:gz") as tar:
        tar.add(config.etc, arcname=".")
    partial.rename(final)
    cutoff = now - dt.timedelta(days=config.backup_keep_days)
    for old in list_backups(config):
        try:
            taken = dt.datetime.strptime(old.name, STAMP).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        if taken < cutoff:
            shutil.rmtree(old)
    return final


def _drop_database(config: ServerConfig) -> None:
    password = load_secrets(config, create=False).influx_passwords["admin"]
    try:
        response = httpx.post(
            f"http://127.0.0.1:{config.influx_port}/query",
            data={"q": f'DROP DATABASE "{config.database}"'},
            params={"u": INFLUX_USERS["admin"], "p": password},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise BackupError(f"InfluxDB at 127.0.0.1:{config.influx_port} unreachable: {exc}") from None
    if response.status_code != httpx.codes.OK or '"error"' in response.text:
        raise BackupError(f"DROP DATABASE refused: {response.text.strip()[:200]}")


def restore(config: ServerConfig, source: Path, *, with_config: bool = False) -> list[str]:
    """Load ``source`` (a backup directory) into the running InfluxDB; returns what was done."""
    if not (source / "influx").is_dir():
        raise BackupError(f"{source} is not a tincoso backup (no influx/ inside)")
    done = []
    if with_config:
        with tarfile.open(source / "etc.tar.gz", "r:gz") as tar:
            tar.extractall(config.etc, filter="data")
        done.append(f"configuration restored into {config.etc}")
    _drop_database(config)
    host = f"127.0.0.1:{config.influx_rpc_port}"
    _run(
        [
            config.paths.influxd,
            "restore",
            "-portable",
            "-host",
            host,
            "-db",
            config.database,
            str(source / "influx"),
        ],
        "influxd restore",
    )
    done.append(f"database {config.database} restored from {source}")
    from backend.server.influx_init import influx_init

    done += influx_init(config, timeout_s=60)
    return done
