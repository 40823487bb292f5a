"""Building the messages a device sends: envelope, clock marking, heartbeat defaults.

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

from protocols import payloads

# 2025-01-01T00:00:00Z: a board without RTC battery boots in 1970 or at its build date;
# anything before this cannot be a real reading time.
DEFAULT_MIN_EPOCH_MS = 1735689600000

# Heartbeat fields a device without the matching probe reports as "not known".
HEARTBEAT_DEFAULTS = {
    "uptime_s": 0.0,
    "reboot_reason": "unknown",
    "temp_c": None,
    "disk_free_mb": None,
    "disk_ro": False,
    "net_type": "unknown",
    "signal_dbm": None,
}

# Which message kind a probe's fields go into (docs/architecture.md).
PROBE_KINDS = {
    "system": "heartbeat",
    "modem": "heartbeat",
    "audio": "audio",
    "power_meter": "audio",
    "display": "display",
    "screen": "display",
}


def clock_ok(ts_ms: int, synced: "bool | None", min_epoch_ms: int = DEFAULT_MIN_EPOCH_MS) -> bool:
    """Whether a wall-clock reading can be trusted.

    Args:
        ts_ms: the wall clock in ms since the Unix epoch.
        synced: what the OS says about synchronisation (None: it cannot say).
        min_epoch_ms: any time before this is wrong for sure.
    """
    if ts_ms < min_epoch_ms:
        return False
    return synced is not False


class MessageBuilder:
    """Wraps fields in the sequenced envelope of one device and boot.

    The sequence number is not kept here: it is passed in, so the durable queue can
    allocate it in the same transaction that stores the message.
    """

    def __init__(self, device: str, boot_id: str) -> None:
        self.device = device
        self.boot_id = boot_id

    def build(
        self, kind: str, fields: "dict[str, Any]", seq: int, ts_ms: int, clock_is_ok: bool, mono_ms: int
    ) -> "dict[str, Any]":
        """A validated message; raises InvalidPayload naming the bad field."""
        env = payloads.envelope(self.device, ts_ms, clock_is_ok, mono_ms, self.boot_id, seq)
        return payloads.build(kind, env, fields)


def heartbeat_fields(
    probe_fields: "dict[str, Any]", queue_depth: int, queue_dropped: int, probe_faults: int
) -> "dict[str, Any]":
    """A complete heartbeat: probe readings over defaults, plus the agent's own counters."""
    out = dict(HEARTBEAT_DEFAULTS)
    for key in probe_fields:
        out[key] = probe_fields[key]
    out["queue_depth"] = queue_depth
    out["queue_dropped"] = queue_dropped
    out["probe_faults"] = probe_faults
    return out


def event_fields(event: "dict[str, Any]") -> "dict[str, Any]":
    """The fields of an event message from a probe's event dict (unknown keys dropped)."""
    out = {"event": event.get("event"), "code": event.get("code")}
    for key in ("programme", "detail", "duration_s"):
        if event.get(key) is not None:
            out[key] = event[key]
    detail = out.get("detail")
    if isinstance(detail, str) and len(detail) > 512:
        out["detail"] = detail[:509] + "..."
    return out


def result_fields(
    command_id: str, cmd: str, ok: bool, error: "str | None", measured: "dict[str, Any]"
) -> "dict[str, Any]":
    """The fields of a ``result`` message, trimmed to the protocol's limits."""
    if error is not None and len(error) > 512:
        error = error[:509] + "..."
    return {
        "id": command_id[:64] or "unknown",
        "cmd": cmd[:32] or "unknown",
        "ok": ok,
        "error": error,
        "measured": measured,
    }
