"""Technicians are not alerted about a device while a vendor's acceptance test drives it.

The test powers the display off, plays a tone outside the schedule and forces a reconnect:
each would be a fault to the monitor. With a ``--config`` (so the monitor's state directory
is known) ``tincoso acceptance`` opens a maintenance window for the device under test for
the run and a few minutes after it (``backend.maintenance.muted_during``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from backend.cli.common import CliError
from backend.config import ConfigError, load_config
from backend.maintenance import FILE_NAME, MaintenanceError, MaintenanceStore, muted_during
from backend.monitor.config import MonitorConfig

__all__ = ["REASON", "acceptance_window"]

REASON = "nghiệm thu từ xa (tự động)"


@contextlib.contextmanager
def acceptance_window(config: Path | str | None, device_id: str) -> Iterator[None]:
    """Mute ``device_id`` during the block when ``config`` names the monitor's state directory."""
    if config is None:
        yield
        return
    try:
        state_dir = Path(MonitorConfig.from_backend(load_config(config)).monitor.state_dir)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        with muted_during(MaintenanceStore(state_dir / FILE_NAME), device_id, REASON):
            yield
    except MaintenanceError as exc:
        raise CliError(f"cannot mute {device_id} during the test: {exc}") from None
