"""Serial line faults: noise corrupts replies, an unplugged device is silent, both end cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial

from hil_tests.faults import line_noise, slow_device, unplugged
from hil_tests.simulators.power_meter import PowerMeterSimulator
from protocols import modbus
from protocols.errors import InvalidFrame

REPLY_BYTES = 25  # address, function, byte count, 10 registers, CRC


@pytest.fixture
def meter() -> Iterator[tuple[PowerMeterSimulator, serial.SerialBase]]:
    with PowerMeterSimulator(transport="tcp") as simulator:
        port = serial.serial_for_url(simulator.url, timeout=0.5)
        try:
            yield simulator, port
        finally:
            port.close()


def _read(port: serial.SerialBase) -> bytes:
    port.write(modbus.build_read_request(modbus.PZEM_DEFAULT_ADDRESS, 0, 10))
    return bytes(port.read(REPLY_BYTES))


def test_corrupting_line_noise_fails_the_crc_then_clears(
    meter: tuple[PowerMeterSimulator, serial.SerialBase],
) -> None:
    simulator, port = meter
    with line_noise(simulator, 1.0, corrupt=True), pytest.raises(InvalidFrame, match="CRC"):
        modbus.parse_pzem_response(_read(port))
    assert simulator.garbage_rate == 0.0
    assert modbus.parse_pzem_response(_read(port))["voltage_v"] > 200


def test_unplugged_device_is_silent_until_plugged_back(
    meter: tuple[PowerMeterSimulator, serial.SerialBase],
) -> None:
    simulator, port = meter
    with unplugged(simulator):
        assert _read(port) == b""
    assert len(_read(port)) == REPLY_BYTES


def test_slow_device_answers_after_the_timeout(meter: tuple[PowerMeterSimulator, serial.SerialBase]) -> None:
    simulator, port = meter
    with slow_device(simulator, 0.8):
        assert _read(port) == b""
    assert len(port.read(REPLY_BYTES)) == REPLY_BYTES  # the late reply; the agent discards it as stale
    assert simulator.response_delay_s == 0.0
    assert len(_read(port)) == REPLY_BYTES
