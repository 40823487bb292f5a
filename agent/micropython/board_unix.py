"""The board layer on MicroPython's unix port: the same interface as ``board_esp32``, on a PC.

What stands in for the hardware (tests run the real MCU agent this way):

- the PZEM-004T's UART: a serial device path (the simulator's PTY);
- the ADC/I2S audio input: 16-bit PCM from ``tcp://host:port`` (the rig's audio source);
- flash: a directory; a file ``HANG`` in it makes the audio driver hang (a stalled loop);
- ``machine.WDT``: a thread that kills the process (``kill -9``, like a reset: nothing
  flushed) when not fed in time, leaving a ``reset_cause`` file the next boot reads;
- the tick counter: ``time.ticks_ms()`` moved by ``tick_offset_ms``, or started
  ``tick_wrap_in_ms`` before its wrap-around;
- NTP: the host's clock, synced unless ``clock_synced`` is false.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

import _thread
import os
import select
import socket
import time

RESET_FILE = "reset_cause"


def _exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class UnixWatchdog:
    """``machine.WDT`` for the unix port: not fed within ``timeout_ms``, the process dies."""

    def __init__(self, timeout_ms: int, flash_dir: str) -> None:
        self.timeout_ms = timeout_ms
        self.flash_dir = flash_dir
        self._fed = time.ticks_ms()
        _thread.start_new_thread(self._watch, ())

    def feed(self) -> None:
        """Restart the countdown."""
        self._fed = time.ticks_ms()

    def _watch(self) -> None:
        while True:
            time.sleep_ms(100)
            if time.ticks_diff(time.ticks_ms(), self._fed) > self.timeout_ms:
                with open(self.flash_dir + "/" + RESET_FILE, "w") as f:
                    f.write("watchdog")
                print("watchdog: loop not fed for %d ms, resetting" % self.timeout_ms)
                # $PPID of the shell is this process: a hard reset, nothing flushed.
                os.system("kill -9 $PPID")


class UnixBoard:
    """Board layer for the unix port, configured by ``config["board"]``."""

    platform = "micropython-unix"

    def __init__(self, cfg: "dict[str, Any]") -> None:
        board = cfg.get("board", {})
        self.flash_dir = board.get("flash_dir", ".")
        self.net_type = board.get("net_type", "wifi")
        self.tick_offset_ms = int(board.get("tick_offset_ms", 0))
        if "tick_wrap_in_ms" in board:  # start the counter that close to its wrap-around
            target = time.ticks_add(0, -int(board["tick_wrap_in_ms"]))  # type: ignore[type-var]
            self.tick_offset_ms = time.ticks_diff(target, time.ticks_ms())
        self.clock_synced = bool(board.get("clock_synced", True))
        self.uart_path = board.get("uart")
        self.audio_url = board.get("audio")
        self.audio_rate = int(board.get("audio_rate", 16000))
        self._uart = None  # type: Any
        self._audio = None  # type: Any

    # -- time --------------------------------------------------------------------------
    def ticks_ms(self) -> "Any":
        """The raw tick counter (wraps like the board's)."""
        return time.ticks_add(time.ticks_ms(), self.tick_offset_ms)

    def ticks_diff(self, a: int, b: int) -> int:
        """``a - b`` across a wrap."""
        return time.ticks_diff(a, b)

    def sleep_ms(self, ms: int) -> None:
        """Sleep."""
        time.sleep_ms(ms)

    def wall_ms(self) -> int:
        """Wall clock, ms since 1970."""
        return int(time.time() * 1000)

    def sync_clock(self) -> bool:
        """The host keeps its clock in sync; ``clock_synced: false`` plays an NTP failure."""
        return self.clock_synced

    # -- network -----------------------------------------------------------------------
    def network_up(self) -> bool:
        """The host's network is up."""
        return True

    def signal_dbm(self) -> "float | None":
        """No radio."""
        return None

    # -- peripherals -------------------------------------------------------------------
    def uart_exchange(self, request: bytes, find: "Any", timeout_ms: int) -> "bytes | None":
        """Send ``request`` on the meter's UART; the frame ``find`` picks out, or None."""
        if not self.uart_path:
            return None
        if self._uart is None:
            self._uart = open(self.uart_path, "r+b")  # noqa: SIM115 -- kept open
        uart = self._uart
        uart.write(request)
        poller = select.poll()
        poller.register(uart, select.POLLIN)
        buffer = b""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0 or not poller.poll(left):
                return None
            buffer += uart.read(1) or b""  # read(n) on a file waits for all n bytes
            frame, _used = find(buffer)
            if frame is not None:
                return bytes(frame)

    def read_audio(self, nbytes: int) -> bytes:
        """``nbytes`` of S16_LE PCM from the line input (blocks for the window)."""
        while _exists(self.flash_dir + "/HANG"):  # a hung I2S driver, for the watchdog test
            time.sleep_ms(100)
        if not self.audio_url:
            return b""
        try:
            if self._audio is None:
                host, port = self.audio_url[len("tcp://") :].split(":")
                sock = socket.socket()
                sock.settimeout(5)
                sock.connect(socket.getaddrinfo(host, int(port))[0][-1])
                self._audio = sock
            out = b""
            while len(out) < nbytes:
                chunk = self._audio.read(nbytes - len(out))
                if not chunk:
                    raise OSError("audio source closed")
                out += chunk
            return out
        except OSError:
            if self._audio is not None:
                self._audio.close()
            self._audio = None
            raise

    # -- system ------------------------------------------------------------------------
    def watchdog(self, timeout_ms: int) -> "Any":
        """Start the watchdog (cannot be stopped, as on the chip)."""
        return UnixWatchdog(timeout_ms, self.flash_dir)

    def reset_cause(self) -> str:
        """Why the board started: the watchdog's note, else a power cycle."""
        path = self.flash_dir + "/" + RESET_FILE
        try:
            with open(path) as f:
                cause = f.read().strip()
            os.remove(path)
            return cause or "unknown"
        except OSError:
            return "power_loss"
