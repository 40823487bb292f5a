# Runs under MicroPython (tests/micropython/run.mjs), not CPython: no __future__ import.
"""MicroPython heap use of the portable core: after imports, and while building messages.

Prints one JSON line: ``before_imports``, ``after_imports`` (heap in use once protocols/
and agent/core/ are loaded), ``per_heartbeat`` and ``per_audio`` (bytes allocated to
build, validate and encode one message, collector off), ``peak_build`` (heap in use right
after one of each).

The WebAssembly port's collector does not reclaim objects during the single ``runPython``
call the harness makes (a ``gc.collect()`` leaves ``mem_alloc`` unchanged), so the heap
figures include garbage: the compiler's, from turning the modules' source into bytecode
(a board running precompiled ``.mpy`` files does not make it), and earlier messages'.
They are upper bounds; the per-message allocation counts are exact.
"""

import gc
import json

gc.collect()
BEFORE = gc.mem_alloc()  # type: ignore[attr-defined]

from agent.core import backlog, dead_air, levels, messages, policy, ring  # noqa: E402, F401
from protocols import payloads, topics  # noqa: E402

gc.collect()
AFTER_IMPORTS = gc.mem_alloc()  # type: ignore[attr-defined]

HEARTBEAT = {
    "uptime_s": 86400.0,
    "reboot_reason": "power_loss",
    "temp_c": 47.5,
    "disk_free_mb": 1843.0,
    "disk_ro": False,
    "net_type": "4g",
    "signal_dbm": -79.0,
    "operator": "Viettel",
    "mains": True,
}
AUDIO = {
    "window_s": 1.0,
    "playing": True,
    "rms_dbfs": -18.5,
    "peak_dbfs": -3.2,
    "dead_air": False,
    "dead_air_s": 0.0,
    "clipping": False,
    "programme": "ban-tin-chieu",
    "volume": 80,
    "amp_power_w": 64.0,
    "amp_voltage_v": 221.4,
    "amp_current_a": 0.31,
    "amp_energy_wh": 15230.0,
}


def one(builder: "messages.MessageBuilder", kind: str, seq: int) -> int:
    """Build, validate and encode one message; its encoded size."""
    fields = messages.heartbeat_fields(HEARTBEAT, 0, 0, 0) if kind == "heartbeat" else AUDIO
    msg = builder.build(kind, fields, seq, 1764126000000 + seq, True, 86400123 + seq)
    topics.topic_for(msg)
    return len(payloads.encode(msg))


def allocated(builder: "messages.MessageBuilder", kind: str) -> int:
    """Bytes allocated by one message with the collector off."""
    gc.collect()
    gc.disable()
    start = gc.mem_alloc()  # type: ignore[attr-defined]
    one(builder, kind, 1)
    used = gc.mem_alloc() - start  # type: ignore[attr-defined]
    gc.enable()
    return int(used)


def main() -> None:
    """Measure and print the JSON line."""
    builder = messages.MessageBuilder("vn-trangxa-loa-03", "5f0c2a9e-6b1d-4c1e-9a53-0c2f1d7e8b90")
    size_hb = one(builder, "heartbeat", 0)
    size_audio = one(builder, "audio", 0)
    per_heartbeat = allocated(builder, "heartbeat")
    per_audio = allocated(builder, "audio")
    gc.collect()
    gc.disable()
    one(builder, "heartbeat", 2)
    one(builder, "audio", 3)
    peak = gc.mem_alloc()  # type: ignore[attr-defined]
    gc.enable()
    report = {
        "before_imports": BEFORE,
        "after_imports": AFTER_IMPORTS,
        "per_heartbeat": per_heartbeat,
        "per_audio": per_audio,
        "peak_build": peak,
        "heartbeat_bytes": size_hb,
        "audio_bytes": size_audio,
    }
    print(json.dumps(report))


main()
