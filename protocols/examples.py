"""One valid example message of every v1 kind (documentation and tests use these).

Portable: runs unchanged on CPython and MicroPython.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing
if TYPE_CHECKING:
    from typing import Any

DEVICE = "vn-trangxa-loa-03"
_ENV = {
    "v": 1,
    "device": DEVICE,
    "ts": 1764126000000,
    "clock_ok": True,
    "mono_ms": 86400123,
    "boot_id": "5f0c2a9e",
    "seq": 1042,
}


def _with_env(kind: str, fields: "dict[str, Any]") -> "dict[str, Any]":
    msg = dict(_ENV)
    msg.update(fields)
    msg["kind"] = kind
    return msg


EXAMPLES: "dict[str, dict[str, Any]]" = {
    "birth": _with_env(
        "birth",
        {
            "bdseq": 7,
            "device_kind": "speaker_cluster",
            "agent_version": "0.1.0",
            "heartbeat_s": 30,
            "platform": "linux-armv7l",
        },
    ),
    "death": {
        "v": 1,
        "kind": "death",
        "device": DEVICE,
        "ts": 1764125990000,
        "clock_ok": True,
        "bdseq": 7,
        "reason": "lwt",
    },
    "heartbeat": _with_env(
        "heartbeat",
        {
            "uptime_s": 86400.1,
            "reboot_reason": "power_loss",
            "temp_c": 51.2,
            "disk_free_mb": 1840.5,
            "disk_ro": False,
            "net_type": "4g",
            "signal_dbm": -87,
            "operator": "Viettel",
            "mains": True,
            "queue_depth": 0,
            "queue_dropped": 0,
        },
    ),
    "audio": _with_env(
        "audio",
        {
            "window_s": 10,
            "playing": True,
            "rms_dbfs": -18.4,
            "peak_dbfs": -3.1,
            "dead_air": False,
            "dead_air_s": 0,
            "clipping": False,
            "programme": "ban-tin-chieu-2025-11-26",
            "volume": 80,
            "amp_power_w": 64.2,
            "amp_voltage_v": 221.3,
            "amp_current_a": 0.412,
            "amp_energy_wh": 15230,
        },
    ),
    "display": _with_env(
        "display",
        {
            "power": True,
            "brightness": 70,
            "content_id": "thong-bao-ubnd-0412",
            "blank": False,
            "frozen": False,
            "failed_modules": 0,
            "modules_total": 48,
            "temp_c": 43.5,
            "source_sync_age_s": 120,
        },
    ),
    "event": _with_env(
        "event",
        {
            "event": "fault_start",
            "code": "dead_air",
            "programme": "ban-tin-chieu-2025-11-26",
            "detail": "below -50 dBFS for 15 s",
        },
    ),
    "result": _with_env(
        "result",
        {
            "id": "c-20251126-0001",
            "cmd": "play_test_tone",
            "ok": True,
            "error": None,
            "measured": {"rms_dbfs": -12.1, "freq_hz": 1000, "amp_power_w": 58.0},
        },
    ),
    "command": {
        "v": 1,
        "kind": "command",
        "device": DEVICE,
        "id": "c-20251126-0001",
        "cmd": "play_test_tone",
        "args": {"freq_hz": 1000, "level_dbfs": -12, "seconds": 5},
        "ts": 1764126001000,
    },
}

EXAMPLES["receipt"] = {
    "v": 1,
    "kind": "receipt",
    "device": DEVICE,
    "boot_id": "5f0c2a9e",
    "stored": [[1040, 1042]],
    "rejected": [],
    "ts": 1764126000350,
}

EXAMPLES["batch"] = {
    "v": 1,
    "kind": "batch",
    "device": DEVICE,
    "items": [EXAMPLES["heartbeat"], EXAMPLES["audio"]],
}
