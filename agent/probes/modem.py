"""Modem probe: 4G signal strength and operator from the modem's AT port.

``AT+CSQ`` gives the signal (dBm = -113 + 2 * rssi; rssi 99 = no signal), ``AT+COPS?``
the network name and access technology. A board that loses 4G stops reporting, so these
are the values the technician sees in the last heartbeat before it went quiet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.probes._config import ProbeConfig
from agent.probes._serial import LinkError, SerialLink
from agent.probes.base import Probe
from protocols import at_modem
from protocols.errors import InvalidFrame

# Access technologies the heartbeat's net_type can name; anything else is "unknown".
_NET_TYPES = ("2g", "3g", "4g", "5g")


def _find_response(buffer: bytes) -> tuple[bytes | None, int]:
    return at_modem.find_response(buffer)


class ModemProbe(Probe):
    """Reads ``signal_dbm``, ``operator`` and ``net_type`` for the heartbeat.

    Config keys: ``url`` (required), ``baudrate`` (115200), ``timeout_s`` (1.0).
    """

    name = "modem"

    def __init__(self, name: str, section: Mapping[str, Any]) -> None:
        super().__init__(name)
        config = ProbeConfig(name, section)
        self.url = config.required_string("url")
        self.link = SerialLink(
            self.url, config.integer("baudrate", 115200, 300), config.number("timeout_s", 1.0, 0.05, 30)
        )

    async def _ask(self, command: str) -> bytes:
        return await self.link.exchange(at_modem.encode_command(command), _find_response)

    async def read(self) -> dict[str, Any]:
        """``signal_dbm`` (None without signal), ``operator`` (None unregistered), ``net_type``.

        Raises:
            ProbeError: no answer, garbage, or the modem answered ERROR.
        """
        command = at_modem.CSQ
        try:
            csq = at_modem.parse_csq(await self._ask(command))
            command = at_modem.COPS_QUERY
            cops = at_modem.parse_cops(await self._ask(command))
        except at_modem.ModemError as exc:
            raise self._fail(f"modem at {self.url}: {exc}") from None
        except (LinkError, InvalidFrame) as exc:
            raise self._fail(f"modem at {self.url}, {command}: {exc}") from None
        technology = cops["technology"]
        return {
            "signal_dbm": csq["signal_dbm"],
            "operator": cops["operator"],
            "net_type": technology if technology in _NET_TYPES else "unknown",
        }

    async def identity(self) -> dict[str, Any]:
        """``imei`` (AT+CGSN) and ``iccid`` (AT+CCID) for the acceptance report.

        Raises:
            ProbeError: no answer, garbage, or the modem answered ERROR (no SIM: CME 10).
        """
        command = at_modem.CGSN
        try:
            imei = at_modem.parse_imei(await self._ask(command))
            command = at_modem.CCID
            iccid = at_modem.parse_iccid(await self._ask(command))
        except (LinkError, InvalidFrame) as exc:
            raise self._fail(f"modem at {self.url}, {command}: {exc}") from None
        return {"imei": imei, "iccid": iccid}

    async def close(self) -> None:
        """Close the serial port."""
        await self.link.close()
