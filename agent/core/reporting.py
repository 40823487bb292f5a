"""What one pass of the reporting loop sends: the part the CPython and MCU agents share.

Both agents read their probes into fields by message kind, then ask :func:`due_messages`
what to queue (a heartbeat when due, telemetry of each kind when it is due by the
reporting policy) and build their birth with :func:`birth_fields`. The loops around it
are each runtime's I/O: asyncio with SQLite and aiomqtt on Linux, a blocking loop with
the flash ring and a small MQTT client on an ESP32.

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

    from agent.core.policy import ReportingPolicy

from agent.core.messages import heartbeat_fields

# Telemetry kinds and the field without which a reading of that kind is not a message
# (a power meter alone cannot make an audio message: its level fields are required).
TELEMETRY = (("audio", "rms_dbfs"), ("display", "power"))


def due_messages(
    policy: "ReportingPolicy",
    by_kind: "dict[str, dict[str, Any]]",
    now_s: float,
    force: bool,
    queue_depth: int,
    queue_dropped: int,
    probe_faults: int,
) -> "list[tuple[str, dict[str, Any]]]":
    """The ``(kind, fields)`` to queue now, oldest first; the policy records them as sent.

    Args:
        policy: the device's reporting policy.
        by_kind: fields read this pass, by message kind (``heartbeat`` holds the probe
            fields of the heartbeat, e.g. ``uptime_s``, ``net_type``).
        now_s: monotonic seconds.
        force: everything now (the ``report_now`` command); a heartbeat whose ``mains``
            just turned false also goes now (the dying gasp of a controller on a UPS).
        queue_depth, queue_dropped, probe_faults: the agent's counters for the heartbeat.
    """
    out = []
    gasp = policy.dying_gasp(by_kind.get("heartbeat", {}).get("mains"))
    if force or gasp or policy.heartbeat_due(now_s):
        fields = heartbeat_fields(by_kind.get("heartbeat", {}), queue_depth, queue_dropped, probe_faults)
        out.append(("heartbeat", fields))
        policy.heartbeat_sent(now_s)
    for kind, required in TELEMETRY:
        readings = by_kind.get(kind)
        if not readings or required not in readings:
            continue
        if force or policy.telemetry_due(kind, readings, now_s):
            out.append((kind, readings))
            policy.telemetry_sent(kind, readings, now_s)
    return out


def birth_fields(
    bdseq: int, device_kind: str, agent_version: str, heartbeat_s: float, platform: "str | None"
) -> "dict[str, Any]":
    """The fields of a ``birth`` (``heartbeat_s`` at least 1 s, ``platform`` cut to 64)."""
    return {
        "bdseq": bdseq,
        "device_kind": device_kind,
        "agent_version": agent_version,
        "heartbeat_s": max(1.0, heartbeat_s),
        "platform": platform[:64] if platform else None,
    }
