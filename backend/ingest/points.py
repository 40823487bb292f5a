"""From one MQTT message to InfluxDB points (line protocol), or a reason to quarantine it.

The schema is the table in docs/architecture.md: one measurement per message kind, tagged
with the device and its registry place (commune, hamlet, kind). Field types follow the
protocol schema, not the JSON value (a ``num`` is always a float), so a reading of ``-87``
and one of ``-87.5`` never conflict in InfluxDB. Tags and timestamps depend only on the
message, so a QoS-1 duplicate overwrites its twin instead of adding a point; timestamps are
nanoseconds with the reading's seq in the sub-millisecond digits (``stored_ns``), so two
readings of one series in the same millisecond are two points. Write them with
``precision="ns"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from backend.influx import FieldValue, line_ns, point_ns, series_key
from backend.ingest.placement import ClockPlacer
from protocols import payloads, topics
from protocols.errors import InvalidPayload, InvalidTopic
from protocols.stored_data import NS_PER_MS, RMS_POWER, dbfs_to_power, device_tags, stored_ns

__all__ = [
    "DeviceDirectory",
    "DeviceInfo",
    "MessageRejected",
    "message_lines",
    "quarantine_line",
]

TELEMETRY = ("heartbeat", "audio", "display")
# Which message kinds a channel may carry; a mismatch is quarantined as "kind_mismatch".
_CHANNEL_KINDS = {
    "state": ("birth", "death"),
    "event": ("event",),
    "batch": ("batch",),
    "result": ("result",),
}
# Kinds the monitor records (state measurement); ingest acknowledges them without writing.
_MONITOR_KINDS = ("birth", "death")


class DeviceInfo(Protocol):
    """What ingest needs of a registry device (``backend.registry.Device`` has more)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def commune(self) -> str: ...
    @property
    def hamlet(self) -> str | None: ...


class DeviceDirectory(Protocol):
    """The fleet registry as ingest sees it."""

    def device(self, device_id: str) -> DeviceInfo | None: ...


class MessageRejected(Exception):
    """A message that is not written as a reading: why, and which device it claims to be.

    Attributes:
        reason: ``bad_topic``, ``bad_payload``, ``device_mismatch``, ``kind_mismatch``,
            ``bad_time`` (placed outside what InfluxDB stores) or
            ``unknown_device``.
        device: The topic's device id, or a best guess for a bad topic.
        detail: What was wrong, in words.
    """

    def __init__(self, reason: str, device: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.device = device
        self.detail = detail
        self.sequenced: list[tuple[str, str, int]] = []
        """``(device, boot_id, seq)`` of the readings it held, when its payload was valid."""


def _printable(text: str) -> str:
    # Quarantined input is hostile: no control characters into line protocol or logs.
    return "".join(c if c.isprintable() else "?" for c in text)


def _guess_device(topic: str, root: str) -> str:
    rest = topic[len(root) + 1 :] if topic.startswith(root + "/") else topic
    return _printable(rest.split("/")[0] or "-")[:64]


def message_lines(
    topic: str,
    payload: bytes,
    received_ms: int,
    *,
    registry: DeviceDirectory,
    placer: ClockPlacer,
    root: str = topics.ROOT,
    live: bool = True,
    sequenced: list[tuple[str, str, int]] | None = None,
) -> list[str]:
    """The line-protocol points of one message (a batch gives one point per item).

    Args:
        topic: The MQTT topic it arrived on.
        payload: The raw payload.
        received_ms: Receive time (UTC ms), for readings whose device clock is not synchronised.
        registry: Where the device's commune, hamlet and kind come from.
        placer: Per-boot clock anchors (updated by this call).
        root: The topic root.
        live: False for a retained message (its receive time says nothing of when it was sent).
        sequenced: When given, ``(device, boot_id, seq)`` of each reading the message holds
            is appended (for delivery receipts).

    Returns:
        The points; empty for messages that are valid but not ingest's (birth, death, cmd).

    Raises:
        MessageRejected: the message must be quarantined instead.
    """
    try:
        device_id, channel, telemetry_kind = topics.parse_topic(topic, root)
    except InvalidTopic as exc:
        raise MessageRejected("bad_topic", _guess_device(topic, root), str(exc)) from None
    if channel == "cmd":
        return []
    try:
        msg = payloads.decode(payload)
    except InvalidPayload as exc:
        raise MessageRejected("bad_payload", device_id, str(exc)) from None
    if sequenced is not None:
        held = _sequenced(device_id, msg)
        sequenced += held
    else:
        held = []
    if msg["device"] != device_id:
        detail = f"message device {msg['device']!r} differs from topic device {device_id!r}"
        raise _rejected("device_mismatch", device_id, detail, held)
    allowed = (telemetry_kind,) if channel == "telemetry" else _CHANNEL_KINDS[channel]
    if msg["kind"] not in allowed:
        detail = f"{msg['kind']} message on {channel} topic (expects {', '.join(str(k) for k in allowed)})"
        raise _rejected("kind_mismatch", device_id, detail, held)
    device = registry.device(device_id)
    if device is None:
        detail = f"device {device_id!r} is not in the registry"
        raise _rejected("unknown_device", device_id, detail, held)
    if msg["kind"] in _MONITOR_KINDS:
        return []
    items: list[dict[str, Any]] = msg["items"] if msg["kind"] == "batch" else [msg]
    items = [item for item in items if item["kind"] not in _MONITOR_KINDS]
    # Observe every item before placing any, so a batch's items share one anchor estimate.
    for item in items:
        placer.observe(device_id, item["boot_id"], received_ms - item["mono_ms"], received_ms, live=live)
    tags = _device_tags(device)
    try:
        return [_item_line(item, tags, placer) for item in items]
    except MessageRejected as rejected:
        rejected.sequenced = held
        raise


def _sequenced(device_id: str, msg: dict[str, Any]) -> list[tuple[str, str, int]]:
    items: list[dict[str, Any]] = msg["items"] if msg["kind"] == "batch" else [msg]
    return [
        (device_id, item["boot_id"], item["seq"]) for item in items if "seq" in item and "boot_id" in item
    ]


def _rejected(reason: str, device: str, detail: str, held: list[tuple[str, str, int]]) -> MessageRejected:
    rejected = MessageRejected(reason, device, detail)
    rejected.sequenced = held
    return rejected


# (measurement, device tags) -> escaped series key: every telemetry point of a device has
# the same one. Keyed by the tags themselves, so a registry reload that moves a device to
# another hamlet gets a new key; bounded like the registry (cleared when it outgrows it).
_series: dict[tuple[str, tuple[tuple[str, str | None], ...]], str] = {}
_SERIES_MAX = 200_000


def _telemetry_series(kind: str, device_tags: dict[str, str | None]) -> str:
    key = (kind, tuple(device_tags.items()))
    series = _series.get(key)
    if series is None:
        if len(_series) >= _SERIES_MAX:
            _series.clear()
        series = _series[key] = series_key(kind, device_tags)
    return series


def _device_tags(device: DeviceInfo) -> dict[str, str | None]:
    kind = str(getattr(device.kind, "value", device.kind))
    return device_tags(device.id, device.commune, device.hamlet, kind)


def _typed_fields(kind: str, msg: dict[str, Any]) -> dict[str, FieldValue | None]:
    out: dict[str, FieldValue | None] = {}
    for spec in payloads.SCHEMAS[kind][1]:
        value = msg.get(spec["name"])
        if value is not None and spec["type"] == "num":
            value = float(value)
        out[spec["name"]] = value
    return out


# InfluxDB holds nanoseconds in an int64: 1677-09-21 to 2262-04-11 (its largest time is
# one below the int64 maximum).
_INFLUX_MAX_NS = 9_223_372_036_854_775_806


def _item_line(msg: dict[str, Any], device_tags: dict[str, str | None], placer: ClockPlacer) -> str:
    kind = msg["kind"]
    ts_ms, placed = placer.place(msg)
    ts_ns = stored_ns(ts_ms, msg["seq"])
    if not 0 <= ts_ns <= _INFLUX_MAX_NS:
        detail = f"{kind} seq {msg['seq']} placed at {ts_ms} ms, outside what InfluxDB stores"
        raise MessageRejected("bad_time", msg["device"], detail)
    fields: dict[str, FieldValue | None]
    if kind in TELEMETRY:
        fields = _typed_fields(kind, msg)
        fields.update(seq=msg["seq"], boot_id=msg["boot_id"], clock_ok=msg["clock_ok"], placed=placed)
        if kind == "audio":
            fields[RMS_POWER] = dbfs_to_power(msg["rms_dbfs"])
        return point_ns(_telemetry_series(kind, device_tags), fields, ts_ns)
    tags = dict(device_tags)
    if kind == "event":
        tags.update(event=msg["event"], code=msg["code"])
        duration = msg.get("duration_s")
        fields = {
            "programme": msg.get("programme"),
            "detail": msg.get("detail"),
            "duration_s": None if duration is None else float(duration),
            "seq": msg["seq"],
            "boot_id": msg["boot_id"],
            "placed": placed,
        }
    else:  # result
        tags["cmd"] = msg["cmd"]
        fields = {"id": msg["id"], "ok": msg["ok"], "error": msg["error"], "seq": msg["seq"]}
        fields.update(_measured(msg["measured"].items()))
    return line_ns(kind, tags, fields, ts_ns)


def _measured(items: Iterable[tuple[str, Any]]) -> dict[str, FieldValue | None]:
    """Free-form result values with a type fixed by the field name: numbers are floats in
    ``measured_<key>``, strings ``measured_<key>.str``, booleans ``measured_<key>.bool``
    (keys have no dots, protocols.payloads), so no device can give another device's
    field a type that makes its later points fail."""
    out: dict[str, FieldValue | None] = {}
    for key, value in items:
        if isinstance(value, bool):
            out[f"measured_{key}.bool"] = value
        elif isinstance(value, int | float):
            out[f"measured_{key}"] = float(value)
        elif isinstance(value, str):
            out[f"measured_{key}.str"] = value
    return out


def quarantine_line(
    rejected: MessageRejected, topic: str, payload: bytes, ts_ms: int, keep_bytes: int
) -> str:
    """The ``quarantine`` point of a rejected message (payload truncated to ``keep_bytes``),
    at ``ts_ms`` in nanoseconds like every point of ingest."""
    text = payload[:keep_bytes].decode("utf-8", errors="replace")
    fields: dict[str, FieldValue | None] = {
        "topic": _printable(topic[:256]),
        "payload": _printable(text),
        "payload_bytes": len(payload),
        "detail": _printable(rejected.detail[:512]),
    }
    tags = {"device": rejected.device, "reason": rejected.reason}
    return line_ns("quarantine", tags, fields, ts_ms * NS_PER_MS)
