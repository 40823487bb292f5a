"""PZEM-004T v3.0 simulator: the AC power meter on a speaker cluster's amplifier supply.

Speaks Modbus-RTU (protocols/modbus.py): answers "read input registers" (0x04) for
registers 0..9 and "reset energy" (0x42), at its own address or the general address 0xF8.
Requests to another address are ignored, as on a shared RS-485 bus; a request with a bad
CRC is dropped without an answer, as the Modbus spec requires.

The electrical model follows the amplifier:

* ``"off"``: 0 W, 0 A (the meter still answers: it is powered from the mains side);
* ``"idle"``: ``idle_w`` (about 8 W for a class-D PA amplifier with no signal);
* ``"playing"``: ``idle_w + full_scale_w * 10 ** (audio_dbfs / 20)``: draw follows the
  audio level, so a bulletin at -20 dBFS RMS draws idle + 10 % of full scale.

``set_load(watts)`` overrides the model with a fixed draw. ``mains_lost()`` cuts the grid:
every quantity reads 0 (0 V, 0 Hz) until ``mains_back()``; the meter keeps answering, as
a meter on the controller's UPS-backed 5 V would. Voltage is ``nominal_v`` plus
Gaussian noise (``noise=False`` for exact values), energy integrates power over the
simulator clock.

Fault knobs (besides ``unplugged``, ``garbage_rate``/``garbage_kind`` and
``response_delay_s`` of :class:`SimulatedDevice`): ``exception_code`` makes every read
answer with a Modbus exception response carrying that code. ``garbage_kind="corrupt"``
flips a bit in the CRC, so the agent sees exactly "CRC mismatch".
"""

from __future__ import annotations

from typing import Any

from hil_tests.simulators.transport import SimulatedDevice
from protocols import modbus

AMPLIFIER_STATES = ("off", "idle", "playing")


class PowerMeterSimulator(SimulatedDevice):
    """A PZEM-004T on the amplifier's mains supply.

    Args:
        address: the meter's own Modbus address (factory default 0x01).
        idle_w: amplifier draw with no audio.
        full_scale_w: extra draw at 0 dBFS.
        nominal_v: mains voltage.
        power_factor: reported power factor while the amplifier is on.
        noise: add realistic noise to voltage, frequency and power.
        **kwargs: transport, clock, wall_clock, seed (see :class:`SimulatedDevice`).
    """

    kind = "power_meter"

    def __init__(
        self,
        *,
        address: int = modbus.PZEM_DEFAULT_ADDRESS,
        idle_w: float = 8.0,
        full_scale_w: float = 120.0,
        nominal_v: float = 220.0,
        power_factor: float = 0.9,
        noise: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.address = address
        self.idle_w = idle_w
        self.full_scale_w = full_scale_w
        self.nominal_v = nominal_v
        self.power_factor_on = power_factor
        self.noise = noise
        self.amplifier = "idle"
        self.audio_dbfs = -120.0
        self.load_override_w: float | None = None
        self.exception_code: int | None = None
        self.alarm = False
        self.energy_wh = 0.0
        self.mains = True
        self.discarded_bytes = 0
        self._last_t = self.clock()

    def set_amplifier(self, state: str) -> None:
        """Switch the amplifier ``"off"``, ``"idle"`` or ``"playing"``."""
        if state not in AMPLIFIER_STATES:
            raise ValueError(f"amplifier state must be one of {AMPLIFIER_STATES}, got {state!r}")
        with self.lock:
            self._accumulate()
            self.amplifier = state

    def set_audio_level(self, dbfs: float) -> None:
        """Audio RMS level the amplifier is playing; also switches it to ``"playing"``."""
        with self.lock:
            self._accumulate()
            self.audio_dbfs = dbfs
            self.amplifier = "playing"

    def set_load(self, watts: float | None) -> None:
        """Force a fixed draw in W (``None`` returns to the amplifier model)."""
        with self.lock:
            self._accumulate()
            self.load_override_w = watts

    def mains_lost(self) -> None:
        """The grid goes: 0 V, no draw."""
        with self.lock:
            self._accumulate()
            self.mains = False

    def mains_back(self) -> None:
        """The grid is back at ``nominal_v``."""
        with self.lock:
            self._accumulate()
            self.mains = True

    def true_power_w(self) -> float:
        """Noise-free power the model draws right now."""
        if not self.mains:
            return 0.0
        if self.load_override_w is not None:
            return self.load_override_w
        if self.amplifier == "off":
            return 0.0
        if self.amplifier == "idle":
            return self.idle_w
        level = min(1.0, 10 ** (self.audio_dbfs / 20))
        return self.idle_w + self.full_scale_w * level

    def _accumulate(self) -> None:
        now = self.clock()
        self.energy_wh += self.true_power_w() * max(0.0, now - self._last_t) / 3600
        self._last_t = now

    def _jitter(self, sigma: float) -> float:
        return self.random.gauss(0.0, sigma) if self.noise else 0.0

    def reading(self) -> dict[str, Any]:
        """What the meter measures right now, rounded to its register resolution."""
        with self.lock:
            self._accumulate()
            power = max(0.0, self.true_power_w() * (1 + self._jitter(0.01)))
            voltage = self.nominal_v + self._jitter(0.5) if self.mains else 0.0
            pf = self.power_factor_on if power > 0 else 0.0
            current = power / (voltage * pf) if power > 0 else 0.0
            return {
                "voltage_v": round(voltage, 1),
                "current_a": round(current, 3),
                "power_w": round(power, 1),
                "energy_wh": int(self.energy_wh),
                "frequency_hz": round(50.0 + self._jitter(0.03), 1) if self.mains else 0.0,
                "power_factor": round(pf, 2),
                "alarm": self.alarm,
            }

    def _take_request(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        frame, consumed = modbus.find_request(buffer)
        self.discarded_bytes += consumed - (len(frame) if frame else 0)
        return frame, buffer[consumed:]

    def _respond(self, request: bytes) -> tuple[bytes, str, dict[str, Any]]:
        req = modbus.parse_request(request)
        if req["address"] not in (self.address, modbus.PZEM_GENERAL_ADDRESS):
            return b"", "other_address", {"request": req}
        if req["function"] == modbus.RESET_ENERGY:
            self.energy_wh = 0.0
            return modbus.build_reset_energy(self.address), "reset_energy", {}
        code = self.exception_code
        if req["function"] != modbus.READ_INPUT_REGISTERS:
            code = 1  # illegal function
        elif req["start"] + req["count"] > modbus.PZEM_REGISTER_COUNT:
            code = 2  # illegal data address
        if code is not None:
            reply = modbus.build_exception_response(self.address, req["function"] & 0x7F, code)
            return reply, "exception", {"code": code}
        reading = self.reading()
        registers = modbus.reading_to_registers(reading)
        registers = registers[req["start"] : req["start"] + req["count"]]
        return modbus.build_registers_response(self.address, registers), "reading", reading

    def _corrupt(self, reply: bytes) -> bytes:
        # Flip a bit of the CRC itself: the frame keeps its length, only the CRC fails.
        return reply[:-2] + bytes((reply[-2] ^ 0x01, reply[-1]))
