"""Wire protocol v1 payloads: every kind round-trips; bad input only raises InvalidPayload."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import payloads
from protocols.errors import InvalidPayload, ProtocolError
from protocols.examples import EXAMPLES

finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(min_size=1, max_size=40)


def _value_for(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    typ = spec["type"]
    if "choices" in spec:
        base: st.SearchStrategy[Any] = st.sampled_from(spec["choices"])
    elif typ == "int":
        base = st.integers(min_value=spec.get("lo", 0), max_value=spec.get("hi", 2**40))
    elif typ == "num":
        lo, hi = spec.get("lo", -1e9), spec.get("hi", 1e9)
        base = st.one_of(
            st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False),
            st.integers(min_value=int(lo) + 1, max_value=int(hi) - 1),
        )
    elif typ == "str":
        base = st.text(min_size=1, max_size=min(spec.get("max_len", 64), 64))
    elif typ == "bool":
        base = st.booleans()
    elif typ == "obj":
        base = st.dictionaries(
            # keys become InfluxDB field names: identifiers only (payloads._is_identifier)
            st.text(alphabet="abcXYZ019_", min_size=1, max_size=10),
            st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), finite, text),
            max_size=5,
        )
    else:
        base = st.just([])
    return st.one_of(st.none(), base) if spec["nullable"] else base


@st.composite
def messages(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    sequenced, fields = payloads.SCHEMAS[kind]
    specs = (payloads._ENVELOPE if sequenced else ()) + fields
    msg: dict[str, Any] = {"v": 1, "kind": kind}
    for spec in specs:
        if spec["required"] or draw(st.booleans()):
            msg[spec["name"]] = draw(_value_for(spec))
    if kind == "command":
        tone = copy.deepcopy(EXAMPLES["command"]["args"])
        msg["args"] = tone if msg["cmd"] == "play_test_tone" else {}
        if msg["cmd"] in ("show_test_pattern", "set_volume", "reboot"):
            msg["args"] = {
                "show_test_pattern": {"pattern": "grid", "seconds": 5},
                "set_volume": {"level": 50},
                "reboot": {"confirm": msg["device"]},
            }[msg["cmd"]]
    if kind == "batch":
        items = draw(st.lists(st.sampled_from(["heartbeat", "audio", "event"]), max_size=5))
        msg["items"] = [dict(EXAMPLES[k], device=msg["device"]) for k in items]
    return msg


@pytest.mark.parametrize("kind", payloads.KINDS)
def test_every_example_round_trips(kind: str) -> None:
    assert payloads.decode(payloads.encode(EXAMPLES[kind])) == EXAMPLES[kind]


@pytest.mark.parametrize("kind", payloads.KINDS)
@settings(max_examples=60)
@given(data=st.data())
def test_generated_messages_round_trip(kind: str, data: st.DataObject) -> None:
    msg = data.draw(messages(kind))
    try:
        encoded = payloads.encode(msg)
    except InvalidPayload as exc:  # only size limits may refuse a schema-valid message
        assert "limit" in str(exc)
        return
    assert payloads.decode(encoded) == msg


@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_invalid_payload(data: bytes) -> None:
    with contextlib.suppress(InvalidPayload):
        payloads.decode(data)


@given(st.sampled_from(payloads.KINDS), st.integers(min_value=0, max_value=10_000))
def test_truncated_payloads_raise_invalid_payload(kind: str, cut: int) -> None:
    data = payloads.encode(EXAMPLES[kind])
    cut = cut % len(data)
    with pytest.raises(InvalidPayload):
        payloads.decode(data[:cut])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.sampled_from(payloads.KINDS), st.data())
def test_wrong_typed_fields_name_the_field(kind: str, data: st.DataObject) -> None:
    msg = copy.deepcopy(EXAMPLES[kind])
    field = data.draw(st.sampled_from(sorted(k for k in msg if k not in ("v", "kind"))))
    msg[field] = data.draw(json_values)
    try:
        payloads.decode(json.dumps(msg))
    except InvalidPayload as exc:
        assert field in str(exc) or "batch.items" in str(exc), str(exc)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update(rms_dbfs="loud"), "audio.rms_dbfs must be a number, got str"),
        (lambda m: m.pop("seq"), "audio.seq is missing"),
        (lambda m: m.update(peak_dbfs=3.0), "audio.peak_dbfs must be <= 0"),
        (lambda m: m.update(v=2), "message.v must be 1"),
        (lambda m: m.update(kind="weather"), "message.kind must be one of"),
        (lambda m: m.update(playing=1), "audio.playing must be true or false, got int"),
        (lambda m: m.update(seq=True), "audio.seq must be an integer, got bool"),
        (lambda m: m.update(seq=-1), "audio.seq must be >= 0, got -1"),
        (lambda m: m.update(rms_dbfs=float("-inf")), "audio.rms_dbfs must be a finite number"),
        (lambda m: m.update(clock_ok=None), "audio.clock_ok must not be null"),
        (lambda m: m.update(boot_id=""), "audio.boot_id must not be empty"),
        (lambda m: m.update(boot_id="x" * 65), "audio.boot_id is too long: 65, limit 64"),
        (lambda m: m.update(programme=7), "audio.programme must be a string, got int"),
    ],
)
def test_documented_error_messages(mutate: Any, message: str) -> None:
    msg = copy.deepcopy(EXAMPLES["audio"])
    mutate(msg)
    with pytest.raises(InvalidPayload, match=message.replace("(", r"\(")):
        payloads.decode(json.dumps(msg).encode())


def test_oversized_payload_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidPayload, match="limit"):
        payloads.decode(b"{" + b" " * (payloads.MAX_BATCH_BYTES + 1) + b"}")


def test_choices_are_named_in_the_error() -> None:
    msg = copy.deepcopy(EXAMPLES["heartbeat"])
    msg["net_type"] = "6g"
    with pytest.raises(InvalidPayload, match=r"heartbeat\.net_type must be one of 5g, 4g, .*got '6g'"):
        payloads.decode(json.dumps(msg).encode())


def test_non_finite_numbers_are_refused() -> None:
    msg = copy.deepcopy(EXAMPLES["audio"])
    msg["rms_dbfs"] = float("nan")
    with pytest.raises(InvalidPayload, match="finite"):
        payloads.encode(msg)
    with pytest.raises(InvalidPayload):
        payloads.decode(b'{"v":1,"kind":"audio","rms_dbfs":NaN}')


def test_deeply_nested_json_is_refused_cleanly() -> None:
    with pytest.raises(InvalidPayload):
        payloads.decode(b"[" * 100_000 + b"]" * 100_000)


def test_batch_items_are_validated_and_must_share_the_device() -> None:
    bad = copy.deepcopy(EXAMPLES["batch"])
    bad["items"][1]["device"] = "someone-else"
    with pytest.raises(InvalidPayload, match=r"batch.items\[1\]"):
        payloads.validate(bad)


def test_all_errors_share_one_base_class() -> None:
    assert issubclass(InvalidPayload, ProtocolError)
    assert issubclass(ProtocolError, ValueError)
