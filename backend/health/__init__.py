"""Device health over time: outages by cause, MTBF, MTTR and crash-free hours per device and
commune, and the weekly digest e-mail to the district contacts (``tincoso digest``).

Reads only what is stored: the monitor's ``outage`` and ``down_interval`` points and the
heartbeats (`backend.health.fetch`); the arithmetic is pure (`backend.health.compute`), the
words come from the catalogue (`backend.health.digest`); the monitor sends it weekly
(`backend.health.weekly`).
"""

from __future__ import annotations

from backend.health.compute import CommuneHealth, DeviceHealth, Outage, commune_health, device_health, worst
from backend.health.digest import DIGEST_FAULT, digest_notice, digest_text, last_week
from backend.health.fetch import fetch_crash_free, fetch_outages

__all__ = [
    "DIGEST_FAULT",
    "CommuneHealth",
    "DeviceHealth",
    "Outage",
    "commune_health",
    "device_health",
    "digest_notice",
    "digest_text",
    "fetch_crash_free",
    "fetch_outages",
    "last_week",
    "worst",
]
