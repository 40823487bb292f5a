"""JSON payloads of tincoso wire protocol v1: schemas, encode, decode, validate.

Every device message is a JSON object with an envelope::

    {"v": 1, "kind": "heartbeat", "device": "vn-trangxa-loa-03",
     "ts": 1764126000000, "clock_ok": true, "mono_ms": 86400123,
     "boot_id": "5f0c...", "seq": 1042, ...kind fields...}

``ts`` is the device's UTC time in ms, ``clock_ok`` says whether that clock was
synchronised, ``mono_ms`` is monotonic time since boot and ``seq`` a per-boot sequence
number, so the backend can place readings from a wrong clock and detect gaps.
``death`` (the Last Will), ``command`` and ``receipt`` (both from the backend) are the
exceptions: they are not part of the device's sequence. See protocols/README.md for the full contract.

Portable: runs unchanged on CPython and MicroPython (no dataclasses, no typing at run
time). Invalid input raises :class:`protocols.errors.InvalidPayload` and nothing else.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

import json

from protocols.errors import InvalidPayload

try:
    _JSON_ERRORS = (ValueError, RecursionError)  # type: tuple[type[Exception], ...]
except NameError:  # MicroPython has no RecursionError
    _JSON_ERRORS = (ValueError, RuntimeError)

VERSION = 1
MAX_MESSAGE_BYTES = 8192
MAX_BATCH_BYTES = 262144
MAX_BATCH_ITEMS = 500
# Ranges in one receipt (stored + rejected): keeps it far below MAX_MESSAGE_BYTES.
MAX_RECEIPT_RANGES = 200
_MAX_TS = 9007199254740991  # 2**53 - 1: exact in every JSON parser
_MAX_STR = 256

DEVICE_KINDS = ("speaker_cluster", "eboard", "district_led")
REBOOT_REASONS = ("clean", "power_loss", "watchdog", "agent_crash", "first_boot", "unknown")
NET_TYPES = ("5g", "4g", "3g", "2g", "wifi", "lan", "unknown")
EVENT_TYPES = (
    "fault_start",
    "fault_end",
    "playback_start",
    "playback_end",
    "info",
)
COMMANDS = (
    "report_now",
    "play_test_tone",
    "show_test_pattern",
    "set_volume",
    "set_intervals",
    "reboot",
    "reconnect",
    "identify",
)


# JSON-decoded values have exactly these types: one lookup instead of an isinstance chain.
_TYPE_NAMES = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    list: "list",
    dict: "object",
}
# A field spec's type -> the value type names it accepts.
_ACCEPTS = {
    "int": ("int",),
    "num": ("int", "float"),
    "str": ("str",),
    "bool": ("bool",),
    "obj": ("object",),
    "list": ("list",),
}
_INFINITIES = (float("inf"), float("-inf"))
_RULES = ("choices", "max_len", "lo", "hi")


def _field(
    name: str, typ: str, required: bool = True, nullable: bool = False, **rules: "Any"
) -> "dict[str, Any]":
    spec = {"name": name, "type": typ, "required": required, "nullable": nullable}
    if typ == "int":  # every integer within what JSON and InfluxDB both hold exactly
        spec["lo"] = -_MAX_TS
        spec["hi"] = _MAX_TS
    spec.update(rules)
    # Worked out once here, not for every message: the accepted types, whether any rule applies.
    spec["accepts"] = _ACCEPTS[typ]
    spec["ruled"] = any(rule in spec for rule in _RULES)
    return spec


_ENVELOPE = (
    _field("device", "str", max_len=64),
    _field("ts", "int", lo=0, hi=_MAX_TS),
    _field("clock_ok", "bool"),
    _field("mono_ms", "int", lo=0, hi=_MAX_TS),
    _field("boot_id", "str", max_len=64),
    _field("seq", "int", lo=0, hi=_MAX_TS),
)

# kind -> (uses the sequenced envelope?, fields)
SCHEMAS = {
    "birth": (
        True,
        (
            _field("bdseq", "int", lo=0, hi=_MAX_TS),
            _field("device_kind", "str", choices=DEVICE_KINDS),
            _field("agent_version", "str", max_len=32),
            _field("heartbeat_s", "num", lo=1, hi=86400),
            _field("platform", "str", required=False, nullable=True, max_len=64),
        ),
    ),
    "death": (
        False,
        (
            _field("device", "str", max_len=64),
            _field("ts", "int", lo=0, hi=_MAX_TS),
            _field("clock_ok", "bool"),
            _field("bdseq", "int", lo=0, hi=_MAX_TS),
            _field("reason", "str", choices=("lwt", "clean")),
        ),
    ),
    "heartbeat": (
        True,
        (
            _field("uptime_s", "num", lo=0),
            _field("reboot_reason", "str", choices=REBOOT_REASONS),
            _field("temp_c", "num", nullable=True, lo=-60, hi=200),
            _field("disk_free_mb", "num", nullable=True, lo=0),
            _field("disk_ro", "bool"),
            _field("net_type", "str", choices=NET_TYPES),
            _field("signal_dbm", "num", nullable=True, lo=-150, hi=0),
            _field("operator", "str", required=False, nullable=True, max_len=64),
            _field("mains", "bool", required=False, nullable=True),
            _field("queue_depth", "int", lo=0),
            _field("queue_dropped", "int", lo=0),
            _field("probe_faults", "int", required=False, lo=0),
        ),
    ),
    "audio": (
        True,
        (
            _field("window_s", "num", lo=0.01, hi=3600),
            _field("playing", "bool"),
            _field("rms_dbfs", "num", lo=-200, hi=0),
            _field("peak_dbfs", "num", lo=-200, hi=0),
            _field("dead_air", "bool"),
            _field("dead_air_s", "num", lo=0),
            _field("clipping", "bool"),
            _field("programme", "str", required=False, nullable=True, max_len=128),
            _field("volume", "int", required=False, nullable=True, lo=0, hi=100),
            _field("amp_power_w", "num", required=False, nullable=True, lo=0, hi=100000),
            _field("amp_voltage_v", "num", required=False, nullable=True, lo=0, hi=1000),
            _field("amp_current_a", "num", required=False, nullable=True, lo=0, hi=1000),
            _field("amp_energy_wh", "num", required=False, nullable=True, lo=0),
        ),
    ),
    "display": (
        True,
        (
            _field("power", "bool"),
            _field("brightness", "int", nullable=True, lo=0, hi=100),
            _field("content_id", "str", nullable=True, max_len=128),
            _field("blank", "bool"),
            _field("frozen", "bool"),
            _field("failed_modules", "int", nullable=True, lo=0),
            _field("modules_total", "int", required=False, nullable=True, lo=0),
            _field("temp_c", "num", nullable=True, lo=-60, hi=200),
            _field("source_sync_age_s", "num", required=False, nullable=True, lo=0),
        ),
    ),
    "event": (
        True,
        (
            _field("event", "str", choices=EVENT_TYPES),
            _field("code", "str", max_len=64),
            _field("programme", "str", required=False, nullable=True, max_len=128),
            _field("detail", "str", required=False, nullable=True, max_len=512),
            _field("duration_s", "num", required=False, nullable=True, lo=0),
        ),
    ),
    "result": (
        True,
        (
            _field("id", "str", max_len=64),
            _field("cmd", "str", max_len=32),
            _field("ok", "bool"),
            _field("error", "str", nullable=True, max_len=512),
            _field("measured", "obj"),
        ),
    ),
    "command": (
        False,
        (
            _field("device", "str", max_len=64),
            _field("id", "str", max_len=64),
            _field("cmd", "str", choices=COMMANDS),
            _field("args", "obj"),
            _field("ts", "int", lo=0, hi=_MAX_TS),
        ),
    ),
    "batch": (
        False,
        (
            _field("device", "str", max_len=64),
            _field("items", "list", max_len=MAX_BATCH_ITEMS),
        ),
    ),
    "receipt": (
        False,
        (
            _field("device", "str", max_len=64),
            _field("boot_id", "str", max_len=64),
            _field("stored", "list", max_len=MAX_RECEIPT_RANGES),
            _field("rejected", "list", max_len=MAX_RECEIPT_RANGES),
            _field("ts", "int", lo=0, hi=_MAX_TS),
        ),
    ),
}

KINDS = tuple(sorted(SCHEMAS))

# Arguments each command accepts: name -> (type, lo, hi, required)
COMMAND_ARGS = {
    "report_now": (),
    "play_test_tone": (
        _field("freq_hz", "num", lo=20, hi=20000),
        _field("level_dbfs", "num", lo=-60, hi=0),
        _field("seconds", "num", lo=0.5, hi=60),
    ),
    "show_test_pattern": (
        _field("pattern", "str", max_len=32),
        _field("seconds", "num", lo=1, hi=600),
    ),
    "set_volume": (_field("level", "int", lo=0, hi=100),),
    "set_intervals": (
        _field("heartbeat_s", "num", required=False, lo=5, hi=3600),
        _field("snapshot_s", "num", required=False, lo=5, hi=86400),
    ),
    "reboot": (_field("confirm", "str", max_len=64),),
    # Drop the MQTT session after after_s and connect again (the acceptance test's forced reconnect).
    "reconnect": (_field("after_s", "num", required=False, lo=0, hi=60),),
    # Hardware identity for the acceptance report: modem IMEI, SIM ICCID, controller serial.
    "identify": (),
}


def _type_name(value: "Any") -> str:
    name = _TYPE_NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, bool):  # subclasses (not from JSON, but from callers of encode)
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_finite(x: float) -> bool:
    return x == x and x not in _INFINITIES


def _check_type(where: str, spec: "dict[str, Any]", value: "Any") -> None:
    typ = spec["type"]
    got = _type_name(value)
    if typ == "int":
        ok = got == "int"
    elif typ == "num":
        ok = got in ("int", "float")
        if got == "float" and not _is_finite(value):
            raise InvalidPayload("%s must be a finite number, got %r" % (where, value))
    elif typ == "str":
        ok = got == "str"
    elif typ == "bool":
        ok = got == "bool"
    elif typ == "obj":
        ok = got == "object"
    else:  # list
        ok = got == "list"
    if not ok:
        names = {
            "int": "an integer",
            "num": "a number",
            "str": "a string",
            "bool": "true or false",
            "obj": "an object",
            "list": "a list",
        }
        raise InvalidPayload("%s must be %s, got %s" % (where, names[typ], got))


def _check_rules(where: str, spec: "dict[str, Any]", value: "Any") -> None:
    if "choices" in spec and value not in spec["choices"]:
        raise InvalidPayload("%s must be one of %s, got %r" % (where, ", ".join(spec["choices"]), value))
    if "max_len" in spec:
        if len(value) > spec["max_len"]:
            raise InvalidPayload("%s is too long: %d, limit %d" % (where, len(value), spec["max_len"]))
        if spec["type"] == "str" and not value:
            raise InvalidPayload("%s must not be empty" % where)
    if "lo" in spec and value < spec["lo"]:
        raise InvalidPayload("%s must be >= %s, got %r" % (where, spec["lo"], value))
    if "hi" in spec and value > spec["hi"]:
        raise InvalidPayload("%s must be <= %s, got %r" % (where, spec["hi"], value))


def check_fields(prefix: str, obj: "dict[str, Any]", fields: "tuple[dict[str, Any], ...]") -> None:
    """Check ``obj`` against a field list; raise InvalidPayload naming ``prefix.field``."""
    # Runs for every field of every message (on an ESP32 too): the common case inline,
    # the error messages built only when a check fails.
    for spec in fields:
        name = spec["name"]
        if name not in obj:
            if spec["required"]:
                raise InvalidPayload("%s.%s is missing" % (prefix, name))
            continue
        value = obj[name]
        if value is None:
            if spec["nullable"]:
                continue
            raise InvalidPayload("%s.%s must not be null" % (prefix, name))
        got = _TYPE_NAMES.get(type(value)) or _type_name(value)
        if got not in spec["accepts"] or (got == "float" and (value != value or value in _INFINITIES)):
            _check_type(prefix + "." + name, spec, value)  # raises, naming the problem
        if spec["ruled"]:
            choices = spec.get("choices")
            max_len = spec.get("max_len")
            lo = spec.get("lo")
            hi = spec.get("hi")
            if (
                (choices is not None and value not in choices)
                or (max_len is not None and (len(value) > max_len or not value))
                or (lo is not None and value < lo)
                or (hi is not None and value > hi)
            ):
                _check_rules(prefix + "." + name, spec, value)  # raises, naming the rule


_KEY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"


def _is_identifier(key: str) -> bool:
    # Keys become InfluxDB field names: no separators, quotes or control characters.
    if not 0 < len(key) <= 64:
        return False
    return all(ch in _KEY_CHARS for ch in key)


def _check_flat_object(where: str, obj: "dict[str, Any]") -> None:
    # "measured" and command "args" are free-form but must stay flat and small.
    if len(obj) > 64:
        raise InvalidPayload("%s has %d keys, limit 64" % (where, len(obj)))
    for key in obj:
        if not _is_identifier(key):
            raise InvalidPayload(
                "%s key %r must be 1-64 characters of A-Z, a-z, 0-9 or _" % (where, key[:80])
            )
        value = obj[key]
        name = _type_name(value)
        if name == "int" and not -_MAX_TS <= value <= _MAX_TS:
            raise InvalidPayload("%s.%s is out of range: %r" % (where, key, value))
        if name in ("list", "object"):
            raise InvalidPayload("%s.%s must be a number, string, bool or null, got %s" % (where, key, name))
        if name == "float" and not _is_finite(value):
            raise InvalidPayload("%s.%s must be a finite number" % (where, key))
        if name == "str" and len(value) > _MAX_STR:
            raise InvalidPayload("%s.%s is too long: %d, limit %d" % (where, key, len(value), _MAX_STR))


def validate(msg: "Any") -> "dict[str, Any]":
    """Validate a decoded message; return it unchanged, or raise InvalidPayload."""
    if not isinstance(msg, dict):
        raise InvalidPayload("message must be a JSON object, got %s" % _type_name(msg))
    if "v" not in msg:
        raise InvalidPayload("message.v (protocol version) is missing")
    if _type_name(msg["v"]) != "int" or msg["v"] != VERSION:
        raise InvalidPayload("message.v must be %d, got %r" % (VERSION, msg["v"]))
    kind = msg.get("kind")
    if _type_name(kind) != "str" or kind not in SCHEMAS:
        raise InvalidPayload("message.kind must be one of %s, got %r" % (", ".join(KINDS), kind))
    sequenced, fields = SCHEMAS[kind]
    if sequenced:
        check_fields(kind, msg, _ENVELOPE)
    check_fields(kind, msg, fields)
    if kind == "result":
        _check_flat_object("result.measured", msg["measured"])
    elif kind == "command":
        _check_flat_object("command.args", msg["args"])
        check_fields("command.args", msg["args"], COMMAND_ARGS[msg["cmd"]])
    elif kind == "batch":
        _validate_batch(msg)
    elif kind == "receipt":
        _validate_receipt(msg)
    return msg


def _check_ranges(where: str, ranges: "list[Any]") -> None:
    for i, pair in enumerate(ranges):
        ok = _type_name(pair) == "list" and len(pair) == 2
        ok = ok and _type_name(pair[0]) == "int" and _type_name(pair[1]) == "int"
        if not ok or not 0 <= pair[0] <= pair[1] <= _MAX_TS:
            raise InvalidPayload(
                "%s[%d] must be [first, last] seqs with 0 <= first <= last, got %r" % (where, i, pair)
            )


def _validate_receipt(msg: "dict[str, Any]") -> None:
    _check_ranges("receipt.stored", msg["stored"])
    _check_ranges("receipt.rejected", msg["rejected"])
    if len(msg["stored"]) + len(msg["rejected"]) > MAX_RECEIPT_RANGES:
        raise InvalidPayload("receipt has more than %d ranges" % MAX_RECEIPT_RANGES)


def seq_ranges(seqs: "list[int]") -> "list[list[int]]":
    """Inclusive ``[first, last]`` ranges covering ``seqs`` (any order, duplicates allowed)."""
    out = []  # type: list[list[int]]
    for seq in sorted(seqs):
        if out and seq <= out[-1][1] + 1:
            if seq > out[-1][1]:
                out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def receipts(
    device: str, boot_id: str, stored: "list[int]", rejected: "list[int]", ts: int
) -> "list[dict[str, Any]]":
    """The receipt messages for seqs of one boot: one, or several when the ranges exceed
    MAX_RECEIPT_RANGES."""
    stored_ranges = seq_ranges(stored)
    rejected_ranges = seq_ranges(rejected)
    out = []
    while True:
        take_stored = stored_ranges[:MAX_RECEIPT_RANGES]
        take_rejected = rejected_ranges[: MAX_RECEIPT_RANGES - len(take_stored)]
        stored_ranges = stored_ranges[len(take_stored) :]
        rejected_ranges = rejected_ranges[len(take_rejected) :]
        out.append(
            validate(
                {
                    "v": VERSION,
                    "kind": "receipt",
                    "device": device,
                    "boot_id": boot_id,
                    "stored": take_stored,
                    "rejected": take_rejected,
                    "ts": ts,
                }
            )
        )
        if not stored_ranges and not rejected_ranges:
            return out


def _validate_batch(msg: "dict[str, Any]") -> None:
    for i, item in enumerate(msg["items"]):
        try:
            validate(item)
        except InvalidPayload as exc:
            raise InvalidPayload("batch.items[%d]: %s" % (i, exc)) from None
        if item["kind"] in ("batch", "command", "death"):
            raise InvalidPayload("batch.items[%d]: kind %r cannot be batched" % (i, item["kind"]))
        if item["device"] != msg["device"]:
            raise InvalidPayload(
                "batch.items[%d].device %r differs from batch.device %r" % (i, item["device"], msg["device"])
            )


def encode(msg: "dict[str, Any]") -> bytes:
    """Validate ``msg`` and return its compact UTF-8 JSON encoding."""
    validate(msg)
    data = json.dumps(msg, separators=(",", ":")).encode("utf-8")
    limit = MAX_BATCH_BYTES if msg["kind"] == "batch" else MAX_MESSAGE_BYTES
    if len(data) > limit:
        raise InvalidPayload("%s message is %d bytes, limit %d" % (msg["kind"], len(data), limit))
    return data


def decode(data: "bytes | bytearray | str") -> "dict[str, Any]":
    """Decode and validate one payload (bytes as received from MQTT).

    Raises:
        InvalidPayload: oversized, not UTF-8, not JSON, or not a valid v1 message.
    """
    if isinstance(data, str):
        text = data
        size = len(data.encode("utf-8"))
    else:
        size = len(data)
        if size > MAX_BATCH_BYTES:
            raise InvalidPayload("payload is %d bytes, limit %d" % (size, MAX_BATCH_BYTES))
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeError:
            raise InvalidPayload("payload is not valid UTF-8") from None
    if size > MAX_BATCH_BYTES:
        raise InvalidPayload("payload is %d bytes, limit %d" % (size, MAX_BATCH_BYTES))
    if not text:
        raise InvalidPayload("payload is empty")
    try:
        msg = json.loads(text)
    except _JSON_ERRORS:
        raise InvalidPayload("payload is not valid JSON (%d bytes)" % size) from None
    validate(msg)
    if msg["kind"] != "batch" and size > MAX_MESSAGE_BYTES:
        raise InvalidPayload("%s message is %d bytes, limit %d" % (msg["kind"], size, MAX_MESSAGE_BYTES))
    return msg  # type: ignore[no-any-return]


def envelope(device: str, ts: int, clock_ok: bool, mono_ms: int, boot_id: str, seq: int) -> "dict[str, Any]":
    """The sequenced envelope every device message (but death) starts from."""
    return {
        "v": VERSION,
        "device": device,
        "ts": ts,
        "clock_ok": clock_ok,
        "mono_ms": mono_ms,
        "boot_id": boot_id,
        "seq": seq,
    }


def build(kind: str, env: "dict[str, Any]", fields: "dict[str, Any]") -> "dict[str, Any]":
    """Build and validate a sequenced message of ``kind`` from an envelope and its fields."""
    msg = dict(env)
    msg.update(fields)
    msg["kind"] = kind
    return validate(msg)


def death(device: str, ts: int, clock_ok: bool, bdseq: int, reason: str = "lwt") -> "dict[str, Any]":
    """The death message (Last Will, or sent on clean shutdown)."""
    return validate(
        {
            "v": VERSION,
            "kind": "death",
            "device": device,
            "ts": ts,
            "clock_ok": clock_ok,
            "bdseq": bdseq,
            "reason": reason,
        }
    )


def command(device: str, command_id: str, cmd: str, args: "dict[str, Any]", ts: int) -> "dict[str, Any]":
    """A backend-to-device command."""
    return validate(
        {
            "v": VERSION,
            "kind": "command",
            "device": device,
            "id": command_id,
            "cmd": cmd,
            "args": args,
            "ts": ts,
        }
    )


def batch(device: str, items: "list[dict[str, Any]]") -> "dict[str, Any]":
    """Several already-built messages of one device, replayed in one publish."""
    return validate({"v": VERSION, "kind": "batch", "device": device, "items": items})


def command_id_of(data: "bytes | bytearray | str") -> "str | None":
    """Best-effort command id from an invalid command payload, so the error result can name it."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        obj = json.loads(text)
    except _JSON_ERRORS:
        return None
    if isinstance(obj, dict):
        cid = obj.get("id")
        if isinstance(cid, str) and 0 < len(cid) <= 64:
            return cid
    return None
