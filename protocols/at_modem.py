"""AT commands of a 4G modem (3GPP TS 27.007) for signal, operator and registration.

A command is ASCII ending in CR (``AT+CSQ\\r``). The modem answers with CR LF framed
lines: an optional echo of the command (ATE1, the factory default), information lines
such as ``+CSQ: 21,99``, then one final result code: ``OK``, ``ERROR``,
``+CME ERROR: <n>`` or ``+CMS ERROR: <n>``::

    \\r\\n+COPS: 0,0,"Viettel",7\\r\\n\\r\\nOK\\r\\n

:func:`find_response` cuts one response out of a byte stream; the ``parse_*`` functions
turn it into a dict. A final ERROR raises :class:`ModemError` (a subclass of
:class:`protocols.errors.InvalidFrame`, with the CME code); bytes that are not printable
ASCII, a missing final result code or an unexpected line raise ``InvalidFrame``. Lines
starting with ``+`` or ``^`` that belong to another command are taken as unsolicited
result codes and ignored.

Portable: runs unchanged on CPython and MicroPython.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

from protocols.errors import InvalidFrame

CSQ = "AT+CSQ"
COPS_QUERY = "AT+COPS?"
CREG_QUERY = "AT+CREG?"
# Hardware identity for acceptance reports: the modem's IMEI (27.007 +CGSN) and the SIM's
# ICCID (not in 27.007: AT+CCID on most modules, Quectel also AT+QCCID, SIMCom AT+CICCID).
CGSN = "AT+CGSN"
CCID = "AT+CCID"
_ICCID_PREFIXES = ("+CCID:", "+QCCID:", "+ICCID:", "+CICCID:")
MAX_RESPONSE_BYTES = 1024

# 27.007 access technology (<AcT>) -> generation, named as in the heartbeat's net_type.
ACCESS_TECHNOLOGIES = {
    0: "2g",  # GSM
    1: "2g",  # GSM Compact
    2: "3g",  # UTRAN
    3: "2g",  # GSM w/EGPRS
    4: "3g",  # UTRAN w/HSDPA
    5: "3g",  # UTRAN w/HSUPA
    6: "3g",  # UTRAN w/HSDPA and HSUPA
    7: "4g",  # E-UTRAN (LTE)
    8: "2g",  # EC-GSM-IoT
    9: "4g",  # E-UTRAN NB-S1 (NB-IoT)
    10: "4g",  # E-UTRA connected to a 5G core
    11: "5g",  # NR connected to a 5G core
    12: "5g",  # NG-RAN
    13: "5g",  # E-UTRA-NR dual connectivity
}

REGISTRATION_STATES = {
    0: "not_registered",
    1: "home",
    2: "searching",
    3: "denied",
    4: "unknown",
    5: "roaming",
}

_FINAL_OK = "OK"
_FINAL_ERRORS = ("ERROR", "+CME ERROR:", "+CMS ERROR:")


class ModemError(InvalidFrame):
    """The modem answered ERROR, ``+CME ERROR: <n>`` or ``+CMS ERROR: <n>``.

    Attributes:
        code: the CME/CMS error number, or ``None`` for a plain ERROR (or a text error).
    """

    def __init__(self, message: str, code: "int | None") -> None:
        super().__init__(message)
        self.code = code


def encode_command(command: str) -> bytes:
    """Encode an AT command line for the wire (ASCII, terminated by CR).

    Raises:
        InvalidFrame: the command is not ASCII, does not start with AT or contains CR/LF.
    """
    if not isinstance(command, str) or not command[:2].upper() == "AT":
        raise InvalidFrame("AT command must be a str starting with AT, got %r" % (command,))
    for ch in command:
        if not 0x20 <= ord(ch) < 0x7F:
            raise InvalidFrame("AT command must be printable ASCII, got %r" % command)
    return command.encode() + b"\r"


def _is_final(line: str) -> bool:
    if line == _FINAL_OK:
        return True
    return any(line == e or (e.endswith(":") and line.startswith(e)) for e in _FINAL_ERRORS)


def _lines(data: "bytes | bytearray") -> "list[str]":
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidFrame("response must be bytes, got %s" % type(data).__name__)
    for i, byte in enumerate(data):
        if not (0x20 <= byte < 0x7F or byte in (0x0D, 0x0A)):
            raise InvalidFrame("non-ASCII byte 0x%02X at offset %d of the response" % (byte, i))
    text = bytes(data).decode().replace("\r", "\n")
    return [line.strip() for line in text.split("\n") if line.strip()]


def find_response(buffer: "bytes | bytearray") -> "tuple[bytes | None, int]":
    """Find the end of one complete response (up to its final result code line).

    Args:
        buffer: bytes received since the command was sent.

    Returns:
        ``(response, consumed)``: the response bytes through the final result code's
        CR LF, or ``None`` while it is incomplete; ``consumed`` is how many bytes to drop.

    Raises:
        InvalidFrame: more than :data:`MAX_RESPONSE_BYTES` without a final result code.
    """
    if not isinstance(buffer, (bytes, bytearray)):
        raise InvalidFrame("buffer must be bytes, got %s" % type(buffer).__name__)
    start = 0
    while True:
        end = buffer.find(b"\n", start)
        if end < 0:
            break
        line = bytes(buffer[start:end]).strip(b"\r\n ")
        if line:
            try:
                text = line.decode()
            except (UnicodeError, ValueError):
                text = ""
            if _is_final(text):
                return bytes(buffer[: end + 1]), end + 1
        start = end + 1
    if len(buffer) > MAX_RESPONSE_BYTES:
        raise InvalidFrame("no final result code in %d bytes (limit %d)" % (len(buffer), MAX_RESPONSE_BYTES))
    return None, 0


def _error_code(final: str) -> "int | None":
    value = final.split(":", 1)[1].strip()
    if value.isdigit():
        return int(value)
    return None


def parse_response(data: "bytes | bytearray", command: str) -> "list[str]":
    """Check a complete response to ``command`` and return its information lines.

    The echo of ``command`` and unsolicited ``+``/``^`` lines of other commands are dropped.

    Args:
        data: the raw response (see :func:`find_response`).
        command: the command that was sent, e.g. ``"AT+CSQ"``.

    Returns:
        The information lines for ``command`` (prefix included), in order.

    Raises:
        ModemError: the final result code is an error.
        InvalidFrame: garbage, no final result code, or an unexpected line.
    """
    lines = _lines(data)
    if not lines or not _is_final(lines[-1]):
        raise InvalidFrame("response to %s has no final result code (OK/ERROR)" % command)
    final = lines[-1]
    if final != _FINAL_OK:
        code = _error_code(final) if ":" in final else None
        raise ModemError("modem answered %r to %s" % (final, command), code)
    prefix = _info_prefix(command)
    info = []
    for line in lines[:-1]:
        if line.upper() == command.upper():
            continue  # echo (ATE1)
        if prefix and line.startswith(prefix):
            info.append(line)
        elif line[0] in "+^" or _is_final(line):
            continue  # unsolicited result code, or the tail of an earlier response
        else:
            raise InvalidFrame("unexpected line %r in the response to %s" % (line, command))
    return info


def _info_prefix(command: str) -> str:
    # "AT+CSQ" -> "+CSQ:", "AT+COPS?" -> "+COPS:"
    name = command[2:].split("?")[0].split("=")[0]
    return name + ":" if name.startswith("+") else ""


def _one_line(data: "bytes | bytearray", command: str) -> "list[str]":
    info = parse_response(data, command)
    if len(info) != 1:
        raise InvalidFrame("%s: expected one %s line, got %d" % (command, _info_prefix(command), len(info)))
    return _fields(info[0].split(":", 1)[1], command)


def _fields(text: str, command: str) -> "list[str]":
    # Split on commas outside double quotes: the operator name is quoted.
    fields = []
    current = ""
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            current += ch
        elif ch == "," and not quoted:
            fields.append(current.strip())
            current = ""
        else:
            current += ch
    if quoted:
        raise InvalidFrame("%s: unterminated quote in %r" % (command, text))
    fields.append(current.strip())
    return fields


def _number(field: str, what: str, lo: int, hi: int) -> int:
    if not field.isdigit():
        raise InvalidFrame("%s must be a number, got %r" % (what, field))
    value = int(field)
    if not lo <= value <= hi:
        raise InvalidFrame("%s must be in %d..%d, got %d" % (what, lo, hi, value))
    return value


def rssi_to_dbm(rssi: int) -> "int | None":
    """Convert a +CSQ rssi (0..31, 99 = unknown) to dBm: -113 + 2 * rssi."""
    if rssi == 99:
        return None
    return -113 + 2 * rssi


def parse_csq(data: "bytes | bytearray") -> "dict[str, Any]":
    """Parse the response to AT+CSQ.

    Returns:
        ``rssi`` (0..31 or 99), ``ber`` (0..7, ``None`` when 99 = unknown) and
        ``signal_dbm`` (-113..-51, ``None`` when the modem has no signal).
    """
    fields = _one_line(data, CSQ)
    if len(fields) != 2:
        raise InvalidFrame("+CSQ: expected 2 fields, got %d" % len(fields))
    rssi = _number(fields[0], "+CSQ rssi", 0, 99)
    if 31 < rssi < 99:
        raise InvalidFrame("+CSQ rssi must be 0..31 or 99, got %d" % rssi)
    ber = _number(fields[1], "+CSQ ber", 0, 99)
    if 7 < ber < 99:
        raise InvalidFrame("+CSQ ber must be 0..7 or 99, got %d" % ber)
    return {"rssi": rssi, "ber": None if ber == 99 else ber, "signal_dbm": rssi_to_dbm(rssi)}


def parse_cops(data: "bytes | bytearray") -> "dict[str, Any]":
    """Parse the response to AT+COPS? (``+COPS: <mode>[,<format>,<oper>[,<AcT>]]``).

    Returns:
        ``mode``, ``operator`` (``None`` when not registered), ``act`` (27.007 number or
        ``None``) and ``technology`` (``"4g"``, ``"3g"``, ``"2g"``, ``"5g"`` or ``None``).
    """
    fields = _one_line(data, COPS_QUERY)
    if len(fields) not in (1, 3, 4):
        raise InvalidFrame("+COPS: expected 1, 3 or 4 fields, got %d" % len(fields))
    result = {
        "mode": _number(fields[0], "+COPS mode", 0, 4),
        "operator": None,
        "act": None,
        "technology": None,
    }  # type: dict[str, Any]
    if len(fields) == 1:
        return result
    _number(fields[1], "+COPS format", 0, 2)
    name = fields[2]
    if len(name) < 2 or name[0] != '"' or name[-1] != '"':
        raise InvalidFrame("+COPS operator must be quoted, got %r" % name)
    result["operator"] = name[1:-1]
    if len(fields) == 4:
        act = _number(fields[3], "+COPS AcT", 0, 13)
        result["act"] = act
        result["technology"] = ACCESS_TECHNOLOGIES[act]
    return result


def parse_creg(data: "bytes | bytearray") -> "dict[str, Any]":
    """Parse the response to AT+CREG? (``+CREG: <n>,<stat>[,<lac>,<ci>[,<AcT>]]``).

    Returns:
        ``stat`` (27.007 number), ``status`` (a name from :data:`REGISTRATION_STATES`),
        ``registered`` (home or roaming) and ``roaming``.
    """
    fields = _one_line(data, CREG_QUERY)
    if len(fields) < 2 or len(fields) > 5:
        raise InvalidFrame("+CREG: expected 2 to 5 fields, got %d" % len(fields))
    _number(fields[0], "+CREG n", 0, 3)
    stat = _number(fields[1], "+CREG stat", 0, 5)
    return {
        "stat": stat,
        "status": REGISTRATION_STATES[stat],
        "registered": stat in (1, 5),
        "roaming": stat == 5,
    }


def _identity_line(data: "bytes | bytearray", command: str, prefixes: "tuple[str, ...]") -> str:
    # These answers come bare ("867698041234567") or with a prefix ("+CGSN: ..."), by vendor.
    lines = _lines(data)
    if not lines or not _is_final(lines[-1]):
        raise InvalidFrame("response to %s has no final result code (OK/ERROR)" % command)
    final = lines[-1]
    if final != _FINAL_OK:
        raise ModemError(
            "modem answered %r to %s" % (final, command), _error_code(final) if ":" in final else None
        )
    values = []
    for line in lines[:-1]:
        if line.upper() == command.upper():
            continue  # echo
        prefix = next((p for p in prefixes if line.startswith(p)), None)
        if prefix is not None:
            values.append(line[len(prefix) :].strip().strip('"'))
        elif line[0] not in "+^":
            values.append(line)
    if len(values) != 1:
        raise InvalidFrame("%s: expected one identity line, got %d" % (command, len(values)))
    return values[0]


def parse_imei(data: "bytes | bytearray") -> str:
    """Parse the response to AT+CGSN: the modem's IMEI (15 digits, Luhn check digit).

    Raises:
        ModemError: the modem answered ERROR.
        InvalidFrame: no single line of 15 digits, or a wrong check digit.
    """
    imei = _identity_line(data, CGSN, ("+CGSN:",))
    if len(imei) != 15 or not imei.isdigit():
        raise InvalidFrame("+CGSN: IMEI must be 15 digits, got %r" % imei)
    if not luhn_ok(imei):
        raise InvalidFrame("+CGSN: IMEI %s fails its check digit" % imei)
    return imei


def parse_iccid(data: "bytes | bytearray") -> str:
    """Parse the response to AT+CCID (or +QCCID/+ICCID): the SIM's ICCID (18-20 digits, maybe an F).

    Raises:
        ModemError: the modem answered ERROR (e.g. +CME ERROR: 10, no SIM).
        InvalidFrame: no single ICCID line.
    """
    iccid = _identity_line(data, CCID, _ICCID_PREFIXES).upper().rstrip("F")
    if not 18 <= len(iccid) <= 20 or not iccid.isdigit():
        raise InvalidFrame("ICCID must be 18 to 20 digits, got %r" % iccid)
    return iccid


def luhn_ok(digits: str) -> bool:
    """Whether a digit string ends in a valid Luhn check digit (IMEI, ICCID)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0
