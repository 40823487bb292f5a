"""The one family of exceptions raised for bad input on any tincoso wire.

Portable: runs unchanged on CPython and MicroPython.
"""


class ProtocolError(ValueError):
    """Base class: input that does not follow a tincoso wire contract."""


class InvalidPayload(ProtocolError):
    """An MQTT payload that is not a valid tincoso v1 message.

    The message names the field and the problem, e.g.
    ``audio.rms_dbfs must be a number, got str``.
    """


class InvalidFrame(ProtocolError):
    """A serial frame (Modbus-RTU, display controller, AT modem) that cannot be decoded."""


class InvalidTopic(ProtocolError):
    """An MQTT topic outside the tincoso v1 layout."""
