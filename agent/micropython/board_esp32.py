"""The board layer on an ESP32: ``machine``, ``network`` and ``ntptime`` behind one interface.

Same methods as ``board_unix.UnixBoard``; the agent's logic never imports ``machine``.
``config["board"]``: ``wifi_ssid``, ``wifi_password``, ``uart_id`` (2), ``uart_tx`` (17),
``uart_rx`` (16) for the PZEM-004T, ``i2s_sck``/``i2s_ws``/``i2s_sd`` for an I2S ADC on the
receiver's line out (``audio_rate``, 16000), ``ntp_host``.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

import time

import machine
import network
import ntptime

# MicroPython ports with a 2000-01-01 epoch need this added to reach Unix time.
EPOCH_OFFSET_S = 946684800 if time.gmtime(0)[0] == 2000 else 0

RESET_CAUSES = {
    machine.PWRON_RESET: "power_loss",
    machine.HARD_RESET: "power_loss",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "clean",
    machine.SOFT_RESET: "clean",
}


class Esp32Board:
    """Board layer for an ESP32 with Wi-Fi, a PZEM-004T on a UART and an I2S line input."""

    platform = "micropython-esp32"
    net_type = "wifi"

    def __init__(self, cfg: "dict[str, Any]") -> None:
        board = cfg.get("board", {})
        self.flash_dir = board.get("flash_dir", "/")
        self.cfg = board
        self.audio_rate = int(board.get("audio_rate", 16000))
        self.wlan = network.WLAN(network.STA_IF)
        self.uart = machine.UART(
            int(board.get("uart_id", 2)),
            baudrate=9600,
            tx=int(board.get("uart_tx", 17)),
            rx=int(board.get("uart_rx", 16)),
        )
        self.i2s = None  # type: Any
        if "i2s_sd" in board:
            self.i2s = machine.I2S(
                0,
                sck=machine.Pin(int(board["i2s_sck"])),
                ws=machine.Pin(int(board["i2s_ws"])),
                sd=machine.Pin(int(board["i2s_sd"])),
                mode=machine.I2S.RX,
                bits=16,
                format=machine.I2S.MONO,
                rate=self.audio_rate,
                ibuf=8192,
            )

    def ticks_ms(self) -> "Any":
        """The raw tick counter (wraps every 2**30 ms)."""
        return time.ticks_ms()

    def ticks_diff(self, a: int, b: int) -> int:
        """``a - b`` across a wrap."""
        return time.ticks_diff(a, b)

    def sleep_ms(self, ms: int) -> None:
        """Sleep (light sleep is the firmware's business)."""
        time.sleep_ms(ms)

    def wall_ms(self) -> int:
        """Wall clock, ms since 1970 (the RTC, set by NTP)."""
        return (time.time() + EPOCH_OFFSET_S) * 1000

    def sync_clock(self) -> bool:
        """Set the RTC by NTP; False when the server did not answer."""
        ntptime.host = self.cfg.get("ntp_host", "pool.ntp.org")
        try:
            ntptime.settime()
            return True
        except (OSError, OverflowError, IndexError):
            return False

    def network_up(self) -> bool:
        """Bring Wi-Fi up if it is down; True once it has an address."""
        if not self.wlan.active():
            self.wlan.active(True)
        if not self.wlan.isconnected():
            self.wlan.connect(self.cfg.get("wifi_ssid", ""), self.cfg.get("wifi_password", ""))
            return False
        return True

    def signal_dbm(self) -> "float | None":
        """Wi-Fi RSSI."""
        try:
            return float(self.wlan.status("rssi"))
        except (OSError, ValueError):
            return None

    def uart_exchange(self, request: bytes, find: "Any", timeout_ms: int) -> "bytes | None":
        """Send ``request`` to the meter; the frame ``find`` picks out, or None on timeout."""
        self.uart.read()  # drop stale bytes
        self.uart.write(request)
        buffer = b""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            chunk = self.uart.read()
            if chunk:
                buffer += chunk
                frame, _used = find(buffer)
                if frame is not None:
                    return bytes(frame)
            else:
                time.sleep_ms(10)
        return None

    def read_audio(self, nbytes: int) -> bytes:
        """``nbytes`` of S16_LE PCM from the I2S input (empty without one)."""
        if self.i2s is None:
            return b""
        buf = bytearray(nbytes)
        got = self.i2s.readinto(buf)
        return bytes(buf[:got])

    def watchdog(self, timeout_ms: int) -> "Any":
        """``machine.WDT``: cannot be stopped once started."""
        return machine.WDT(timeout=timeout_ms)

    def reset_cause(self) -> str:
        """Why the chip started."""
        return RESET_CAUSES.get(machine.reset_cause(), "unknown")
