"""Display frame protocol (LED sending card / LCD controller): layout, round trips, garbage."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import display_frame as df
from protocols.errors import InvalidFrame

DISTRICT_BOARD_STATUS: dict[str, Any] = {
    "command": "status",
    "seq": 5,
    "power": True,
    "blank": False,
    "brightness": 80,
    "modules_total": 48,
    "failed_modules": 2,
    "temperature_c": 41.3,
    "last_source_sync": 1764126000,
    "screen_hash": "3acc2d405dce17d7",
    "content_id": "BANTIN-SANG",
}


@pytest.mark.parametrize(
    ("frame", "documented_hex"),
    [
        (df.status_request(5), "02 00 00 05 01 c2 b4 03"),
        (df.set_brightness(6, 60), "02 00 01 06 02 3c c4 8c 03"),
        (df.show_test_pattern(7, "grid", 30), "02 00 03 07 03 06 00 1e ce be 03"),
        (df.set_power(8, False), "02 00 01 08 04 00 a6 fe 03"),
        (df.ack(6, df.SET_BRIGHTNESS), "02 00 01 06 86 02 26 5c 03"),
        (df.nak(7, df.SHOW_TEST_PATTERN, df.ERR_POWERED_OFF), "02 00 02 07 95 03 04 69 b0 03"),
    ],
)
def test_frames_match_the_examples_in_display_frame_md(frame: bytes, documented_hex: str) -> None:
    assert frame == bytes.fromhex(documented_hex)


def test_status_example_matches_the_spec_byte_for_byte() -> None:
    documented = bytes.fromhex(
        "02 00 20 05 81 01 50 00 30 00 02 01 9d 69 26 6d 30"
        " 3a cc 2d 40 5d ce 17 d7 0b 42 41 4e 54 49 4e 2d 53"
        " 41 4e 47 a5 3b 03"
    )
    assert df.encode_message(DISTRICT_BOARD_STATUS) == documented
    assert df.decode_frame(documented) == DISTRICT_BOARD_STATUS


def test_negative_cabinet_temperature_and_vietnamese_content_id() -> None:
    winter = dict(DISTRICT_BOARD_STATUS, temperature_c=-5.5, content_id="Bản tin 17:00")
    assert df.decode_frame(df.encode_message(winter)) == winter


def test_payload_may_contain_stx_and_etx_bytes() -> None:
    status = dict(DISTRICT_BOARD_STATUS, screen_hash="0203020303020302", seq=2)
    reader = df.FrameReader()
    assert reader.feed(df.encode_message(status)) == [df.encode_message(status)]


def test_crc_mismatch_names_both_values() -> None:
    frame = bytearray(df.status_request(1))
    frame[-3] ^= 0xFF
    with pytest.raises(InvalidFrame, match=r"CRC mismatch: got 0x\w{4}, computed 0x\w{4}"):
        df.decode_frame(bytes(frame))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x02\x00", "frame too short: 2 bytes"),
        (b"\x55" + df.status_request(1)[1:], "must start with STX"),
        (df.status_request(1)[:-1] + b"\x04", "must end with ETX"),
        (df.status_request(1) + b"\x00", "does not match its length field"),
        (b"\x02\x02\x01" + bytes(520), "exceeds the limit of 512"),
        (df.encode_frame(1, 0x42), "unknown command 0x42"),
        (df.encode_frame(1, df.SET_BRIGHTNESS, b"\x65"), "must be in 0..100, got 101"),
        (df.encode_frame(1, df.SET_BRIGHTNESS, b""), "payload must be 1 bytes, got 0"),
        (df.encode_frame(1, df.SHOW_TEST_PATTERN, b"\x09\x00\x0a"), "unknown pattern id 9"),
        (df.encode_frame(1, df.SHOW_TEST_PATTERN, b"\x01\x00\x00"), "seconds must be in 1..3600"),
        (df.encode_frame(1, df.STATUS, bytes(20) + b"\x02\xff\xfe"), "not valid UTF-8"),
        (df.encode_frame(1, df.STATUS, bytes(4) + b"\x00\x01" + bytes(15)), "exceeds modules_total"),
        (df.encode_frame(1, df.NAK, b"\x02\x00"), "nak.error must not be 0"),
    ],
)
def test_malformed_frames_name_the_problem(frame: bytes, message: str) -> None:
    with pytest.raises(InvalidFrame, match=message):
        df.decode_frame(frame)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"command": "reboot", "seq": 1}, "unknown command 'reboot'"),
        ({"command": "set_brightness", "seq": 1}, "set_brightness.brightness is missing"),
        ({"command": "set_brightness", "seq": 256, "brightness": 5}, "seq must be in 0..255"),
        ({"command": "set_power", "seq": 1, "on": 1}, "set_power.on must be a bool"),
        ({"command": "show_test_pattern", "seq": 1, "pattern": "plaid", "seconds": 5}, "plaid"),
        (dict(DISTRICT_BOARD_STATUS, screen_hash="3ACC2D405DCE17D7"), "lowercase hex"),
        (dict(DISTRICT_BOARD_STATUS, content_id="x" * 65), "longer than 64 bytes"),
        (dict(DISTRICT_BOARD_STATUS, failed_modules=49), "failed_modules must be in 0..48"),
        (dict(DISTRICT_BOARD_STATUS, temperature_c=float("nan")), "temperature_c must be in"),
    ],
)
def test_encoder_refuses_bad_messages(message: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidFrame, match=problem):
        df.encode_message(message)


def test_stream_resynchronises_after_line_noise() -> None:
    first, second = df.status_request(1), df.encode_message(DISTRICT_BOARD_STATUS)
    reader = df.FrameReader()
    noise = b"\x02\x00\x05\x99\xff\x03\x02"  # a false STX, a short false frame, a dangling STX
    frames = reader.feed(noise + first + b"\x00\x02\x7f" + second)
    assert frames == [first, second]
    assert reader.discarded == len(noise) + 3
    assert reader.pending() == 0


def test_stream_keeps_a_frame_that_arrives_byte_by_byte() -> None:
    frame = df.encode_message(DISTRICT_BOARD_STATUS)
    reader = df.FrameReader()
    got = [f for byte in frame for f in reader.feed(bytes((byte,)))]
    assert got == [frame]
    assert reader.discarded == 0


def test_find_frame_keeps_an_incomplete_frame_after_noise() -> None:
    frame = df.set_brightness(3, 50)
    found, consumed = df.find_frame(b"\xaa\xbb" + frame[:5])
    assert found is None
    assert consumed == 2


seqs = st.integers(0, 255)
hashes = st.binary(min_size=8, max_size=8).map(lambda b: b.hex())
content_ids = st.text(max_size=20).filter(lambda s: len(s.encode()) <= df.MAX_CONTENT_ID_BYTES)


@st.composite
def statuses(draw: st.DrawFn) -> dict[str, Any]:
    total = draw(st.integers(0, 0xFFFF))
    return {
        "command": "status",
        "seq": draw(seqs),
        "power": draw(st.booleans()),
        "blank": draw(st.booleans()),
        "brightness": draw(st.integers(0, 100)),
        "modules_total": total,
        "failed_modules": draw(st.integers(0, total)),
        "temperature_c": draw(st.integers(-32768, 32767)) / 10,
        "last_source_sync": draw(st.integers(0, 0xFFFFFFFF)),
        "screen_hash": draw(hashes),
        "content_id": draw(content_ids),
    }


messages = st.one_of(
    st.builds(lambda s: {"command": "status_request", "seq": s}, seqs),
    st.builds(
        lambda s, b: {"command": "set_brightness", "seq": s, "brightness": b},
        seqs,
        st.integers(0, 100),
    ),
    st.builds(
        lambda s, p, t: {"command": "show_test_pattern", "seq": s, "pattern": p, "seconds": t},
        seqs,
        st.sampled_from(sorted(df.TEST_PATTERN_IDS)),
        st.integers(1, df.MAX_TEST_PATTERN_SECONDS),
    ),
    st.builds(lambda s, on: {"command": "set_power", "seq": s, "on": on}, seqs, st.booleans()),
    st.builds(lambda s, c: {"command": "ack", "seq": s, "for_command": c}, seqs, st.integers(0, 255)),
    st.builds(
        lambda s, c, e: {"command": "nak", "seq": s, "for_command": c, "error": e},
        seqs,
        st.integers(0, 255),
        st.integers(1, 255),
    ),
    statuses(),
)


@given(messages)
def test_every_command_round_trips(message: dict[str, Any]) -> None:
    assert df.decode_frame(df.encode_message(message)) == message


@given(messages, st.binary(max_size=40), st.binary(max_size=40))
def test_stream_finds_every_frame_between_noise_without_stx(
    message: dict[str, Any], before: bytes, after: bytes
) -> None:
    frame = df.encode_message(message)
    reader = df.FrameReader()
    clean = before.replace(b"\x02", b"")
    assert reader.feed(clean + frame + after.replace(b"\x02", b"")) == [frame]
    assert reader.discarded >= len(clean)


@given(st.binary(max_size=80))
def test_random_bytes_only_ever_raise_invalid_frame(data: bytes) -> None:
    with pytest.raises(InvalidFrame):
        df.decode_frame(data)
    df.FrameReader().feed(data)


@given(messages, st.data())
def test_truncated_and_bit_flipped_frames_raise_invalid_frame(
    message: dict[str, Any], data: st.DataObject
) -> None:
    frame = df.encode_message(message)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(InvalidFrame):
        df.decode_frame(frame[:cut])
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    flipped = bytearray(frame)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidFrame):
        df.decode_frame(bytes(flipped))


@given(st.sampled_from(sorted(df.COMMAND_NAMES)), seqs, st.binary(max_size=100))
def test_crc_valid_frames_with_random_payloads_only_raise_invalid_frame(
    command: int, seq: int, payload: bytes
) -> None:
    try:
        message = df.decode_frame(df.encode_frame(seq, command, payload))
    except InvalidFrame:
        return
    assert df.decode_frame(df.encode_message(message)) == message
