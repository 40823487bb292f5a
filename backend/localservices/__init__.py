"""Mosquitto and InfluxDB run as local child processes, for development and tests.

Each service keeps its config, data and logs under ``ROOT/<service>/`` and binds only
127.0.0.1. ``LocalServices`` runs both and records them in ``ROOT/services.json`` so that
``tincoso services status|down`` in a later process can find them. The Debian binaries are
used as installed (``apt-get install mosquitto influxdb``).
"""

from __future__ import annotations

from backend.localservices._process import (
    LocalService,
    ServiceError,
    ephemeral_port_range,
    free_port,
    port_is_free,
)
from backend.localservices.influxdb import LocalInflux
from backend.localservices.mosquitto import MAX_QUEUED_MESSAGES, LocalMosquitto
from backend.localservices.services import (
    STATE_FILE_NAME,
    LocalServices,
    ServiceStatus,
    read_state,
)

__all__ = [
    "MAX_QUEUED_MESSAGES",
    "STATE_FILE_NAME",
    "LocalInflux",
    "LocalMosquitto",
    "LocalService",
    "LocalServices",
    "ServiceError",
    "ServiceStatus",
    "ephemeral_port_range",
    "free_port",
    "port_is_free",
    "read_state",
]
