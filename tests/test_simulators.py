"""Device simulators answer the real wire protocols over a PTY and socket://, faults included."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import serial

from hil_tests.simulators import (
    DisplayBoardSimulator,
    ModemSimulator,
    PowerMeterSimulator,
    SimulatedDevice,
)
from protocols import at_modem, modbus
from protocols import display_frame as df
from protocols.errors import InvalidFrame

Finder = Callable[[bytes], tuple[bytes | None, int]]
TRANSPORTS = ["pty", "tcp"]
SILENCE_S = 0.25  # how long a test listens to conclude that a device did not answer


class FakeClock:
    """A clock the test moves by hand, for rotation, fades and energy."""

    def __init__(self, now: float = 1_764_126_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def open_port(device: SimulatedDevice) -> serial.SerialBase:
    return serial.serial_for_url(device.url, baudrate=9600, timeout=0.02)


def exchange(
    port: serial.SerialBase,
    request: bytes,
    find: Finder,
    expect_bytes: int = 0,
    timeout: float = 2.0,
) -> tuple[bytes | None, bytes]:
    """Send ``request``; return (first valid frame or None, every byte received).

    Stops at a valid frame, at ``expect_bytes`` bytes, or after ``timeout`` seconds.
    """
    port.write(request)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Every concrete port class has in_waiting; the stubs' SerialBase does not.
        received += port.read(max(1, port.in_waiting))  # type: ignore[attr-defined]
        frame, _ = find(received)
        if frame is not None:
            return frame, received
        if expect_bytes and len(received) >= expect_bytes:
            break
    return None, received


def find_at(buffer: bytes) -> tuple[bytes | None, int]:
    return at_modem.find_response(buffer)


@pytest.fixture(params=TRANSPORTS)
def meter(request: pytest.FixtureRequest) -> Iterator[PowerMeterSimulator]:
    with PowerMeterSimulator(transport=request.param, seed=7) as device:
        yield device


@pytest.fixture(params=TRANSPORTS)
def modem(request: pytest.FixtureRequest) -> Iterator[ModemSimulator]:
    with ModemSimulator(transport=request.param, seed=7) as device:
        yield device


@pytest.fixture(params=TRANSPORTS)
def board(request: pytest.FixtureRequest) -> Iterator[DisplayBoardSimulator]:
    with DisplayBoardSimulator(transport=request.param, seed=7, rotate_s=3600.0) as device:
        yield device


def read_meter(port: serial.SerialBase, address: int = modbus.PZEM_GENERAL_ADDRESS) -> bytes:
    frame, raw = exchange(port, modbus.build_read_request(address), modbus.find_response, 25)
    return frame if frame is not None else raw


# --- power meter ------------------------------------------------------------------------


def test_idle_amplifier_reads_mains_voltage_and_idle_draw(meter: PowerMeterSimulator) -> None:
    with open_port(meter) as port:
        reading = modbus.parse_pzem_response(read_meter(port))
    assert 217.0 < reading["voltage_v"] < 223.0
    assert 7.0 < reading["power_w"] < 9.0
    assert 49.8 < reading["frequency_hz"] < 50.2
    assert meter.counts["reading"] == 1
    assert meter.records("reading")[0].detail == reading  # what was sent is what was read


def test_bulletin_audio_raises_amplifier_power_and_off_drops_it() -> None:
    with PowerMeterSimulator(noise=False) as meter, open_port(meter) as port:
        meter.set_audio_level(-20.0)
        playing = modbus.parse_pzem_response(read_meter(port))
        meter.set_amplifier("off")
        off = modbus.parse_pzem_response(read_meter(port))
    assert playing["power_w"] == pytest.approx(8.0 + 12.0)
    assert playing["current_a"] == pytest.approx(20.0 / (220.0 * 0.9), abs=0.001)
    assert off["power_w"] == 0.0
    assert off["current_a"] == 0.0


def test_energy_accumulates_over_simulated_time() -> None:
    clock = FakeClock()
    with PowerMeterSimulator(noise=False, clock=clock) as meter, open_port(meter) as port:
        meter.set_load(3600.0)
        clock.advance(90.0)  # 3600 W for 90 s = 90 Wh
        first = modbus.parse_pzem_response(read_meter(port))
        meter.set_load(None)
        meter.set_amplifier("idle")
        clock.advance(450.0)  # 8 W for 450 s = 1 Wh
        second = modbus.parse_pzem_response(read_meter(port))
        reset, _ = exchange(port, modbus.build_reset_energy(1), modbus.find_response, 4)
        third = modbus.parse_pzem_response(read_meter(port))
    assert first["energy_wh"] == 90
    assert first["power_w"] == 3600.0
    assert second["energy_wh"] == 91
    assert reset is None  # the echo of 0x42 is not a register response
    assert third["energy_wh"] == 0


def test_unplugged_meter_never_answers(meter: PowerMeterSimulator) -> None:
    meter.unplugged = True
    with open_port(meter) as port:
        frame, raw = exchange(port, modbus.build_read_request(), modbus.find_response, 1, SILENCE_S)
    assert (frame, raw) == (None, b"")
    assert meter.counts["ignored"] == 1
    assert meter.counts["reading"] == 0


def test_corrupt_replies_fail_with_crc_mismatch(meter: PowerMeterSimulator) -> None:
    meter.garbage_rate = 1.0
    meter.garbage_kind = "corrupt"
    with open_port(meter) as port:
        raw = read_meter(port)
    assert len(raw) == modbus.PZEM_RESPONSE_LENGTH
    with pytest.raises(InvalidFrame, match="CRC mismatch"):
        modbus.parse_pzem_response(raw)


def test_random_garbage_is_never_taken_for_a_reading(meter: PowerMeterSimulator) -> None:
    meter.garbage_rate = 1.0
    with open_port(meter) as port:
        frame, raw = exchange(port, modbus.build_read_request(), modbus.find_response, 25)
    assert frame is None
    assert len(raw) == 25
    assert meter.counts["garbage"] == 1


def test_agent_sees_exactly_the_corrupt_replies_the_meter_sent() -> None:
    with PowerMeterSimulator(seed=3) as meter, open_port(meter) as port:
        meter.garbage_rate = 0.4
        meter.garbage_kind = "corrupt"
        failures = 0
        for _ in range(20):
            try:
                modbus.parse_pzem_response(read_meter(port))
            except InvalidFrame:
                failures += 1
    assert 0 < failures < 20
    assert failures == meter.counts["corrupt"]
    assert meter.counts["reading"] == 20 - failures


def test_exception_code_knob_answers_with_a_modbus_exception(meter: PowerMeterSimulator) -> None:
    meter.exception_code = 4
    with open_port(meter) as port, pytest.raises(modbus.DeviceException) as exc:
        modbus.parse_pzem_response(read_meter(port))
    assert exc.value.code == 4


def test_meter_ignores_other_addresses_and_bad_crc() -> None:
    with PowerMeterSimulator(address=1) as meter, open_port(meter) as port:
        other, _ = exchange(port, modbus.build_read_request(2), modbus.find_response, 1, SILENCE_S)
        request = bytearray(modbus.build_read_request(1))
        request[-1] ^= 0xFF
        bad, _ = exchange(port, bytes(request), modbus.find_response, 1, SILENCE_S)
        mine = modbus.parse_pzem_response(read_meter(port, address=1), address=1)
    assert other is None
    assert bad is None
    assert mine["voltage_v"] > 200
    assert meter.counts["other_address"] == 1
    assert meter.discarded_bytes == 8


def test_partial_and_out_of_range_reads() -> None:
    with PowerMeterSimulator(noise=False) as meter, open_port(meter) as port:
        frame, _ = exchange(port, modbus.build_read_request(1, 7, 2), modbus.find_response)
        assert frame is not None
        assert modbus.parse_registers_response(frame) == [500, 90]  # 50.0 Hz, PF 0.90
        frame, _ = exchange(port, modbus.build_read_request(1, 8, 5), modbus.find_response)
        assert frame is not None
        with pytest.raises(modbus.DeviceException, match="illegal data address"):
            modbus.parse_registers_response(frame)


def test_slow_meter_delays_its_answer() -> None:
    with PowerMeterSimulator() as meter, open_port(meter) as port:
        meter.response_delay_s = 0.15
        started = time.monotonic()
        modbus.parse_pzem_response(read_meter(port))
        assert time.monotonic() - started >= 0.15


# --- modem ----------------------------------------------------------------------------


def ask(port: serial.SerialBase, command: str) -> bytes:
    frame, raw = exchange(port, at_modem.encode_command(command), find_at, timeout=1.0)
    return frame if frame is not None else raw


def test_modem_reports_signal_and_viettel_on_lte(modem: ModemSimulator) -> None:
    with open_port(modem) as port:
        csq = at_modem.parse_csq(ask(port, at_modem.CSQ))
        cops = at_modem.parse_cops(ask(port, at_modem.COPS_QUERY))
        creg = at_modem.parse_creg(ask(port, at_modem.CREG_QUERY))
    assert csq == {"rssi": 20, "ber": None, "signal_dbm": -73}
    assert (cops["operator"], cops["technology"]) == ("Viettel", "4g")
    assert creg["status"] == "home"
    assert modem.counts["ok"] == 3


def test_modem_echoes_until_ate0() -> None:
    with ModemSimulator() as modem, open_port(modem) as port:
        assert ask(port, "AT").startswith(b"AT\r")
        ask(port, "ATE0")
        assert ask(port, "AT") == b"\r\nOK\r\n"
        assert ask(port, "AT+CGMI?") == b"\r\nERROR\r\n"


def test_signal_fades_over_time_and_vanishes() -> None:
    clock = FakeClock()
    with ModemSimulator(rssi=20, clock=clock) as modem, open_port(modem) as port:
        modem.fade_to(4, seconds=10.0)
        clock.advance(5.0)
        halfway = at_modem.parse_csq(ask(port, at_modem.CSQ))
        clock.advance(60.0)
        faded = at_modem.parse_csq(ask(port, at_modem.CSQ))
        modem.lose_signal()
        lost = at_modem.parse_csq(ask(port, at_modem.CSQ))
        cops = at_modem.parse_cops(ask(port, at_modem.COPS_QUERY))
        creg = at_modem.parse_creg(ask(port, at_modem.CREG_QUERY))
    assert halfway["rssi"] == 12
    assert faded["rssi"] == 4
    assert lost["signal_dbm"] is None
    assert cops["operator"] is None
    assert creg["status"] == "searching"


def test_modem_error_knobs(modem: ModemSimulator) -> None:
    with open_port(modem) as port:
        modem.error_replies = True
        with pytest.raises(at_modem.ModemError) as plain:
            at_modem.parse_csq(ask(port, at_modem.CSQ))
        modem.cme_error = 10
        with pytest.raises(at_modem.ModemError) as sim_missing:
            at_modem.parse_cops(ask(port, at_modem.COPS_QUERY))
    assert plain.value.code is None
    assert sim_missing.value.code == 10
    assert modem.counts["error"] == 1
    assert modem.counts["cme_error"] == 1


def test_unplugged_modem_is_silent(modem: ModemSimulator) -> None:
    modem.unplugged = True
    with open_port(modem) as port:
        frame, raw = exchange(port, b"AT+CSQ\r", find_at, 1, SILENCE_S)
    assert (frame, raw) == (None, b"")


def test_corrupt_modem_reply_is_invalid_not_a_reading(modem: ModemSimulator) -> None:
    modem.garbage_rate = 1.0
    modem.garbage_kind = "corrupt"
    with open_port(modem) as port, pytest.raises(InvalidFrame, match="non-ASCII byte 0xFF"):
        at_modem.parse_csq(ask(port, at_modem.CSQ))
    assert modem.counts["corrupt"] == 1


def test_random_garbage_from_modem_has_no_final_result_code() -> None:
    with ModemSimulator(seed=1) as modem, open_port(modem) as port:
        clean = ask(port, at_modem.CSQ)
        modem.garbage_rate = 1.0
        frame, raw = exchange(port, b"AT+CSQ\r", find_at, expect_bytes=len(clean))
        expected = modem.records("garbage")[0].data
    assert frame is None
    assert raw == expected


# --- display board --------------------------------------------------------------------


def poll(port: serial.SerialBase, request: bytes) -> dict[str, Any]:
    frame, raw = exchange(port, request, df.find_frame, timeout=1.0)
    return df.decode_frame(frame if frame is not None else raw)


def test_board_status_over_the_wire(board: DisplayBoardSimulator) -> None:
    with open_port(board) as port:
        status = poll(port, df.status_request(9))
    assert status["seq"] == 9
    assert status["power"] is True
    assert status["blank"] is False
    assert status["content_id"] == "BANTIN-SANG"
    assert status["modules_total"] == 48
    assert board.records("status")[0].detail == status


def test_content_rotates_and_screen_hash_moves_until_frozen() -> None:
    clock = FakeClock()
    with DisplayBoardSimulator(clock=clock, rotate_s=10.0) as board, open_port(board) as port:
        first = poll(port, df.status_request(1))
        second = poll(port, df.status_request(2))
        clock.advance(10.0)
        rotated = poll(port, df.status_request(3))
        board.freeze()
        frozen = [poll(port, df.status_request(4 + i))["screen_hash"] for i in range(3)]
        clock.advance(10.0)
        still_frozen = poll(port, df.status_request(8))
    assert first["screen_hash"] != second["screen_hash"]
    assert (first["content_id"], rotated["content_id"]) == ("BANTIN-SANG", "THONGBAO-UBND")
    assert len(set(frozen)) == 1
    assert still_frozen["screen_hash"] == frozen[0]
    assert still_frozen["content_id"] == "ATGT-2025"  # the player thinks it moves on


def test_blank_output_and_power_off_report_the_black_hash(board: DisplayBoardSimulator) -> None:
    with open_port(board) as port:
        board.set_blank(True)
        blank = poll(port, df.status_request(1))
        board.set_blank(False)
        assert poll(port, df.set_power(2, False))["command"] == "ack"
        off = poll(port, df.status_request(3))
    assert blank["blank"] is True
    assert blank["screen_hash"] == df.BLANK_SCREEN_HASH
    assert (off["power"], off["blank"], off["screen_hash"]) == (False, True, df.BLANK_SCREEN_HASH)


def test_set_brightness_is_acknowledged_and_reported(board: DisplayBoardSimulator) -> None:
    with open_port(board) as port:
        reply = poll(port, df.set_brightness(4, 35))
        status = poll(port, df.status_request(5))
    assert reply == {"command": "ack", "seq": 4, "for_command": df.SET_BRIGHTNESS}
    assert status["brightness"] == 35


def test_test_pattern_shows_for_its_seconds_then_content_returns() -> None:
    clock = FakeClock()
    with DisplayBoardSimulator(clock=clock) as board, open_port(board) as port:
        assert poll(port, df.show_test_pattern(1, "grid", 30))["command"] == "ack"
        during = [poll(port, df.status_request(2 + i)) for i in range(2)]
        clock.advance(31.0)
        after = poll(port, df.status_request(5))
    assert [s["content_id"] for s in during] == ["TEST:grid", "TEST:grid"]
    assert during[0]["screen_hash"] == during[1]["screen_hash"]  # a still image
    assert not after["content_id"].startswith("TEST:")


@pytest.mark.parametrize(
    ("request_frame", "error"),
    [
        (df.encode_frame(1, df.SHOW_TEST_PATTERN, b"\x09\x00\x05"), df.ERR_UNSUPPORTED_PATTERN),
        (df.encode_frame(1, df.SET_BRIGHTNESS, b"\x96"), df.ERR_BAD_PAYLOAD),
        (df.encode_frame(1, 0x33), df.ERR_UNKNOWN_COMMAND),
        (df.encode_frame(1, df.STATUS), df.ERR_UNKNOWN_COMMAND),
    ],
)
def test_board_refuses_what_it_cannot_do(request_frame: bytes, error: int) -> None:
    with DisplayBoardSimulator() as board, open_port(board) as port:
        reply = poll(port, request_frame)
    assert reply["command"] == "nak"
    assert reply["error"] == error
    assert reply["for_command"] == request_frame[4]


def test_test_pattern_is_refused_while_the_screen_is_off(board: DisplayBoardSimulator) -> None:
    board.set_power(False)
    with open_port(board) as port:
        reply = poll(port, df.show_test_pattern(1, "white", 5))
    assert reply["error"] == df.ERR_POWERED_OFF


def test_source_sync_fresh_stale_and_never() -> None:
    wall = FakeClock(1_764_126_030.0)
    with DisplayBoardSimulator(wall_clock=wall) as board, open_port(board) as port:
        fresh = poll(port, df.status_request(1))["last_source_sync"]
        board.make_sync_stale(7200)
        wall.advance(600)
        stale = poll(port, df.status_request(2))["last_source_sync"]
        board.make_never_synced()
        never = poll(port, df.status_request(3))["last_source_sync"]
    assert fresh == 1_764_126_000  # on the last 60 s sync tick
    assert stale == 1_764_126_030 - 7200
    assert never == 0


def test_failed_modules_and_temperature_are_reported(board: DisplayBoardSimulator) -> None:
    board.fail_modules(3)
    board.temperature_c = 67.25
    with open_port(board) as port:
        status = poll(port, df.status_request(1))
    assert (status["failed_modules"], status["temperature_c"]) == (3, 67.2)


def test_board_fault_knobs(board: DisplayBoardSimulator) -> None:
    with open_port(board) as port:
        board.nak_error = df.ERR_BUSY
        assert poll(port, df.status_request(1))["error"] == df.ERR_BUSY
        board.nak_error = None
        board.garbage_rate = 1.0
        board.garbage_kind = "corrupt"
        expect_len = len(df.encode_message(board.status(2)))
        frame, raw = exchange(port, df.status_request(2), df.find_frame, expect_len)
        assert frame is None
        with pytest.raises(InvalidFrame, match="CRC mismatch"):
            df.decode_frame(raw)
        board.garbage_rate = 0.0
        board.unplugged = True
        frame, raw = exchange(port, df.status_request(3), df.find_frame, 1, SILENCE_S)
        assert (frame, raw) == (None, b"")
    assert (board.counts["nak"], board.counts["corrupt"], board.counts["ignored"]) == (1, 1, 1)


def test_board_drops_noise_and_frames_with_a_bad_crc() -> None:
    with DisplayBoardSimulator() as board, open_port(board) as port:
        bad = bytearray(df.status_request(1))
        bad[-2] ^= 0x10
        frame, _ = exchange(port, bytes(bad), df.find_frame, 1, SILENCE_S)
        assert frame is None
        status = poll(port, b"\xff\x00" + df.status_request(2))
    assert status["seq"] == 2
    assert board.counts["requests"] == 1
    assert board.discarded_bytes == len(bad) + 2


# --- transports ----------------------------------------------------------------------


def test_pty_port_can_be_closed_and_reopened() -> None:
    with PowerMeterSimulator(transport="pty") as meter:
        assert meter.url.startswith("/dev/")
        for _ in range(2):
            with open_port(meter) as port:
                modbus.parse_pzem_response(read_meter(port))
    assert meter.counts["reading"] == 2


def test_new_tcp_client_replaces_the_old_one() -> None:
    with ModemSimulator(transport="tcp") as modem:
        assert modem.url.startswith("socket://127.0.0.1:")
        with open_port(modem) as first, open_port(modem) as second:
            at_modem.parse_csq(ask(second, at_modem.CSQ))
            assert modem.counts["ok"] == 1
            with pytest.raises(serial.SerialException, match="socket disconnected"):
                first.read(10)


def test_a_broken_knob_is_recorded_and_the_device_keeps_answering() -> None:
    with DisplayBoardSimulator() as board, open_port(board) as port:
        board.nak_error = 0  # not a valid NAK code: encoding the reply fails
        frame, _ = exchange(port, df.status_request(1), df.find_frame, 1, SILENCE_S)
        board.nak_error = None
        status = poll(port, df.status_request(2))
    assert frame is None
    assert status["seq"] == 2
    assert [type(e) for e in board.errors] == [InvalidFrame]
    assert board.counts["simulator_error"] == 1


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport must be 'pty' or 'tcp'"):
        PowerMeterSimulator(transport="usb")
