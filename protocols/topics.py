"""MQTT topic layout of tincoso wire protocol v1.

One subtree per device, so that a broker ACL with a ``%u`` pattern confines a device to
its own topics::

    tincoso/v1/<device>/state              retained birth / death (Last Will)
    tincoso/v1/<device>/telemetry/<kind>   heartbeat | audio | display
    tincoso/v1/<device>/event              fault / playback events
    tincoso/v1/<device>/batch              a backlog replayed in one message
    tincoso/v1/<device>/cmd                backend -> device commands
    tincoso/v1/<device>/result             device -> backend command results
    tincoso/v1/<device>/receipt            backend -> device delivery receipts

Portable: runs unchanged on CPython and MicroPython.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

from protocols.errors import InvalidTopic

ROOT = "tincoso/v1"
TELEMETRY_KINDS = ("heartbeat", "audio", "display")
CHANNELS = ("state", "telemetry", "event", "batch", "cmd", "result", "receipt")
# Channels a device publishes on; the backend publishes only on "cmd" and "receipt".
DEVICE_CHANNELS = ("state", "telemetry", "event", "batch", "result")
# Channels a device subscribes to (its own only).
DEVICE_READ_CHANNELS = ("cmd", "receipt")
DEVICE_ID_MAX = 64
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_."


def check_device_id(device: str) -> str:
    """Return ``device`` if it is a valid device id, else raise InvalidTopic.

    Device ids are 1-64 characters of lower-case ASCII letters, digits, ``-``, ``_``
    and ``.``: safe in a topic level, an ACL pattern, a file name and an InfluxDB tag.
    """
    if not isinstance(device, str) or not device:
        raise InvalidTopic("device id must be a non-empty string")
    if len(device) > DEVICE_ID_MAX:
        raise InvalidTopic("device id is %d characters, limit %d" % (len(device), DEVICE_ID_MAX))
    for ch in device:
        if ch not in _ID_CHARS:
            raise InvalidTopic("device id %r has %r; use a-z, 0-9, '-', '_' or '.'" % (device, ch))
    return device


def state_topic(device: str, root: str = ROOT) -> str:
    """Retained birth/death topic of ``device``."""
    return "%s/%s/state" % (root, check_device_id(device))


def telemetry_topic(device: str, kind: str, root: str = ROOT) -> str:
    """Telemetry topic of ``device`` for one of TELEMETRY_KINDS."""
    if kind not in TELEMETRY_KINDS:
        raise InvalidTopic("telemetry kind %r is not one of %s" % (kind, ", ".join(TELEMETRY_KINDS)))
    return "%s/%s/telemetry/%s" % (root, check_device_id(device), kind)


def event_topic(device: str, root: str = ROOT) -> str:
    """Event topic of ``device``."""
    return "%s/%s/event" % (root, check_device_id(device))


def batch_topic(device: str, root: str = ROOT) -> str:
    """Batch (backlog replay) topic of ``device``."""
    return "%s/%s/batch" % (root, check_device_id(device))


def command_topic(device: str, root: str = ROOT) -> str:
    """Topic the backend publishes commands for ``device`` on."""
    return "%s/%s/cmd" % (root, check_device_id(device))


def result_topic(device: str, root: str = ROOT) -> str:
    """Topic ``device`` publishes command results on."""
    return "%s/%s/result" % (root, check_device_id(device))


def receipt_topic(device: str, root: str = ROOT) -> str:
    """Topic the backend publishes delivery receipts for ``device`` on."""
    return "%s/%s/receipt" % (root, check_device_id(device))


def topic_for(msg: "dict[str, Any]", root: str = ROOT) -> str:
    """The topic a device publishes the (valid) message ``msg`` on."""
    kind = msg.get("kind")
    device = msg.get("device", "")
    if kind in ("birth", "death"):
        return state_topic(device, root)
    if kind in TELEMETRY_KINDS:
        return telemetry_topic(device, kind, root)
    if kind == "event":
        return event_topic(device, root)
    if kind == "batch":
        return batch_topic(device, root)
    if kind == "result":
        return result_topic(device, root)
    if kind == "command":
        return command_topic(device, root)
    if kind == "receipt":
        return receipt_topic(device, root)
    raise InvalidTopic("no topic for message kind %r" % (kind,))


def parse_topic(topic: str, root: str = ROOT) -> "tuple[str, str, str | None]":
    """Split a v1 topic into ``(device, channel, telemetry_kind_or_None)``.

    Raises:
        InvalidTopic: the topic is not under ``root`` or does not follow the layout.
    """
    prefix = root + "/"
    if not topic.startswith(prefix):
        raise InvalidTopic("topic %r is not under %r" % (topic, root))
    parts = topic[len(prefix) :].split("/")
    if len(parts) < 2:
        raise InvalidTopic("topic %r has no channel after the device id" % topic)
    device = check_device_id(parts[0])
    channel = parts[1]
    if channel not in CHANNELS:
        raise InvalidTopic("topic %r: channel %r is not one of %s" % (topic, channel, ", ".join(CHANNELS)))
    if channel == "telemetry":
        if len(parts) != 3 or parts[2] not in TELEMETRY_KINDS:
            raise InvalidTopic(
                "topic %r: telemetry needs one of %s after it" % (topic, ", ".join(TELEMETRY_KINDS))
            )
        return device, channel, parts[2]
    if len(parts) != 2:
        raise InvalidTopic("topic %r has extra levels after %r" % (topic, channel))
    return device, channel, None


def subscription_filters(root: str = ROOT) -> "list[str]":
    """Topic filters that cover everything devices publish (for the backend)."""
    return ["%s/+/%s" % (root, c) for c in DEVICE_CHANNELS if c != "telemetry"] + ["%s/+/telemetry/+" % root]
