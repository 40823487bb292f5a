"""MQTT → InfluxDB ingest: validate, enrich with the registry, batch, write or spool.

See docs/architecture.md (the "ingest" role and the InfluxDB schema).
"""

from __future__ import annotations

from backend.ingest.placement import ClockPlacer
from backend.ingest.points import (
    DeviceDirectory,
    DeviceInfo,
    MessageRejected,
    message_lines,
    quarantine_line,
)
from backend.ingest.service import IngestService
from backend.ingest.stats import IngestStats, InvalidInputLog
from backend.ingest.writer import DurabilityError, DurableWriter

__all__ = [
    "ClockPlacer",
    "DeviceDirectory",
    "DeviceInfo",
    "DurabilityError",
    "DurableWriter",
    "IngestService",
    "IngestStats",
    "InvalidInputLog",
    "MessageRejected",
    "message_lines",
    "quarantine_line",
]
