from mptest import raises, run, test

from protocols import at_modem, display_frame, modbus
from protocols.errors import InvalidFrame


@test
def modbus_request_vector():
    assert modbus.build_read_request(1) == b"\x01\x04\x00\x00\x00\x0a\x70\x0d"
    assert modbus.crc16(b"123456789") == 0x4B37


@test
def modbus_roundtrip_and_errors():
    r = {
        "voltage_v": 229.8,
        "current_a": 0.123,
        "power_w": 25.6,
        "energy_wh": 70000,
        "frequency_hz": 50.0,
        "power_factor": 0.91,
        "alarm": False,
    }
    f = modbus.build_pzem_response(1, r)
    assert modbus.parse_pzem_response(f) == r, modbus.parse_pzem_response(f)
    exc = raises(InvalidFrame, modbus.parse_pzem_response, f[:7])
    assert "need 25" in str(exc), str(exc)
    bad = f[:-1] + bytes((f[-1] ^ 1,))
    exc = raises(InvalidFrame, modbus.parse_pzem_response, bad)
    assert "CRC mismatch" in str(exc), str(exc)
    e = modbus.build_exception_response(1, 4, 2)
    exc = raises(modbus.DeviceException, modbus.parse_pzem_response, e)
    assert exc.code == 2
    frame, consumed = modbus.find_response(b"\xff\x00" + f + b"\x01")
    assert frame == f and consumed == 27
    raises(InvalidFrame, modbus.reading_to_registers, dict(r, voltage_v=float("nan")))


@test
def display_roundtrip():
    s = {
        "command": "status",
        "seq": 7,
        "power": True,
        "blank": False,
        "brightness": 80,
        "modules_total": 48,
        "failed_modules": 2,
        "temperature_c": -12.5,
        "last_source_sync": 1764126000,
        "screen_hash": "00ff10a0b0c0d0e0",
        "content_id": "BẢN TIN 17:00",
    }
    f = display_frame.encode_message(s)
    assert display_frame.decode_frame(f) == s, display_frame.decode_frame(f)
    for m in (
        {"command": "show_test_pattern", "seq": 1, "pattern": "grid", "seconds": 10},
        {"command": "set_power", "seq": 2, "on": False},
        {"command": "nak", "seq": 3, "for_command": 3, "error": 4},
    ):
        assert display_frame.decode_frame(display_frame.encode_message(m)) == m
    reader = display_frame.FrameReader()
    frames = reader.feed(b"\x02\x00\xff\x99" + f + b"\x02\x00")
    assert frames == [f] and reader.discarded == 4, (frames, reader.discarded)
    bad = bytearray(f)
    bad[-(len(s["content_id"]) + 3)] = 0xC3
    raises(InvalidFrame, display_frame.decode_frame, bytes(bad))
    raises(InvalidFrame, display_frame.encode_message, dict(s, screen_hash="+1ff10a0b0c0d0e0"))
    body = bytearray(display_frame.encode_frame(1, 0x81, b"\x00" * 20 + b"\x02\xff\xfe"))
    raises(InvalidFrame, display_frame.decode_frame, bytes(body))


@test
def at_modem_parse():
    r = at_modem.parse_cops(b'AT+COPS?\r\r\n+COPS: 0,0,"Viettel",7\r\n\r\nOK\r\n')
    assert r["operator"] == "Viettel" and r["technology"] == "4g"
    assert at_modem.parse_csq(b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n")["signal_dbm"] is None
    exc = raises(at_modem.ModemError, at_modem.parse_csq, b"\r\n+CME ERROR: 10\r\n")
    assert exc.code == 10
    raises(InvalidFrame, at_modem.parse_csq, b"\r\n+CSQ: \xff1,99\r\n\r\nOK\r\n")
    assert at_modem.find_response(b"\r\n+CSQ: 1,99\r\n\r\nOK\r\nX")[1] == 20


run()
