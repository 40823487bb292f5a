"""Shared output of the operator commands: the console, local times, InfluxDB queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console

from backend.cli.common import CliError
from backend.config import BackendConfig
from backend.influx import InfluxError, rows
from backend.registry import LOCAL_TZ

__all__ = ["console", "local_time", "query"]


def console() -> Console:
    """A console; piped or captured output keeps each device on one line (for grep)."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = 200
    return out


def local_time(ts: float | None) -> str:
    """``27/11 17:05`` in Vietnam time; "" for None."""
    return "" if ts is None else datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%d/%m %H:%M")


async def query(config: BackendConfig, *statements: str) -> list[list[dict[str, Any]]]:
    """Run InfluxQL statements in one request; one list of rows per statement."""
    async with config.influx.client() as db:
        try:
            return [rows(series) for series in await db.query_all(";".join(statements))]
        except InfluxError as exc:
            raise CliError(str(exc)) from exc
