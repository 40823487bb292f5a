"""Serial frame protocol between a tincoso agent and an LED sending card / LCD controller.

tincoso's own design, modelled on what sending-card vendors ship over RS-232/RS-485:
binary, length-framed, CRC-checked, one request answered by one response. The full
specification with examples is protocols/DISPLAY_FRAME.md; in short::

    STX  LEN_HI LEN_LO  SEQ  CMD  PAYLOAD...  CRC_LO CRC_HI  ETX
    0x02 payload length           LEN bytes   CRC16/MODBUS   0x03
         (big-endian)                         of LEN_HI..PAYLOAD

* No byte stuffing: the length field frames the payload; a receiver resynchronises after
  noise by scanning for STX and accepting a candidate only if LEN <= 512, the byte at the
  end is ETX and the CRC matches.
* SEQ (0..255) is chosen by the controller; the board copies it into its response.
* Requests (controller -> board): STATUS_REQUEST 0x01, SET_BRIGHTNESS 0x02,
  SHOW_TEST_PATTERN 0x03, SET_POWER 0x04. Responses (board -> controller): STATUS 0x81,
  ACK 0x86 and NAK 0x95 (``0x80 |`` the ASCII ACK/NAK characters).
* A board silently drops a frame that fails the CRC (its SEQ cannot be trusted) and answers
  a CRC-valid frame it cannot serve with NAK and an error code.

Messages are plain dicts with ``"command"`` (a name) and ``"seq"``, plus per-command
fields; :func:`encode_message` and :func:`decode_frame` are exact inverses.

Portable: runs unchanged on CPython and MicroPython. Every malformed input raises
:class:`protocols.errors.InvalidFrame` naming the problem.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

from protocols.errors import InvalidFrame
from protocols.modbus import crc16

STX = 0x02
ETX = 0x03
MAX_PAYLOAD = 512
FRAME_OVERHEAD = 8  # STX, LEN x2, SEQ, CMD, CRC x2, ETX
MAX_CONTENT_ID_BYTES = 64
MAX_TEST_PATTERN_SECONDS = 3600

STATUS_REQUEST = 0x01
SET_BRIGHTNESS = 0x02
SHOW_TEST_PATTERN = 0x03
SET_POWER = 0x04
STATUS = 0x81
ACK = 0x86
NAK = 0x95

COMMAND_NAMES = {
    STATUS_REQUEST: "status_request",
    SET_BRIGHTNESS: "set_brightness",
    SHOW_TEST_PATTERN: "show_test_pattern",
    SET_POWER: "set_power",
    STATUS: "status",
    ACK: "ack",
    NAK: "nak",
}
COMMAND_CODES = {name: code for code, name in COMMAND_NAMES.items()}
REQUEST_CODES = (STATUS_REQUEST, SET_BRIGHTNESS, SHOW_TEST_PATTERN, SET_POWER)

# NAK error codes.
ERR_UNKNOWN_COMMAND = 0x01
ERR_BAD_PAYLOAD = 0x02
ERR_BUSY = 0x03
ERR_POWERED_OFF = 0x04
ERR_UNSUPPORTED_PATTERN = 0x05
ERROR_NAMES = {
    ERR_UNKNOWN_COMMAND: "unknown_command",
    ERR_BAD_PAYLOAD: "bad_payload",
    ERR_BUSY: "busy",
    ERR_POWERED_OFF: "powered_off",
    ERR_UNSUPPORTED_PATTERN: "unsupported_pattern",
}

TEST_PATTERNS = {
    1: "white",
    2: "red",
    3: "green",
    4: "blue",
    5: "black",
    6: "grid",
    7: "gradient",
}
TEST_PATTERN_IDS = {name: pid for pid, name in TEST_PATTERNS.items()}

# A board that knows its output is black reports this hash (and the blank flag).
BLANK_SCREEN_HASH = "0000000000000000"

_FLAG_POWER = 0x01
_FLAG_BLANK = 0x02
_STATUS_FIXED = 21  # status payload bytes before content_id


def _int(where: str, value: "Any", lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFrame("%s must be an int, got %s" % (where, type(value).__name__))
    if not lo <= value <= hi:
        raise InvalidFrame("%s must be in %d..%d, got %d" % (where, lo, hi, value))
    return value


def _bool(where: str, value: "Any") -> bool:
    if not isinstance(value, bool):
        raise InvalidFrame("%s must be a bool, got %s" % (where, type(value).__name__))
    return value


def _u16(data: "bytes | bytearray", i: int) -> int:
    return (data[i] << 8) | data[i + 1]


def _u32(data: "bytes | bytearray", i: int) -> int:
    return (data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3]


def encode_frame(seq: int, command: int, payload: "bytes | bytearray" = b"") -> bytes:
    """Wrap ``payload`` in a frame: STX, length, SEQ, CMD, payload, CRC16, ETX."""
    _int("seq", seq, 0, 255)
    _int("command", command, 0, 255)
    _int("payload length", len(payload), 0, MAX_PAYLOAD)
    body = bytes((len(payload) >> 8, len(payload) & 0xFF, seq, command)) + bytes(payload)
    crc = crc16(body)
    return bytes((STX,)) + body + bytes((crc & 0xFF, crc >> 8, ETX))


def split_frame(frame: "bytes | bytearray") -> "tuple[int, int, bytes]":
    """Check one complete frame and return ``(seq, command, payload)``.

    Raises:
        InvalidFrame: wrong type, length, STX/ETX or CRC.
    """
    if not isinstance(frame, (bytes, bytearray)):
        raise InvalidFrame("frame must be bytes, got %s" % type(frame).__name__)
    if len(frame) < FRAME_OVERHEAD:
        raise InvalidFrame("frame too short: %d bytes, need at least %d" % (len(frame), 8))
    if frame[0] != STX:
        raise InvalidFrame("frame must start with STX 0x02, got 0x%02X" % frame[0])
    length = _u16(frame, 1)
    if length > MAX_PAYLOAD:
        raise InvalidFrame("payload length %d exceeds the limit of %d" % (length, MAX_PAYLOAD))
    need = length + FRAME_OVERHEAD
    if len(frame) != need:
        raise InvalidFrame("frame length %d does not match its length field (%d)" % (len(frame), need))
    if frame[-1] != ETX:
        raise InvalidFrame("frame must end with ETX 0x03, got 0x%02X" % frame[-1])
    got = frame[-3] | (frame[-2] << 8)
    computed = crc16(frame[1:-3])
    if got != computed:
        raise InvalidFrame("CRC mismatch: got 0x%04X, computed 0x%04X" % (got, computed))
    return frame[3], frame[4], bytes(frame[5:-3])


def _expect_length(name: str, payload: bytes, length: int) -> None:
    if len(payload) != length:
        raise InvalidFrame("%s payload must be %d bytes, got %d" % (name, length, len(payload)))


def _decode_status(payload: bytes) -> "dict[str, Any]":
    if len(payload) < _STATUS_FIXED:
        raise InvalidFrame(
            "status payload too short: %d bytes, need at least %d" % (len(payload), _STATUS_FIXED)
        )
    id_len = payload[20]
    _expect_length("status", payload, _STATUS_FIXED + id_len)
    if id_len > MAX_CONTENT_ID_BYTES:
        raise InvalidFrame("status.content_id longer than %d bytes" % MAX_CONTENT_ID_BYTES)
    try:
        content_id = payload[_STATUS_FIXED:].decode("utf-8")
    except (UnicodeError, ValueError):
        raise InvalidFrame("status.content_id is not valid UTF-8") from None
    brightness = payload[1]
    if brightness > 100:
        raise InvalidFrame("status.brightness must be in 0..100, got %d" % brightness)
    total = _u16(payload, 2)
    failed = _u16(payload, 4)
    if failed > total:
        raise InvalidFrame("status.failed_modules %d exceeds modules_total %d" % (failed, total))
    temp = _u16(payload, 6)
    if temp >= 0x8000:
        temp -= 0x10000
    return {
        "power": bool(payload[0] & _FLAG_POWER),
        "blank": bool(payload[0] & _FLAG_BLANK),
        "brightness": brightness,
        "modules_total": total,
        "failed_modules": failed,
        "temperature_c": temp / 10,
        "last_source_sync": _u32(payload, 8),
        "screen_hash": "".join("%02x" % b for b in payload[12:20]),
        "content_id": content_id,
    }


def _decode_payload(command: int, payload: bytes) -> "dict[str, Any]":
    name = COMMAND_NAMES[command]
    if command == STATUS_REQUEST:
        _expect_length(name, payload, 0)
        return {}
    if command in (SET_BRIGHTNESS, SET_POWER):
        _expect_length(name, payload, 1)
        if command == SET_POWER:
            if payload[0] > 1:
                raise InvalidFrame("set_power.on must be 0 or 1, got %d" % payload[0])
            return {"on": payload[0] == 1}
        if payload[0] > 100:
            raise InvalidFrame("set_brightness.brightness must be in 0..100, got %d" % payload[0])
        return {"brightness": payload[0]}
    if command == SHOW_TEST_PATTERN:
        _expect_length(name, payload, 3)
        if payload[0] not in TEST_PATTERNS:
            raise InvalidFrame("show_test_pattern: unknown pattern id %d" % payload[0])
        seconds = _u16(payload, 1)
        _int("show_test_pattern.seconds", seconds, 1, MAX_TEST_PATTERN_SECONDS)
        return {"pattern": TEST_PATTERNS[payload[0]], "seconds": seconds}
    if command == STATUS:
        return _decode_status(payload)
    if command == ACK:
        _expect_length(name, payload, 1)
        return {"for_command": payload[0]}
    _expect_length(name, payload, 2)
    if payload[1] == 0:
        raise InvalidFrame("nak.error must not be 0")
    return {"for_command": payload[0], "error": payload[1]}


def decode_frame(frame: "bytes | bytearray") -> "dict[str, Any]":
    """Decode one complete frame into a message dict.

    Returns:
        ``{"command": name, "seq": n, ...fields}``; see :func:`encode_message`.

    Raises:
        InvalidFrame: framing, CRC, unknown command or a payload that breaks its layout.
    """
    seq, command, payload = split_frame(frame)
    if command not in COMMAND_NAMES:
        raise InvalidFrame("unknown command 0x%02X" % command)
    message = _decode_payload(command, payload)
    message["command"] = COMMAND_NAMES[command]
    message["seq"] = seq
    return message


def _field(message: "dict[str, Any]", name: str) -> "Any":
    if name not in message:
        raise InvalidFrame("%s.%s is missing" % (message.get("command"), name))
    return message[name]


def _encode_hash(value: "Any") -> bytes:
    if not isinstance(value, str) or len(value) != 16 or [c for c in value if c not in "0123456789abcdef"]:
        raise InvalidFrame("status.screen_hash must be 16 lowercase hex digits, got %r" % (value,))
    return bytes([int(value[i : i + 2], 16) for i in range(0, 16, 2)])


def _encode_status(m: "dict[str, Any]") -> bytes:
    content = _field(m, "content_id")
    if not isinstance(content, str):
        raise InvalidFrame("status.content_id must be a str, got %s" % type(content).__name__)
    content_bytes = content.encode("utf-8")
    if len(content_bytes) > MAX_CONTENT_ID_BYTES:
        raise InvalidFrame("status.content_id longer than %d bytes" % MAX_CONTENT_ID_BYTES)
    total = _int("status.modules_total", _field(m, "modules_total"), 0, 0xFFFF)
    failed = _int("status.failed_modules", _field(m, "failed_modules"), 0, total)
    temperature = _field(m, "temperature_c")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise InvalidFrame("status.temperature_c must be a number")
    if not -3276.8 <= temperature <= 3276.7:  # also rejects NaN
        raise InvalidFrame("status.temperature_c must be in -3276.8..3276.7, got %r" % temperature)
    temp = round(temperature * 10)
    sync = _int("status.last_source_sync", _field(m, "last_source_sync"), 0, 0xFFFFFFFF)
    flags = _FLAG_POWER if _bool("status.power", _field(m, "power")) else 0
    if _bool("status.blank", _field(m, "blank")):
        flags |= _FLAG_BLANK
    temp &= 0xFFFF
    fixed = bytes(
        (
            flags,
            _int("status.brightness", _field(m, "brightness"), 0, 100),
            total >> 8,
            total & 0xFF,
            failed >> 8,
            failed & 0xFF,
            temp >> 8,
            temp & 0xFF,
            sync >> 24,
            (sync >> 16) & 0xFF,
            (sync >> 8) & 0xFF,
            sync & 0xFF,
        )
    )
    return fixed + _encode_hash(_field(m, "screen_hash")) + bytes((len(content_bytes),)) + content_bytes


def _encode_payload(command: int, m: "dict[str, Any]") -> bytes:
    if command == STATUS_REQUEST:
        return b""
    if command == SET_BRIGHTNESS:
        return bytes((_int("set_brightness.brightness", _field(m, "brightness"), 0, 100),))
    if command == SET_POWER:
        return bytes((1 if _bool("set_power.on", _field(m, "on")) else 0,))
    if command == SHOW_TEST_PATTERN:
        pattern = _field(m, "pattern")
        if pattern not in TEST_PATTERN_IDS:
            raise InvalidFrame("show_test_pattern: unknown pattern %r" % (pattern,))
        seconds = _int("show_test_pattern.seconds", _field(m, "seconds"), 1, MAX_TEST_PATTERN_SECONDS)
        return bytes((TEST_PATTERN_IDS[pattern], seconds >> 8, seconds & 0xFF))
    if command == STATUS:
        return _encode_status(m)
    for_command = _int("%s.for_command" % m["command"], _field(m, "for_command"), 0, 255)
    if command == ACK:
        return bytes((for_command,))
    return bytes((for_command, _int("nak.error", _field(m, "error"), 1, 255)))


def encode_message(message: "dict[str, Any]") -> bytes:
    """Encode a message dict into one frame.

    Fields per ``command``: ``status_request`` none; ``set_brightness`` ``brightness``
    (0..100); ``show_test_pattern`` ``pattern`` (a name in :data:`TEST_PATTERN_IDS`) and
    ``seconds`` (1..3600); ``set_power`` ``on``; ``ack`` ``for_command``; ``nak``
    ``for_command`` and ``error`` (see :data:`ERROR_NAMES`); ``status`` ``power``,
    ``blank``, ``brightness``, ``modules_total``, ``failed_modules``, ``temperature_c``,
    ``last_source_sync`` (unix s, 0 = never), ``screen_hash`` (16 hex digits),
    ``content_id`` (<= 64 UTF-8 bytes).

    Raises:
        InvalidFrame: a missing or out-of-range field, or an unknown command.
    """
    if not isinstance(message, dict):
        raise InvalidFrame("message must be a dict, got %s" % type(message).__name__)
    name = message.get("command")
    if name not in COMMAND_CODES:
        raise InvalidFrame("unknown command %r" % (name,))
    command = COMMAND_CODES[name]
    return encode_frame(_field(message, "seq"), command, _encode_payload(command, message))


def status_request(seq: int) -> bytes:
    """Frame asking the board for its status."""
    return encode_message({"command": "status_request", "seq": seq})


def set_brightness(seq: int, brightness: int) -> bytes:
    """Frame setting the screen brightness, 0..100 %."""
    return encode_message({"command": "set_brightness", "seq": seq, "brightness": brightness})


def show_test_pattern(seq: int, pattern: str, seconds: int) -> bytes:
    """Frame asking the board to show ``pattern`` for ``seconds``."""
    return encode_message(
        {"command": "show_test_pattern", "seq": seq, "pattern": pattern, "seconds": seconds}
    )


def set_power(seq: int, on: bool) -> bytes:
    """Frame switching the screen on or off."""
    return encode_message({"command": "set_power", "seq": seq, "on": on})


def ack(seq: int, for_command: int) -> bytes:
    """ACK frame for the request ``for_command`` with sequence ``seq``."""
    return encode_message({"command": "ack", "seq": seq, "for_command": for_command})


def nak(seq: int, for_command: int, error: int) -> bytes:
    """NAK frame refusing ``for_command`` with an ``ERR_*`` code."""
    return encode_message({"command": "nak", "seq": seq, "for_command": for_command, "error": error})


def _candidate_length(buffer: "bytes | bytearray", i: int) -> int:
    """Frame length starting at ``i``: 0 = no frame can start here, -1 = need more bytes."""
    if len(buffer) - i < 3:
        return -1
    length = _u16(buffer, i + 1)
    return 0 if length > MAX_PAYLOAD else length + FRAME_OVERHEAD


def find_frame(buffer: "bytes | bytearray") -> "tuple[bytes | None, int]":
    """Find the first complete, valid frame in bytes read so far, skipping noise.

    Args:
        buffer: bytes received so far.

    Returns:
        ``(frame, consumed)``: the frame or ``None``, and how many leading bytes the
        caller can drop. Bytes that may still become a frame are kept (not consumed).
    """
    if not isinstance(buffer, (bytes, bytearray)):
        raise InvalidFrame("buffer must be bytes, got %s" % type(buffer).__name__)
    keep_from = len(buffer)
    i = buffer.find(bytes((STX,)))
    while i >= 0:
        length = _candidate_length(buffer, i)
        if length < 0 or (length and i + length > len(buffer)):
            keep_from = min(keep_from, i)
        elif length:
            candidate = buffer[i : i + length]
            if candidate[-1] == ETX and crc16(candidate[1:-3]) == candidate[-3] | (candidate[-2] << 8):
                return bytes(candidate), i + length
        i = buffer.find(bytes((STX,)), i + 1)
    return None, keep_from


class FrameReader:
    """Accumulates bytes from a serial port and yields valid frames.

    Attributes:
        discarded: bytes thrown away as noise so far (a health counter for the probe).
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.discarded = 0

    def feed(self, data: "bytes | bytearray") -> "list[bytes]":
        """Add received bytes; return every complete frame now available, in order."""
        self._buffer += bytes(data)
        frames = []
        while True:
            frame, consumed = find_frame(self._buffer)
            self.discarded += consumed - (len(frame) if frame is not None else 0)
            self._buffer = self._buffer[consumed:]
            if frame is None:
                break
            frames.append(frame)
        # What stays buffered is shorter than one maximal frame: find_frame keeps only
        # candidates whose announced length runs past the end of the buffer.
        return frames

    def pending(self) -> int:
        """Number of buffered bytes that may still become a frame."""
        return len(self._buffer)
