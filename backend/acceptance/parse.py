"""Parsing what a device sends during an acceptance run, and reading a saved report back.

Nothing here raises on bad device data: a payload that is not a valid v1 message of
the device under test comes back as an :class:`Observed` with ``error`` set, counted and
shown in the report, never as an exception out of the runner.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols import payloads, topics
from protocols.errors import ProtocolError

__all__ = [
    "SINE_CREST_DB",
    "Observed",
    "ReportError",
    "birth_age_s",
    "measured_number",
    "parse_device_message",
    "read_report",
    "sha256_hex",
]

# A sine's RMS is its peak / sqrt(2): the tone WAV is written at a peak level.
SINE_CREST_DB = 20 * math.log10(math.sqrt(2))
REPORT_FORMAT = "tincoso-acceptance/1"


class ReportError(ValueError):
    """A report file that cannot be read or is not an acceptance report."""


@dataclass(frozen=True)
class Observed:
    """One payload received from the device under test.

    Attributes:
        topic: the MQTT topic.
        channel: ``state``, ``telemetry``, ``event``, ``batch`` or ``result``.
        received_ms: backend wall clock at receipt (unix ms).
        received_mono: backend monotonic clock at receipt (s).
        retained: delivered from the broker's retained store (older than the run).
        messages: the decoded messages (a batch's items, in order; empty on error).
        error: why the payload was rejected, or None.
    """

    topic: str
    channel: str
    received_ms: int
    received_mono: float
    retained: bool = False
    messages: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    error: str | None = None


def parse_device_message(
    device: str,
    topic: str,
    payload: bytes,
    received_ms: int,
    received_mono: float,
    *,
    retained: bool = False,
    root: str = topics.ROOT,
) -> Observed:
    """Decode one payload from the device's subtree; never raises.

    Args:
        device: the device under test; a message naming another device is rejected.
        topic: where it arrived.
        payload: the raw bytes.
        received_ms: backend wall clock at receipt.
        received_mono: backend monotonic clock at receipt.
        retained: the broker's retain flag on delivery.
        root: the topic root.
    """
    try:
        who, channel, _kind = topics.parse_topic(topic, root)
    except ProtocolError as exc:
        return Observed(topic, "?", received_ms, received_mono, retained, (), str(exc))
    if who != device:
        why = f"topic names device {who!r}, not {device!r}"
        return Observed(topic, channel, received_ms, received_mono, retained, (), why)
    try:
        msg = payloads.decode(payload)
    except ProtocolError as exc:
        return Observed(topic, channel, received_ms, received_mono, retained, (), str(exc))
    items = tuple(msg["items"]) if msg["kind"] == "batch" else (msg,)
    for item in items:
        if item.get("device") != device:
            why = f"message names device {item.get('device')!r}, not {device!r}"
            return Observed(topic, channel, received_ms, received_mono, retained, (), why)
    return Observed(topic, channel, received_ms, received_mono, retained, items)


def measured_number(values: Mapping[str, Any], key: str) -> float | None:
    """A finite number from a result's ``measured`` object, or None (booleans are not numbers)."""
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def birth_age_s(
    birth: Mapping[str, Any], later: Mapping[str, Any] | None, later_received_ms: int, now_ms: int
) -> float | None:
    """How old a birth is, without trusting the device's wall clock if it is not synchronised.

    With a later message of the same boot, the age is the difference of their ``mono_ms``
    (the boot clock) plus how long ago that message arrived; otherwise, with
    ``clock_ok``, it is ``now - birth.ts``. None when neither is possible.
    """
    try:
        if later is not None and later.get("boot_id") == birth.get("boot_id"):
            mono = (int(later["mono_ms"]) - int(birth["mono_ms"])) / 1000
            return max(0.0, mono + (now_ms - later_received_ms) / 1000)
        if birth.get("clock_ok") is True:
            return max(0.0, (now_ms - int(birth["ts"])) / 1000)
    except (KeyError, TypeError, ValueError):
        return None
    return None


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def read_report(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """Read a ``report.json`` and check it is an acceptance report.

    Returns:
        ``(report, raw bytes)``; hash the raw bytes, never a re-encoding.

    Raises:
        ReportError: unreadable, not JSON, or not a tincoso acceptance report.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        report = json.loads(data)
    except (ValueError, RecursionError):
        raise ReportError(f"{path} is not valid JSON") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ReportError(f"{path} is not a tincoso acceptance report (format {REPORT_FORMAT!r})")
    checks = report.get("checks")
    if not isinstance(checks, list) or not all(isinstance(c, dict) and "name" in c for c in checks):
        raise ReportError(f"{path}: checks must be a list of objects with a name")
    return report, data
