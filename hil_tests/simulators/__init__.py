"""Device simulators for the hardware-in-the-loop rig: the real wire protocols on a PTY or TCP.

One simulator per device kind, each a :class:`SimulatedDevice` with the same life cycle,
fault knobs (``unplugged``, ``garbage_rate``/``garbage_kind``, ``response_delay_s``) and
record of what it sent::

    with PowerMeterSimulator(transport="pty") as meter:
        port = serial.serial_for_url(meter.url, baudrate=9600, timeout=0.5)
        meter.set_audio_level(-12.0)
        ...
        assert meter.counts["reading"] == 3

``transport="tcp"`` serves the same device at ``socket://127.0.0.1:PORT`` instead.
"""

from __future__ import annotations

from hil_tests.simulators.display_board import DisplayBoardSimulator
from hil_tests.simulators.modem import ModemSimulator
from hil_tests.simulators.power_meter import PowerMeterSimulator
from hil_tests.simulators.transport import (
    PtyTransport,
    SentRecord,
    SimulatedDevice,
    TcpTransport,
    Transport,
)

__all__ = [
    "DisplayBoardSimulator",
    "ModemSimulator",
    "PowerMeterSimulator",
    "PtyTransport",
    "SentRecord",
    "SimulatedDevice",
    "TcpTransport",
    "Transport",
]
