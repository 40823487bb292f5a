"""Power meter probe: a PZEM-004T on the amplifier's mains supply, over Modbus-RTU.

The amplifier's draw tells whether the audio really reaches the speakers: a receiver
playing a bulletin into an amplifier that draws only its idle power means a blown fuse,
a tripped breaker on the horn line or an amplifier in protection. The probe reads
voltage, current, power and energy, and raises the ``amp_idle`` fault when the runtime
reports audio (``note_audio``) while the power stays at or below ``idle_power_w`` for
``amp_idle_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.probes._config import ProbeConfig
from agent.probes._serial import LinkError, SerialLink
from agent.probes.base import Probe
from protocols import modbus
from protocols.errors import InvalidFrame


class PowerMeterProbe(Probe):
    """Reads a PZEM-004T and watches for an amplifier idling while audio plays.

    Config keys: ``url`` (required), ``address`` (0xF8 = whichever meter is on the line),
    ``baudrate`` (9600), ``timeout_s`` (0.5), ``idle_power_w`` (15), ``amp_idle_s`` (10).
    """

    name = "power_meter"

    def __init__(self, name: str, section: Mapping[str, Any]) -> None:
        super().__init__(name)
        config = ProbeConfig(name, section)
        self.url = config.required_string("url")
        self.address = config.integer("address", modbus.PZEM_GENERAL_ADDRESS, 1, modbus.PZEM_GENERAL_ADDRESS)
        self.idle_power_w = config.number("idle_power_w", 15.0, 0)
        self.amp_idle_s = config.number("amp_idle_s", 10.0, 0)
        self.link = SerialLink(
            self.url, config.integer("baudrate", 9600, 300), config.number("timeout_s", 0.5, 0.05, 10)
        )
        self.last_power_w: float | None = None
        self.amp_idle = False
        self._idle_since: float | None = None

    async def read(self) -> dict[str, Any]:
        """Voltage, current, power and energy as the audio message's ``amp_*`` fields.

        Raises:
            ProbeError: no answer, garbage or a CRC error, or a Modbus exception.
        """
        request = modbus.build_read_request(self.address)
        try:
            frame = await self.link.exchange(request, modbus.find_response)
            reading = modbus.parse_pzem_response(frame, self.address)
        except modbus.DeviceException as exc:
            raise self._fail(f"power meter at {self.url} answered an exception: {exc}") from None
        except (LinkError, InvalidFrame) as exc:
            raise self._fail(f"power meter at {self.url}: {exc}") from None
        self.last_power_w = reading["power_w"]
        return {
            "amp_voltage_v": reading["voltage_v"],
            "amp_current_a": reading["current_a"],
            "amp_power_w": reading["power_w"],
            "amp_energy_wh": reading["energy_wh"],
        }

    def note_audio(self, playing: bool, now_s: float) -> None:
        """Tell the probe whether audio plays now; drives the ``amp_idle`` fault.

        Args:
            playing: the audio probe hears programme audio.
            now_s: monotonic seconds.
        """
        power = self.last_power_w
        idle = playing and power is not None and power <= self.idle_power_w
        if not idle:
            self._idle_since = None
            if self.amp_idle:
                self.amp_idle = False
                why = "audio stopped" if not playing else "amplifier draws %.1f W" % (power or 0.0)
                self._emit("fault_end", "amp_idle", detail=why)
            return
        if self._idle_since is None:
            self._idle_since = now_s
        if not self.amp_idle and now_s - self._idle_since >= self.amp_idle_s:
            self.amp_idle = True
            self._emit(
                "fault_start",
                "amp_idle",
                detail=f"audio present but amplifier draws {power or 0.0:.1f} W"
                f" (idle <= {self.idle_power_w:.1f} W) for {now_s - self._idle_since:.0f} s",
            )

    async def close(self) -> None:
        """Close the serial port."""
        await self.link.close()
