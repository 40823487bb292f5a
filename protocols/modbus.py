"""Modbus-RTU for the PZEM-004T v3.0 AC power meter on an amplifier's mains supply.

The meter answers function 0x04 (read input registers) at 9600 8N1. Registers from 0x0000:

==== ============================ ==========
reg  quantity                     unit
==== ============================ ==========
0    voltage                      0.1 V
1-2  current (low word, high word) 0.001 A
3-4  active power (low, high)     0.1 W
5-6  energy (low, high)           1 Wh
7    frequency                    0.1 Hz
8    power factor                 0.01
9    power alarm                  0xFFFF on, 0x0000 off
==== ============================ ==========

Every frame ends in a CRC16 (poly 0xA001, init 0xFFFF) sent low byte first. A meter that
cannot serve a request answers with ``function | 0x80`` and an exception code, which
:func:`parse_registers_response` raises as :class:`DeviceException`.

Address 0xF8 is the PZEM "general" address: any single meter on the bus answers it with
its own address, which is why it is the default for a controller wired to one meter.

Portable: runs unchanged on CPython and MicroPython (byte and int operations only). Every
malformed input raises :class:`protocols.errors.InvalidFrame` naming the problem.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

from protocols.errors import InvalidFrame

PZEM_GENERAL_ADDRESS = 0xF8
PZEM_DEFAULT_ADDRESS = 0x01
READ_INPUT_REGISTERS = 0x04
RESET_ENERGY = 0x42
PZEM_REGISTER_COUNT = 10
PZEM_RESPONSE_LENGTH = 3 + 2 * PZEM_REGISTER_COUNT + 2  # 25 bytes
EXCEPTION_RESPONSE_LENGTH = 5
READ_REQUEST_LENGTH = 8
RESET_ENERGY_LENGTH = 4
MAX_REGISTERS = 125  # Modbus limit for one read

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
}


class DeviceException(InvalidFrame):
    """The meter answered with a Modbus exception response instead of data.

    Attributes:
        code: the Modbus exception code the device reported (1 = illegal function, ...).
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _make_table() -> "list[int]":
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _make_table()


def crc16(data: "bytes | bytearray") -> int:
    """CRC16/MODBUS of ``data`` (poly 0xA001 reflected, init 0xFFFF).

    Args:
        data: the bytes covered by the checksum.

    Returns:
        The 16-bit CRC as an int; on the wire it is sent low byte first.
    """
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: "bytes | bytearray") -> bytes:
    """Return ``body`` followed by its CRC16, low byte first."""
    crc = crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


def _check_bytes(frame: "Any") -> None:
    if not isinstance(frame, (bytes, bytearray)):
        raise InvalidFrame("frame must be bytes, got %s" % type(frame).__name__)


def _check_crc(frame: "bytes | bytearray") -> None:
    got = frame[-2] | (frame[-1] << 8)
    computed = crc16(frame[:-2])
    if got != computed:
        raise InvalidFrame("CRC mismatch: got 0x%04X, computed 0x%04X" % (got, computed))


def _check_int(name: str, value: "Any", lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFrame("%s must be an int, got %s" % (name, type(value).__name__))
    if not lo <= value <= hi:
        raise InvalidFrame("%s must be in %d..%d, got %d" % (name, lo, hi, value))
    return value


def build_read_request(
    address: int = PZEM_GENERAL_ADDRESS, start: int = 0, count: int = PZEM_REGISTER_COUNT
) -> bytes:
    """Build a "read input registers" (0x04) request.

    Args:
        address: slave address, 1..247 or 0xF8 (PZEM general address).
        start: first register.
        count: number of registers, 1..125.

    Returns:
        The 8-byte request frame, e.g. ``01 04 00 00 00 0A 70 0D``.
    """
    _check_int("address", address, 1, 0xF8)
    _check_int("start", start, 0, 0xFFFF)
    _check_int("count", count, 1, MAX_REGISTERS)
    return with_crc(
        bytes((address, READ_INPUT_REGISTERS, start >> 8, start & 0xFF, count >> 8, count & 0xFF))
    )


def build_reset_energy(address: int = PZEM_GENERAL_ADDRESS) -> bytes:
    """Build the PZEM "reset energy" (0x42) request; the meter echoes it back."""
    _check_int("address", address, 1, 0xF8)
    return with_crc(bytes((address, RESET_ENERGY)))


def parse_request(frame: "bytes | bytearray") -> "dict[str, int]":
    """Decode a request a controller sent (the simulator's side of the bus).

    Returns:
        ``{"address", "function"}`` plus ``"start"`` and ``"count"`` for a 0x04 read.

    Raises:
        InvalidFrame: wrong length, CRC mismatch or an unsupported function.
    """
    _check_bytes(frame)
    if len(frame) == RESET_ENERGY_LENGTH:
        _check_crc(frame)
        if frame[1] != RESET_ENERGY:
            raise InvalidFrame("unsupported function 0x%02X in a 4-byte request" % frame[1])
        return {"address": frame[0], "function": RESET_ENERGY}
    if len(frame) != READ_REQUEST_LENGTH:
        raise InvalidFrame("request must be 4 or 8 bytes, got %d" % len(frame))
    _check_crc(frame)
    return {
        "address": frame[0],
        "function": frame[1],
        "start": (frame[2] << 8) | frame[3],
        "count": (frame[4] << 8) | frame[5],
    }


def build_registers_response(address: int, registers: "list[int]") -> bytes:
    """Build a 0x04 response carrying ``registers`` (each 0..65535)."""
    _check_int("address", address, 1, 0xF8)
    _check_int("register count", len(registers), 1, MAX_REGISTERS)
    body = bytearray((address, READ_INPUT_REGISTERS, 2 * len(registers)))
    for i, value in enumerate(registers):
        _check_int("register %d" % i, value, 0, 0xFFFF)
        body.append(value >> 8)
        body.append(value & 0xFF)
    return with_crc(body)


def build_exception_response(address: int, function: int, code: int) -> bytes:
    """Build the exception response a slave sends when it cannot serve ``function``."""
    _check_int("address", address, 1, 0xF8)
    _check_int("function", function, 1, 0x7F)
    _check_int("exception code", code, 1, 0xFF)
    return with_crc(bytes((address, function | 0x80, code)))


def parse_registers_response(frame: "bytes | bytearray", address: "int | None" = None) -> "list[int]":
    """Decode a 0x04 response into its register values.

    Args:
        frame: one complete response frame.
        address: the address the request went to; ``None`` or 0xF8 accepts any.

    Returns:
        The register values, in order.

    Raises:
        DeviceException: the device answered with a Modbus exception.
        InvalidFrame: anything else wrong (length, CRC, function, address).
    """
    _check_bytes(frame)
    if len(frame) < EXCEPTION_RESPONSE_LENGTH:
        raise InvalidFrame(
            "response too short: %d bytes, need at least %d" % (len(frame), EXCEPTION_RESPONSE_LENGTH)
        )
    function = frame[1]
    if function == READ_INPUT_REGISTERS | 0x80:
        if len(frame) != EXCEPTION_RESPONSE_LENGTH:
            raise InvalidFrame("exception response must be 5 bytes, got %d" % len(frame))
        _check_crc(frame)
        code = frame[2]
        raise DeviceException(
            "device reported exception code %d (%s)" % (code, EXCEPTION_NAMES.get(code, "unknown exception")),
            code,
        )
    if function != READ_INPUT_REGISTERS:
        raise InvalidFrame("unexpected function 0x%02X, expected 0x04" % function)
    byte_count = frame[2]
    need = 3 + byte_count + 2
    if len(frame) < need:
        raise InvalidFrame("response too short: %d bytes, need %d" % (len(frame), need))
    if len(frame) > need:
        raise InvalidFrame("response too long: %d bytes, expected %d" % (len(frame), need))
    _check_crc(frame)
    if byte_count == 0 or byte_count % 2:
        raise InvalidFrame("byte count must be even and non-zero, got %d" % byte_count)
    if address is not None and address != PZEM_GENERAL_ADDRESS and frame[0] != address:
        raise InvalidFrame("response from address 0x%02X, expected 0x%02X" % (frame[0], address))
    return [(frame[i] << 8) | frame[i + 1] for i in range(3, 3 + byte_count, 2)]


def registers_to_reading(registers: "list[int]") -> "dict[str, Any]":
    """Convert the PZEM's 10 input registers to engineering units.

    Returns:
        ``voltage_v``, ``current_a``, ``power_w``, ``energy_wh`` (int), ``frequency_hz``,
        ``power_factor`` and ``alarm`` (bool).
    """
    if len(registers) != PZEM_REGISTER_COUNT:
        raise InvalidFrame("PZEM reading needs %d registers, got %d" % (PZEM_REGISTER_COUNT, len(registers)))
    r = registers
    return {
        "voltage_v": r[0] / 10,
        "current_a": (r[1] | (r[2] << 16)) / 1000,
        "power_w": (r[3] | (r[4] << 16)) / 10,
        "energy_wh": r[5] | (r[6] << 16),
        "frequency_hz": r[7] / 10,
        "power_factor": r[8] / 100,
        "alarm": r[9] != 0,
    }


def _scaled(reading: "dict[str, Any]", name: str, scale: int, hi: int) -> int:
    value = reading.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFrame("%s must be a number, got %s" % (name, type(value).__name__))
    if value != value or not -1e12 < value < 1e12:  # NaN or inf cannot be rounded
        raise InvalidFrame("%s must be a finite number, got %r" % (name, value))
    raw = round(value * scale)
    if not 0 <= raw <= hi:
        raise InvalidFrame("%s out of range for the meter: %r" % (name, value))
    return raw


def reading_to_registers(reading: "dict[str, Any]") -> "list[int]":
    """Inverse of :func:`registers_to_reading`: the registers a meter would hold."""
    current = _scaled(reading, "current_a", 1000, 0xFFFFFFFF)
    power = _scaled(reading, "power_w", 10, 0xFFFFFFFF)
    energy = _scaled(reading, "energy_wh", 1, 0xFFFFFFFF)
    return [
        _scaled(reading, "voltage_v", 10, 0xFFFF),
        current & 0xFFFF,
        current >> 16,
        power & 0xFFFF,
        power >> 16,
        energy & 0xFFFF,
        energy >> 16,
        _scaled(reading, "frequency_hz", 10, 0xFFFF),
        _scaled(reading, "power_factor", 100, 0xFFFF),
        0xFFFF if reading.get("alarm") else 0,
    ]


def build_pzem_response(address: int, reading: "dict[str, Any]") -> bytes:
    """Build the 25-byte response a PZEM-004T sends for ``reading``."""
    return build_registers_response(address, reading_to_registers(reading))


def parse_pzem_response(frame: "bytes | bytearray", address: "int | None" = None) -> "dict[str, Any]":
    """Decode a full PZEM-004T read (10 registers) into a reading dict.

    Raises:
        DeviceException: the meter answered with a Modbus exception.
        InvalidFrame: the frame is malformed or carries the wrong number of registers.
    """
    return registers_to_reading(parse_registers_response(frame, address))


def _response_length(buffer: "bytes | bytearray", i: int) -> int:
    """Length of a response candidate starting at ``i``: 0 = cannot start here, -1 = need more."""
    n = len(buffer) - i
    if buffer[i] == 0 or buffer[i] > PZEM_GENERAL_ADDRESS:
        return 0
    if n < 2:
        return -1
    function = buffer[i + 1]
    if function == READ_INPUT_REGISTERS | 0x80:
        return EXCEPTION_RESPONSE_LENGTH
    if function != READ_INPUT_REGISTERS:
        return 0
    if n < 3:
        return -1
    count = buffer[i + 2]
    if count == 0 or count % 2 or count > 2 * MAX_REGISTERS:
        return 0
    return 3 + count + 2


def _request_lengths(buffer: "bytes | bytearray", i: int) -> "tuple[int, ...]":
    if buffer[i] == 0 or buffer[i] > PZEM_GENERAL_ADDRESS:
        return ()
    if len(buffer) - i < 2:
        return (-1,)
    function = buffer[i + 1]
    if function == RESET_ENERGY:
        return (RESET_ENERGY_LENGTH,)
    if function & 0x80:
        return ()
    return (READ_REQUEST_LENGTH,)


def _scan(buffer: "bytes | bytearray", lengths_at: "Any") -> "tuple[bytes | None, int]":
    keep_from = len(buffer)
    for i in range(len(buffer)):
        for length in lengths_at(buffer, i):
            if length < 0 or i + length > len(buffer):
                keep_from = min(keep_from, i)
                continue
            candidate = buffer[i : i + length]
            if crc16(candidate[:-2]) == (candidate[-2] | (candidate[-1] << 8)):
                return bytes(candidate), i + length
    return None, keep_from


def find_response(buffer: "bytes | bytearray") -> "tuple[bytes | None, int]":
    """Find the first complete, CRC-valid response in bytes read so far.

    Leading garbage is skipped. A candidate that is still arriving keeps its bytes, so
    call again with more data appended.

    Args:
        buffer: bytes received so far.

    Returns:
        ``(frame, consumed)``: the response frame (a register or exception response) or
        ``None``, and how many leading bytes of ``buffer`` the caller can drop. When a
        frame is found, ``consumed - len(frame)`` bytes of garbage preceded it.
    """
    _check_bytes(buffer)

    def lengths_at(buf: "bytes | bytearray", i: int) -> "tuple[int, ...]":
        length = _response_length(buf, i)
        return (length,) if length else ()

    return _scan(buffer, lengths_at)


def find_request(buffer: "bytes | bytearray") -> "tuple[bytes | None, int]":
    """Like :func:`find_response`, for requests (what a meter or bus sniffer reads)."""
    _check_bytes(buffer)
    return _scan(buffer, _request_lengths)
