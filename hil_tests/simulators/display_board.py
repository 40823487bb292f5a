"""LED sending card / LCD controller simulator (protocols/display_frame.py).

Answers STATUS_REQUEST with the board's state, and SET_BRIGHTNESS, SET_POWER and
SHOW_TEST_PATTERN with ACK or NAK. What it models:

* content rotation: ``contents`` cycle every ``rotate_s`` seconds of the simulator clock;
* screen hash: a hash of the frame on screen, new at every status request while content
  plays (video and scrolling text change every frame); a test pattern is a still image,
  so its hash stays the same while it shows;
* ``freeze()``: the output is stuck, the hash stops changing although the player still
  reports its schedule moving on; ``set_blank(True)`` or power off: blank flag and
  :data:`~protocols.display_frame.BLANK_SCREEN_HASH`;
* LED modules that fail (``fail_modules``), cabinet temperature (``temperature_c``);
* source sync: ``make_sync_fresh()`` (synchronised with the provincial source every
  ``sync_interval_s``), ``make_sync_stale(age_s)``, ``make_never_synced()``;
* SHOW_TEST_PATTERN shows ``"TEST:<pattern>"`` as content id for the given seconds; it is
  refused with NAK ``powered_off`` while the screen is off.

Fault knobs (besides ``unplugged``, ``garbage_rate``/``garbage_kind`` and
``response_delay_s`` of :class:`SimulatedDevice`): ``nak_error`` answers every request
with NAK and that code (e.g. ``ERR_BUSY``). ``garbage_kind="corrupt"`` flips a bit of the
CRC, so the frame keeps its length and fails with "CRC mismatch".
"""

from __future__ import annotations

import hashlib
from typing import Any

from hil_tests.simulators.transport import SimulatedDevice
from protocols import display_frame as df
from protocols.errors import InvalidFrame

DEFAULT_CONTENTS = ("BANTIN-SANG", "THONGBAO-UBND", "ATGT-2025", "PHONG-CHONG-BAO")


class DisplayBoardSimulator(SimulatedDevice):
    """A district LED board's sending card (or a commune e-board's LCD player).

    Args:
        contents: content ids the player rotates through.
        rotate_s: seconds each content item stays on screen.
        modules_total: LED modules (cabinets) in the screen.
        temperature_c: cabinet temperature.
        sync_interval_s: how often a healthy board syncs with the provincial source.
        **kwargs: transport, clock, wall_clock, seed (see :class:`SimulatedDevice`).
    """

    kind = "display_board"

    def __init__(
        self,
        *,
        contents: tuple[str, ...] = DEFAULT_CONTENTS,
        rotate_s: float = 10.0,
        modules_total: int = 48,
        temperature_c: float = 38.5,
        sync_interval_s: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not contents:
            raise ValueError("contents must name at least one content id")
        self.contents = contents
        self.rotate_s = rotate_s
        self.modules_total = modules_total
        self.failed_modules = 0
        self.temperature_c = temperature_c
        self.sync_interval_s = sync_interval_s
        self.power = True
        self.brightness = 80
        self.blank = False
        self.nak_error: int | None = None
        self.discarded_bytes = 0
        self._start = self.clock()
        self._frame = 0
        self._frozen_hash: str | None = None
        self._sync: tuple[str, float] = ("fresh", 0.0)
        self._pattern: str | None = None
        self._pattern_until = 0.0

    # --- knobs a test or demo turns ---------------------------------------------------

    def fail_modules(self, count: int) -> None:
        """``count`` LED modules stop working (0..modules_total)."""
        if not 0 <= count <= self.modules_total:
            raise ValueError(f"failed modules must be 0..{self.modules_total}, got {count!r}")
        with self.lock:
            self.failed_modules = count

    def freeze(self) -> None:
        """The picture freezes: the screen hash stops changing."""
        with self.lock:
            self._frozen_hash = self._screen_hash()

    def unfreeze(self) -> None:
        """The picture moves again."""
        with self.lock:
            self._frozen_hash = None

    def set_blank(self, blank: bool) -> None:
        """The output goes black (or comes back) while the board stays powered."""
        with self.lock:
            self.blank = blank

    def set_power(self, on: bool) -> None:
        """Switch the screen on or off, as the SET_POWER command does."""
        with self.lock:
            self.power = on

    def make_sync_fresh(self) -> None:
        """The board syncs with the provincial source every ``sync_interval_s``."""
        with self.lock:
            self._sync = ("fresh", 0.0)

    def make_sync_stale(self, age_s: float) -> None:
        """The last successful sync was ``age_s`` seconds ago, and none follows."""
        with self.lock:
            self._sync = ("stale", self.wall_clock() - age_s)

    def make_never_synced(self) -> None:
        """The board has never reached the provincial source (reports 0)."""
        with self.lock:
            self._sync = ("never", 0.0)

    # --- what the board reports -------------------------------------------------------

    def content_id(self) -> str:
        """Content on screen: the test pattern while one shows, else the rotation."""
        if self._pattern is not None and self.clock() < self._pattern_until:
            return f"TEST:{self._pattern}"
        self._pattern = None
        slot = int((self.clock() - self._start) // self.rotate_s)
        return self.contents[slot % len(self.contents)]

    def last_source_sync(self) -> int:
        """Unix seconds of the last sync with the provincial source (0 = never)."""
        mode, at = self._sync
        if mode == "never":
            return 0
        if mode == "stale":
            return int(at)
        now = self.wall_clock()
        return int(now - now % self.sync_interval_s)

    def _screen_hash(self) -> str:
        if self._frozen_hash is not None:
            return self._frozen_hash
        if not self.power or self.blank:
            return df.BLANK_SCREEN_HASH
        content = self.content_id()
        frame = 0 if content.startswith("TEST:") else self._frame
        seed = f"{content}|{frame}|{self.brightness}".encode()
        return hashlib.blake2b(seed, digest_size=8).hexdigest()

    def status(self, seq: int = 0) -> dict[str, Any]:
        """The STATUS message the board would send now."""
        with self.lock:
            self._frame += 1
            return {
                "command": "status",
                "seq": seq,
                "power": self.power,
                "blank": self.blank or not self.power,
                "brightness": self.brightness,
                "modules_total": self.modules_total,
                "failed_modules": self.failed_modules,
                "temperature_c": round(self.temperature_c, 1),
                "last_source_sync": self.last_source_sync(),
                "screen_hash": self._screen_hash(),
                "content_id": self.content_id(),
            }

    # --- wire side --------------------------------------------------------------------

    def _take_request(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        frame, consumed = df.find_frame(buffer)
        self.discarded_bytes += consumed - (len(frame) if frame else 0)
        return frame, buffer[consumed:]

    def _respond(self, request: bytes) -> tuple[bytes, str, dict[str, Any]]:
        seq, command, payload = df.split_frame(request)
        if self.nak_error is not None:
            return df.nak(seq, command, self.nak_error), "nak", {"error": self.nak_error}
        if command not in df.REQUEST_CODES:
            return self._nak(seq, command, df.ERR_UNKNOWN_COMMAND)
        try:
            message = df.decode_frame(request)
        except InvalidFrame as exc:
            unsupported = (
                command == df.SHOW_TEST_PATTERN and payload[:1] and (payload[0] not in df.TEST_PATTERNS)
            )
            error = df.ERR_UNSUPPORTED_PATTERN if unsupported else df.ERR_BAD_PAYLOAD
            return self._nak(seq, command, error, str(exc))
        if command == df.STATUS_REQUEST:
            status = self.status(seq)
            return df.encode_message(status), "status", status
        if command == df.SET_BRIGHTNESS:
            self.brightness = message["brightness"]
        elif command == df.SET_POWER:
            self.power = message["on"]
        elif not self.power:
            return self._nak(seq, command, df.ERR_POWERED_OFF)
        else:
            self._pattern = message["pattern"]
            self._pattern_until = self.clock() + message["seconds"]
        return df.ack(seq, command), "ack", message

    def _nak(self, seq: int, command: int, error: int, reason: str = "") -> tuple[bytes, str, dict[str, Any]]:
        return df.nak(seq, command, error), "nak", {"error": error, "reason": reason}

    def _corrupt(self, reply: bytes) -> bytes:
        # Flip a bit of the CRC (the two bytes before ETX): length and ETX stay intact.
        return reply[:-3] + bytes((reply[-3] ^ 0x01,)) + reply[-2:]
