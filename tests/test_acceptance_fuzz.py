"""Fuzzing: malformed commands get error results, malformed device data gets failed checks.

The agent's command handler is called directly with random payloads (nothing may raise,
and every new command id gets exactly one valid ``result``); the acceptance side's
payload parser and checks get random device data (nothing may raise, every verdict is a
JSON-serialisable :class:`CheckResult`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.commands import CommandDispatcher, CommandHost
from agent.config import AgentConfig
from backend.acceptance import checks as C
from backend.acceptance.parse import ReportError, parse_device_message, read_report
from backend.acceptance.profile import default_profile
from protocols import payloads

DEVICE = "vn-trangxa-loa-03"
SPAN = (0, 1)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
command_names = st.sampled_from([*payloads.COMMANDS, "dance", "", "REPORT_NOW"])
arg_names = st.sampled_from(
    [
        "freq_hz",
        "level_dbfs",
        "seconds",
        "pattern",
        "level",
        "heartbeat_s",
        "snapshot_s",
        "confirm",
        "after_s",
        "x",
    ]
)


@st.composite
def command_like(draw: st.DrawFn) -> bytes:
    """Payloads that are often nearly valid commands, sometimes garbage."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=200))
    obj: dict[str, Any] = {
        "v": draw(st.sampled_from([1, 1, 1, 2, "1", None])),
        "kind": draw(st.sampled_from(["command", "command", "result", "birth", 7])),
        "device": draw(st.sampled_from([DEVICE, DEVICE, "vn-lahien-loa-01", "", None])),
        "id": draw(st.text(min_size=0, max_size=70) | st.integers()),
        "cmd": draw(command_names),
        "args": draw(st.dictionaries(arg_names, json_values, max_size=4) | json_values),
        "ts": draw(st.integers(-5, 2**54) | st.floats()),
    }
    for key in draw(st.sets(st.sampled_from(sorted(obj)), max_size=2)):
        del obj[key]
    text = json.dumps(obj, allow_nan=True)
    return text.encode() if choice != 3 else text.encode()[: draw(st.integers(0, len(text)))]


class Host(CommandHost):
    """An agent with nothing configured that could touch this machine (no player, no reboot)."""

    def __init__(self) -> None:
        self.config = AgentConfig(
            {
                "device": {"id": DEVICE, "kind": "speaker_cluster", "state_dir": "/nonexistent"},
                "commands": {"player": None, "set_volume": None, "reboot": None},
            }
        )
        self.results: list[dict[str, Any]] = []

    def probe(self, name: str) -> Any | None:
        return None

    async def report_now(self) -> dict[str, Any]:
        return {"heartbeat_seq": 1}

    def set_intervals(self, heartbeat_s: float | None, snapshot_s: float | None) -> dict[str, Any]:
        return {"heartbeat_s": heartbeat_s or 30.0, "snapshot_s": snapshot_s or 300.0}

    def enqueue_result(self, fields: dict[str, Any]) -> None:
        self.results.append(fields)

    async def wait_sent(self, timeout_s: float) -> bool:
        return True


def _valid_result(fields: dict[str, Any]) -> dict[str, Any]:
    env = payloads.envelope(DEVICE, 1, True, 1, "boot", 1)
    return payloads.validate(payloads.build("result", env, fields))


@FUZZ
@given(batch=st.lists(command_like(), min_size=1, max_size=5))
def test_malformed_commands_get_one_error_result_and_never_raise(batch: list[bytes]) -> None:
    host = Host()
    seen: set[str] = set()

    def first_time(command_id: str) -> bool:
        known = command_id in seen
        seen.add(command_id)
        return known

    dispatcher = CommandDispatcher(host, first_time)

    async def feed() -> None:
        for data in batch:
            await dispatcher.handle(data)

    asyncio.run(feed())
    counts = dispatcher.counts
    assert sum(counts.values()) == len(batch)
    assert len(host.results) == len(batch) - counts["duplicate"]
    for fields in host.results:
        result = _valid_result(fields)  # every answer is a valid protocol message
        assert result["ok"] or result["error"]


@FUZZ
@given(
    topic=st.sampled_from(
        [
            f"tincoso/v1/{DEVICE}/telemetry/audio",
            f"tincoso/v1/{DEVICE}/state",
            f"tincoso/v1/{DEVICE}/batch",
            "tincoso/v1/other/state",
            "x",
            "",
        ]
    ),
    payload=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_device_payload_parser_never_raises(topic: str, payload: bytes) -> None:
    seen = parse_device_message(DEVICE, topic, payload, 0, 0.0, retained=True)
    assert (seen.error is None) != (not seen.messages)


results = st.none() | st.dictionaries(
    st.sampled_from(["ok", "error", "measured", "id"]),
    json_values
    | st.dictionaries(
        st.sampled_from(
            [
                "rms_dbfs",
                "amp_power_w",
                "amp_power_w_before",
                "content_id",
                "bdseq",
                "tone_dbfs",
                "measured_freq_hz",
                "audio_error",
                "power_error",
            ]
        ),
        json_values,
    ),
)


@FUZZ
@given(
    result=results,
    number=st.none() | st.floats(),
    seqs=st.lists(st.integers(0, 10_000), max_size=20),
    shown=st.none() | st.text(max_size=20),
    fresh=st.lists(
        st.tuples(st.dictionaries(st.sampled_from(["ts", "clock_ok"]), json_values), st.integers(0, 2**45)),
        max_size=3,
    ),
)
def test_checks_judge_any_device_answer_without_raising(
    result: dict[str, Any] | None,
    number: float | None,
    seqs: list[int],
    shown: str | None,
    fresh: list[tuple[dict[str, Any], int]],
) -> None:
    speaker, board = default_profile("speaker_cluster"), default_profile("eboard")
    verdicts = [
        C.check_report_now(result, number, speaker, SPAN),
        C.check_test_tone(result, speaker, SPAN),
        C.check_amplifier(result, speaker, SPAN),
        C.check_test_pattern(result, shown, board, SPAN),
        C.check_reconnect(result, number, seqs, speaker, SPAN),
        C.check_clock(fresh, speaker, SPAN),
        C.check_online(result, number, speaker, SPAN),
        C.check_telemetry({"heartbeat": result, "audio": result}, speaker, SPAN),
    ]
    for verdict in verdicts:
        assert isinstance(verdict.passed, bool)
        json.dumps(verdict.to_json(), allow_nan=True)


@FUZZ
@given(data=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_report_reader_rejects_garbage_with_report_error(tmp_path_factory: Any, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("r")) / "report.json"
    path.write_bytes(data)
    with contextlib.suppress(ReportError):
        read_report(path)
