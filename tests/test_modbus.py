"""Modbus-RTU for the PZEM-004T amplifier power meter: CRC, requests, responses, garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import modbus
from protocols.errors import InvalidFrame

# A reading as a PZEM on a speaker cluster's amplifier supply reports it while a bulletin
# plays: 229.8 V, 0.123 A, 25.6 W, 70,000 Wh (crosses the 16-bit word), 50.0 Hz, PF 0.91.
BULLETIN_RESPONSE = bytes.fromhex("01 04 14 08 fa 00 7b 00 00 01 00 00 00 11 70 00 01 01 f4 00 5b 00 00")
BULLETIN_READING = {
    "voltage_v": 229.8,
    "current_a": 0.123,
    "power_w": 25.6,
    "energy_wh": 70000,
    "frequency_hz": 50.0,
    "power_factor": 0.91,
    "alarm": False,
}


def reference_crc16(data: bytes) -> int:
    """CRC-16/MODBUS, bit by bit, straight from the Modbus serial line spec."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def framed(body: bytes) -> bytes:
    crc = reference_crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


@pytest.mark.parametrize(
    ("frame_hex", "what"),
    [
        ("01 04 00 00 00 0A 70 0D", "PZEM read of 10 input registers at address 1"),
        ("01 03 00 00 00 0A C5 CD", "read holding registers, the spec's classic vector"),
        ("F8 04 00 00 00 0A 64 64", "PZEM read at the general address 0xF8"),
    ],
)
def test_crc_matches_known_frames(frame_hex: str, what: str) -> None:
    frame = bytes.fromhex(frame_hex)
    assert modbus.crc16(frame[:-2]) == frame[-2] | frame[-1] << 8, what


def test_crc_check_value_of_the_standard_catalogue() -> None:
    assert modbus.crc16(b"123456789") == 0x4B37


@given(st.binary(max_size=300))
def test_table_crc_equals_bitwise_reference(data: bytes) -> None:
    assert modbus.crc16(data) == reference_crc16(data)


def test_read_request_for_pzem_at_address_1_is_the_documented_frame() -> None:
    assert modbus.build_read_request(0x01) == bytes.fromhex("01 04 00 00 00 0A 70 0D")


def test_default_request_uses_general_address_for_a_single_meter() -> None:
    assert modbus.build_read_request()[0] == modbus.PZEM_GENERAL_ADDRESS


def test_request_rejects_address_outside_the_bus() -> None:
    with pytest.raises(InvalidFrame, match=r"address must be in 1\.\.248, got 0"):
        modbus.build_read_request(0)


def test_amplifier_reading_parses_into_engineering_units() -> None:
    assert modbus.parse_pzem_response(framed(BULLETIN_RESPONSE), address=1) == BULLETIN_READING


def test_reading_builds_the_same_frame_a_meter_sends() -> None:
    assert modbus.build_pzem_response(1, BULLETIN_READING) == framed(BULLETIN_RESPONSE)


def test_power_alarm_register_sets_alarm() -> None:
    registers = modbus.reading_to_registers(dict(BULLETIN_READING, alarm=True))
    assert registers[9] == 0xFFFF
    assert modbus.registers_to_reading(registers)["alarm"] is True


def test_truncated_response_names_both_lengths() -> None:
    with pytest.raises(InvalidFrame, match="response too short: 7 bytes, need 25"):
        modbus.parse_pzem_response(framed(BULLETIN_RESPONSE)[:7])


def test_corrupt_crc_names_got_and_computed() -> None:
    frame = bytearray(framed(BULLETIN_RESPONSE))
    good = frame[-2] | frame[-1] << 8
    frame[-2] ^= 0x01
    with pytest.raises(InvalidFrame) as excinfo:
        modbus.parse_pzem_response(bytes(frame))
    assert str(excinfo.value) == f"CRC mismatch: got 0x{good ^ 1:04X}, computed 0x{good:04X}"


def test_exception_response_reports_the_device_code() -> None:
    frame = modbus.build_exception_response(1, modbus.READ_INPUT_REGISTERS, 2)
    assert frame[:3] == b"\x01\x84\x02"
    with pytest.raises(modbus.DeviceException, match="device reported exception code 2") as exc:
        modbus.parse_pzem_response(frame)
    assert exc.value.code == 2
    assert isinstance(exc.value, InvalidFrame)


def test_response_from_another_meter_is_rejected() -> None:
    frame = modbus.build_pzem_response(2, BULLETIN_READING)
    with pytest.raises(InvalidFrame, match="response from address 0x02, expected 0x01"):
        modbus.parse_pzem_response(frame, address=1)
    assert modbus.parse_pzem_response(frame, address=modbus.PZEM_GENERAL_ADDRESS)


def test_wrong_function_and_odd_byte_count_are_named() -> None:
    with pytest.raises(InvalidFrame, match="unexpected function 0x03"):
        modbus.parse_registers_response(framed(b"\x01\x03\x02\x00\x01"))
    with pytest.raises(InvalidFrame, match="byte count must be even"):
        modbus.parse_registers_response(framed(b"\x01\x04\x03\x00\x01\x02"))


def test_partial_read_is_not_a_pzem_reading() -> None:
    frame = modbus.build_registers_response(1, [2298, 123])
    assert modbus.parse_registers_response(frame) == [2298, 123]
    with pytest.raises(InvalidFrame, match="needs 10 registers, got 2"):
        modbus.parse_pzem_response(frame)


def test_non_bytes_input_is_an_invalid_frame() -> None:
    with pytest.raises(InvalidFrame, match="frame must be bytes, got str"):
        modbus.parse_pzem_response("01 04")  # type: ignore[arg-type]


def test_reading_that_does_not_fit_the_registers_is_refused() -> None:
    with pytest.raises(InvalidFrame, match="voltage_v out of range"):
        modbus.reading_to_registers(dict(BULLETIN_READING, voltage_v=7000.0))
    with pytest.raises(InvalidFrame, match="power_w must be a finite number"):
        modbus.reading_to_registers(dict(BULLETIN_READING, power_w=float("nan")))


def test_stream_parser_skips_leading_noise() -> None:
    frame = framed(BULLETIN_RESPONSE)
    found, consumed = modbus.find_response(b"\x00\xff\x13" + frame + b"\x01\x04")
    assert found == frame
    assert consumed == 3 + len(frame)


def test_stream_parser_waits_for_the_rest_of_a_frame() -> None:
    frame = framed(BULLETIN_RESPONSE)
    found, consumed = modbus.find_response(b"\x00" + frame[:10])
    assert found is None
    assert consumed == 1  # the noise byte goes, the frame's start stays
    found, consumed = modbus.find_response(frame[:10] + frame[10:])
    assert found == frame


def test_stream_parser_finds_an_exception_response_after_a_false_start() -> None:
    exc = modbus.build_exception_response(1, 4, 4)
    found, _ = modbus.find_response(b"\x01\x04\x14" + exc)
    assert found == exc


def test_request_parser_reads_what_the_agent_sends() -> None:
    request = modbus.build_read_request(1, start=3, count=2)
    found, consumed = modbus.find_request(b"\xaa" + request)
    assert found == request
    assert consumed == 9
    assert modbus.parse_request(request) == {"address": 1, "function": 4, "start": 3, "count": 2}
    assert modbus.parse_request(modbus.build_reset_energy(1))["function"] == modbus.RESET_ENERGY


readings = st.fixed_dictionaries(
    {
        "voltage_v": st.integers(0, 0xFFFF).map(lambda r: r / 10),
        "current_a": st.integers(0, 0xFFFFFFFF).map(lambda r: r / 1000),
        "power_w": st.integers(0, 0xFFFFFFFF).map(lambda r: r / 10),
        "energy_wh": st.integers(0, 0xFFFFFFFF),
        "frequency_hz": st.integers(0, 0xFFFF).map(lambda r: r / 10),
        "power_factor": st.integers(0, 100).map(lambda r: r / 100),
        "alarm": st.booleans(),
    }
)


@given(readings)
def test_any_reading_survives_the_wire(reading: dict[str, object]) -> None:
    assert modbus.parse_pzem_response(modbus.build_pzem_response(1, reading)) == reading


def _only_invalid_frame(data: bytes) -> None:
    with contextlib.suppress(InvalidFrame):
        modbus.parse_pzem_response(data)
    with contextlib.suppress(InvalidFrame):
        modbus.parse_request(data)
    modbus.find_response(data)
    modbus.find_request(data)


@given(st.binary(max_size=64))
def test_random_bytes_only_ever_raise_invalid_frame(data: bytes) -> None:
    _only_invalid_frame(data)


@given(readings, st.integers(0, 24))
def test_truncated_frames_raise_invalid_frame(reading: dict[str, object], cut: int) -> None:
    frame = modbus.build_pzem_response(1, reading)
    with pytest.raises(InvalidFrame):
        modbus.parse_pzem_response(frame[:cut])


@given(readings, st.integers(0, 25 * 8 - 1))
def test_any_single_bit_flip_is_detected(reading: dict[str, object], bit: int) -> None:
    frame = bytearray(modbus.build_pzem_response(1, reading))
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidFrame):
        modbus.parse_pzem_response(bytes(frame), address=1)
