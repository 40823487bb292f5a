"""AT commands of the speaker cluster's 4G modem: signal, operator, registration, errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import at_modem
from protocols.errors import InvalidFrame


def test_commands_end_in_carriage_return() -> None:
    assert at_modem.encode_command(at_modem.CSQ) == b"AT+CSQ\r"
    assert at_modem.encode_command("AT+COPS?") == b"AT+COPS?\r"


@pytest.mark.parametrize("bad", ["+CSQ", "AT+CSQ\r", "AT+CSQ\nATD113;", "AT+CÓPS?"])
def test_command_injection_and_non_ascii_are_refused(bad: str) -> None:
    with pytest.raises(InvalidFrame):
        at_modem.encode_command(bad)


def test_csq_gives_rssi_and_dbm() -> None:
    assert at_modem.parse_csq(b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n") == {
        "rssi": 21,
        "ber": None,
        "signal_dbm": -71,
    }


@pytest.mark.parametrize(("rssi", "dbm"), [(0, -113), (1, -111), (31, -51), (99, None)])
def test_rssi_to_dbm_follows_27_007(rssi: int, dbm: int | None) -> None:
    assert at_modem.rssi_to_dbm(rssi) == dbm


def test_no_signal_reports_no_dbm() -> None:
    reading = at_modem.parse_csq(b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n")
    assert reading["signal_dbm"] is None
    assert reading["rssi"] == 99


def test_echo_of_the_command_is_skipped() -> None:
    reading = at_modem.parse_csq(b"AT+CSQ\r\r\n+CSQ: 14,0\r\n\r\nOK\r\n")
    assert reading == {"rssi": 14, "ber": 0, "signal_dbm": -85}


def test_cops_names_viettel_on_lte() -> None:
    data = b'\r\n+COPS: 0,0,"Viettel",7\r\n\r\nOK\r\n'
    assert at_modem.parse_cops(data) == {
        "mode": 0,
        "operator": "Viettel",
        "act": 7,
        "technology": "4g",
    }


def test_cops_on_3g_and_operator_with_a_comma() -> None:
    data = b'\r\n+COPS: 0,0,"Vinaphone, VNPT",2\r\n\r\nOK\r\n'
    reading = at_modem.parse_cops(data)
    assert reading["operator"] == "Vinaphone, VNPT"
    assert reading["technology"] == "3g"


def test_cops_without_registration_has_no_operator() -> None:
    reading = at_modem.parse_cops(b"\r\n+COPS: 0\r\n\r\nOK\r\n")
    assert reading["operator"] is None
    assert reading["technology"] is None


@pytest.mark.parametrize(
    ("line", "status", "registered"),
    [
        (b"+CREG: 0,1", "home", True),
        (b'+CREG: 2,5,"1A2B","00C3F",7', "roaming", True),
        (b"+CREG: 0,2", "searching", False),
        (b"+CREG: 0,3", "denied", False),
    ],
)
def test_creg_registration_states(line: bytes, status: str, registered: bool) -> None:
    reading = at_modem.parse_creg(b"\r\n" + line + b"\r\n\r\nOK\r\n")
    assert reading["status"] == status
    assert reading["registered"] is registered


def test_plain_error_raises_modem_error_without_code() -> None:
    with pytest.raises(at_modem.ModemError, match="modem answered 'ERROR' to AT\\+CSQ") as exc:
        at_modem.parse_csq(b"\r\nERROR\r\n")
    assert exc.value.code is None
    assert isinstance(exc.value, InvalidFrame)


def test_cme_error_carries_its_number() -> None:
    with pytest.raises(at_modem.ModemError) as exc:
        at_modem.parse_cops(b"AT+COPS?\r\r\n+CME ERROR: 10\r\n")
    assert exc.value.code == 10


def test_unsolicited_result_codes_are_ignored() -> None:
    data = b"\r\n+CREG: 2\r\n\r\n+CSQ: 18,99\r\n\r\n^SYSINFO: 2,3\r\n\r\nOK\r\n"
    assert at_modem.parse_csq(data)["rssi"] == 18


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\r\n+CSQ: 21,99\r\n", "no final result code"),
        (b"\r\n+CSQ: 2\xff,99\r\n\r\nOK\r\n", "non-ASCII byte 0xFF at offset 9"),
        (b"\r\nhello\r\n+CSQ: 21,99\r\n\r\nOK\r\n", "unexpected line 'hello'"),
        (b"\r\nOK\r\n", "expected one \\+CSQ: line, got 0"),
        (b"\r\n+CSQ: 40,99\r\n\r\nOK\r\n", "rssi must be 0..31 or 99, got 40"),
        (b"\r\n+CSQ: -1,99\r\n\r\nOK\r\n", "rssi must be a number"),
        (b"\r\n+CSQ: 21\r\n\r\nOK\r\n", "expected 2 fields, got 1"),
        (b"\r\n+CSQ: 21,8\r\n\r\nOK\r\n", "ber must be 0..7 or 99"),
    ],
)
def test_garbage_in_csq_is_named(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidFrame, match=problem):
        at_modem.parse_csq(data)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'\r\n+COPS: 0,0,"Viettel\r\n\r\nOK\r\n', "unterminated quote"),
        (b"\r\n+COPS: 0,0,Viettel,7\r\n\r\nOK\r\n", "operator must be quoted"),
        (b'\r\n+COPS: 0,0,"Viettel",14\r\n\r\nOK\r\n', "AcT must be in 0..13"),
        (b"\r\n+CREG: 0,7\r\n\r\nOK\r\n", "stat must be in 0..5"),
    ],
)
def test_garbage_in_cops_and_creg_is_named(data: bytes, problem: str) -> None:
    parse = at_modem.parse_creg if b"CREG" in data else at_modem.parse_cops
    with pytest.raises(InvalidFrame, match=problem):
        parse(data)


def test_find_response_waits_for_the_final_result_code() -> None:
    assert at_modem.find_response(b"AT+CSQ\r\r\n+CSQ: 21,99\r\n") == (None, 0)
    data = b"AT+CSQ\r\r\n+CSQ: 21,99\r\n\r\nOK\r\n"
    assert at_modem.find_response(data + b"\r\nRING") == (data, len(data))


def test_find_response_gives_up_on_endless_noise() -> None:
    with pytest.raises(InvalidFrame, match="no final result code in 1100 bytes"):
        at_modem.find_response(b"x" * 1100)


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_invalid_frame(data: bytes) -> None:
    for parse in (at_modem.parse_csq, at_modem.parse_cops, at_modem.parse_creg):
        with contextlib.suppress(InvalidFrame):
            parse(data)
    with contextlib.suppress(InvalidFrame):
        at_modem.find_response(data)


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60))
def test_random_printable_info_lines_only_ever_raise_invalid_frame(line: str) -> None:
    data = b"\r\n" + line.encode() + b"\r\n\r\nOK\r\n"
    for parse in (at_modem.parse_csq, at_modem.parse_cops, at_modem.parse_creg):
        with contextlib.suppress(InvalidFrame):
            parse(data)


@given(st.integers(0, 31), st.integers(0, 7), st.data())
def test_truncated_and_bit_flipped_csq_raise_invalid_frame_or_parse(
    rssi: int, ber: int, data: st.DataObject
) -> None:
    frame = b"\r\n+CSQ: %d,%d\r\n\r\nOK\r\n" % (rssi, ber)
    cut = data.draw(st.integers(0, len(frame) - 3))
    with pytest.raises(InvalidFrame):
        at_modem.parse_csq(frame[:cut])
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    flipped = bytearray(frame)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        reading = at_modem.parse_csq(bytes(flipped))
    except InvalidFrame:
        return
    assert 0 <= reading["rssi"] <= 31  # a flipped digit is still a well-formed answer


def test_imei_comes_bare_or_prefixed_and_is_luhn_checked() -> None:
    assert at_modem.encode_command(at_modem.CGSN) == b"AT+CGSN\r"
    assert at_modem.parse_imei(b"AT+CGSN\r\r\n867698041234561\r\n\r\nOK\r\n") == "867698041234561"
    assert at_modem.parse_imei(b'\r\n+CGSN: "867698041234561"\r\n\r\nOK\r\n') == "867698041234561"
    with pytest.raises(InvalidFrame, match="check digit"):
        at_modem.parse_imei(b"\r\n867698041234562\r\n\r\nOK\r\n")
    with pytest.raises(InvalidFrame, match="15 digits"):
        at_modem.parse_imei(b"\r\n8676980412\r\n\r\nOK\r\n")


def test_iccid_with_any_vendor_prefix_and_no_sim() -> None:
    for prefix in (b"+CCID: ", b"+QCCID: ", b"+ICCID: "):
        data = b"\r\n" + prefix + b"89840480000123456789\r\n\r\nOK\r\n"
        assert at_modem.parse_iccid(data) == "89840480000123456789"
    assert at_modem.parse_iccid(b"\r\n+CCID: 8984048000012345678F\r\n\r\nOK\r\n") == "8984048000012345678"
    with pytest.raises(at_modem.ModemError) as error:
        at_modem.parse_iccid(b"\r\n+CME ERROR: 10\r\n")
    assert error.value.code == 10
