"""4G modem simulator speaking AT commands (protocols/at_modem.py).

Answers ``AT``, ``ATE0``/``ATE1``, ``ATI``, ``AT+CSQ``, ``AT+COPS?``, ``AT+CREG?``,
``AT+CGSN`` (IMEI, bare digits as Quectel and SIMCom send it) and ``AT+CCID`` (ICCID);
anything else gets ``ERROR``. Echo is on at power-up, as on real modules (Quectel EC25,
SIMCom A7670), so the agent must cope with it.

Signal: ``set_signal(rssi)``, ``fade_to(rssi, seconds)`` (linear over the simulator clock)
and ``lose_signal()`` (rssi 99: no operator, CREG "searching").

Fault knobs (besides ``unplugged``, ``garbage_rate``/``garbage_kind`` and
``response_delay_s`` of :class:`SimulatedDevice`): ``error_replies`` answers every
command with a bare ``ERROR``; ``cme_error`` (an int) answers ``+CME ERROR: <n>`` (10 =
SIM not inserted). ``garbage_kind="corrupt"`` puts a non-ASCII byte into the reply.
"""

from __future__ import annotations

from typing import Any

from hil_tests.simulators.transport import SimulatedDevice

NO_SIGNAL = 99


class ModemSimulator(SimulatedDevice):
    """A 4G modem on a USB serial port.

    Args:
        rssi: initial +CSQ rssi (0..31, 99 = no signal).
        operator: network name reported by AT+COPS?.
        act: 27.007 access technology (7 = LTE).
        **kwargs: transport, clock, wall_clock, seed (see :class:`SimulatedDevice`).
    """

    kind = "modem"

    def __init__(
        self,
        *,
        rssi: int = 20,
        operator: str = "Viettel",
        act: int = 7,
        imei: str = "867698041234561",
        iccid: str = "89840480000123456789",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.imei = imei
        self.iccid = iccid
        self.operator = operator
        self.act = act
        self.echo = True
        self.error_replies = False
        self.cme_error: int | None = None
        self._fade_from = float(rssi)
        self._fade_to = float(rssi)
        self._fade_start = self.clock()
        self._fade_s = 0.0
        self._lost = False

    def set_signal(self, rssi: int) -> None:
        """Set the signal at once (0..31)."""
        self._check_rssi(rssi)
        with self.lock:
            self._lost = False
            self._fade_from = self._fade_to = float(rssi)
            self._fade_s = 0.0

    def fade_to(self, rssi: int, seconds: float) -> None:
        """Move the signal linearly from its current value to ``rssi`` over ``seconds``."""
        self._check_rssi(rssi)
        with self.lock:
            current = self.rssi()
            self._lost = False
            self._fade_from = float(0 if current == NO_SIGNAL else current)
            self._fade_to = float(rssi)
            self._fade_start = self.clock()
            self._fade_s = max(0.0, seconds)

    def lose_signal(self) -> None:
        """The signal vanishes: rssi 99, no operator, registration "searching"."""
        with self.lock:
            self._lost = True

    def set_operator(self, operator: str, act: int) -> None:
        """Change the network name and access technology (e.g. fall back to 3G: act 2)."""
        with self.lock:
            self.operator = operator
            self.act = act

    @staticmethod
    def _check_rssi(rssi: int) -> None:
        if not 0 <= rssi <= 31:
            raise ValueError(f"rssi must be 0..31 (use lose_signal() for 99), got {rssi!r}")

    def rssi(self) -> int:
        """The +CSQ rssi the modem reports right now."""
        with self.lock:
            if self._lost:
                return NO_SIGNAL
            if self._fade_s <= 0:
                return round(self._fade_to)
            done = min(1.0, (self.clock() - self._fade_start) / self._fade_s)
            return round(self._fade_from + (self._fade_to - self._fade_from) * done)

    def _take_request(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        end = buffer.find(b"\r")
        if end < 0:
            return None, buffer[-256:]  # a command line is short; keep only a tail
        return buffer[:end], buffer[end + 1 :].lstrip(b"\n")

    def _respond(self, request: bytes) -> tuple[bytes, str, dict[str, Any]]:
        command = request.decode("ascii", "replace").strip()
        if not command:
            return b"", "blank_line", {}  # real modems ignore an empty line
        echo = request + b"\r" if self.echo else b""
        if self.cme_error is not None:
            return echo + b"\r\n+CME ERROR: %d\r\n" % self.cme_error, "cme_error", {}
        if self.error_replies:
            return echo + b"\r\nERROR\r\n", "error", {}
        info, detail = self._info(command.upper())
        if info is None:
            return echo + b"\r\nERROR\r\n", "error", {"unknown": command}
        body = b"".join(b"\r\n" + line.encode() + b"\r\n" for line in info)
        return echo + body + b"\r\nOK\r\n", "ok", detail

    def _info(self, command: str) -> tuple[list[str] | None, dict[str, Any]]:
        if command == "AT":
            return [], {}
        if command in ("ATE0", "ATE1"):
            self.echo = command == "ATE1"
            return [], {"echo": self.echo}
        if command == "ATI":
            return ["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"], {}
        if command == "AT+CGSN":
            return [self.imei], {"imei": self.imei}
        if command == "AT+CCID":
            return [f"+CCID: {self.iccid}"], {"iccid": self.iccid}
        rssi = self.rssi()
        if command == "AT+CSQ":
            return [f"+CSQ: {rssi},99"], {"rssi": rssi}
        if command == "AT+COPS?":
            if rssi == NO_SIGNAL:
                return ["+COPS: 0"], {"operator": None}
            return [f'+COPS: 0,0,"{self.operator}",{self.act}'], {
                "operator": self.operator,
                "act": self.act,
            }
        if command == "AT+CREG?":
            stat = 2 if rssi == NO_SIGNAL else 1
            return [f"+CREG: 0,{stat}"], {"stat": stat}
        return None, {}

    def _corrupt(self, reply: bytes) -> bytes:
        # A non-ASCII byte in the middle of the reply, as line noise on a UART would leave.
        middle = len(reply) // 2
        return reply[:middle] + b"\xff" + reply[middle + 1 :]
