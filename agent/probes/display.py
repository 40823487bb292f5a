"""Display probe: an LED sending card or LCD player over the display frame protocol.

Reads power, brightness, content, failed LED modules, cabinet temperature and the age of
the last sync with the provincial source system. Two faults a board never reports
itself are derived here: *blank* (the blank flag, or the known all-black screen hash) and
*frozen* (the screen hash has not changed for ``frozen_after_s`` while the screen is on
and content should rotate: a hung player keeps its schedule moving but the picture stops).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from agent.probes._config import ProbeConfig
from agent.probes._serial import LinkError, SerialLink
from agent.probes.base import Probe
from protocols import display_frame as df
from protocols.errors import InvalidFrame

Clock = Callable[[], float]


class DisplayProbe(Probe):
    """Reads the board's STATUS and sends test patterns and brightness for commands.

    Config keys: ``url`` (required), ``baudrate`` (115200), ``timeout_s`` (1.0),
    ``frozen_after_s`` (120), ``content_rotates`` (true: a still screen is a fault).

    Args:
        name: the probe's name in the config.
        section: its config section.
        clock: monotonic seconds (frozen detection).
        wall_clock: unix seconds (age of the last source sync).
    """

    name = "display"

    def __init__(
        self,
        name: str,
        section: Mapping[str, Any],
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        super().__init__(name)
        config = ProbeConfig(name, section)
        self.url = config.required_string("url")
        self.frozen_after_s = config.number("frozen_after_s", 120.0, 0)
        self.content_rotates = config.boolean("content_rotates", True)
        self.link = SerialLink(
            self.url, config.integer("baudrate", 115200, 300), config.number("timeout_s", 1.0, 0.05, 30)
        )
        self.clock = clock
        self.wall_clock = wall_clock
        self.blank = False
        self.frozen = False
        self._seq = itertools.count(1)
        self._hash: str | None = None
        self._hash_since = 0.0
        self._pattern_until = 0.0

    def _next_seq(self) -> int:
        return next(self._seq) % 256

    async def _request(self, frame: bytes, seq: int, what: str) -> dict[str, Any]:
        def find(buffer: bytes) -> tuple[bytes | None, int]:
            found, consumed = df.find_frame(buffer)
            # A late answer to an earlier request carries another SEQ: skip it.
            if found is not None and found[3] != seq:
                return None, consumed
            return found, consumed

        try:
            message = df.decode_frame(await self.link.exchange(frame, find))
        except (LinkError, InvalidFrame) as exc:
            raise self._fail(f"display at {self.url}, {what}: {exc}") from None
        if message["command"] == "nak":
            error = df.ERROR_NAMES.get(message["error"], f"error {message['error']}")
            raise self._fail(f"display at {self.url} refused {what}: {error}")
        return message

    async def read(self) -> dict[str, Any]:
        """The display message's fields.

        Raises:
            ProbeError: no answer, garbage, a CRC error or a NAK.
        """
        seq = self._next_seq()
        status = await self._request(df.status_request(seq), seq, "status_request")
        if status["command"] != "status":
            raise self._fail(f"display at {self.url} answered {status['command']} to status_request")
        return self._fields(status)

    def _fields(self, status: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        blank = status["blank"] or status["screen_hash"] == df.BLANK_SCREEN_HASH
        if status["screen_hash"] != self._hash:
            self._hash, self._hash_since = status["screen_hash"], now
        frozen = (
            self.content_rotates
            and status["power"]
            and not blank
            and now >= self._pattern_until  # a test pattern is a still image on purpose
            and now - self._hash_since > self.frozen_after_s
        )
        self._edge("blank", blank, "screen is black while powered" if status["power"] else "screen off")
        self._edge("frozen", frozen, "screen unchanged for %.0f s" % (now - self._hash_since))
        sync = status["last_source_sync"]
        temp = status["temperature_c"]
        return {
            "power": status["power"],
            "brightness": status["brightness"],
            "content_id": status["content_id"] or None,
            "blank": blank,
            "frozen": frozen,
            "failed_modules": status["failed_modules"],
            "modules_total": status["modules_total"],
            "temp_c": temp if -60 <= temp <= 200 else None,
            "source_sync_age_s": max(0.0, round(self.wall_clock() - sync, 1)) if sync else None,
        }

    def _edge(self, code: str, now_on: bool, detail: str) -> None:
        was_on = getattr(self, code)
        if now_on != was_on:
            setattr(self, code, now_on)
            self._emit("fault_start" if now_on else "fault_end", code, detail=detail if now_on else None)

    async def show_test_pattern(self, pattern: str, seconds: float) -> dict[str, Any]:
        """Show ``pattern`` (a name in ``display_frame.TEST_PATTERN_IDS``) for ``seconds``.

        Returns:
            ``pattern``, ``seconds`` and the ``content_id`` and ``screen_hash`` the board
            reports right after, as evidence for the acceptance report.

        Raises:
            ProbeError: unknown pattern, a NAK (e.g. the screen is off) or no answer.
        """
        if pattern not in df.TEST_PATTERN_IDS:
            known = ", ".join(sorted(df.TEST_PATTERN_IDS))
            raise self._fail(f"unknown test pattern {pattern!r} (known: {known})")
        whole = min(df.MAX_TEST_PATTERN_SECONDS, max(1, math.ceil(seconds)))
        seq = self._next_seq()
        await self._request(df.show_test_pattern(seq, pattern, whole), seq, "show_test_pattern")
        self._pattern_until = self.clock() + whole
        seq = self._next_seq()
        status = await self._request(df.status_request(seq), seq, "status_request")
        return {
            "pattern": pattern,
            "seconds": whole,
            "content_id": status.get("content_id"),
            "screen_hash": status.get("screen_hash"),
        }

    async def set_brightness(self, level: int) -> dict[str, Any]:
        """Set the screen brightness, 0..100 %.

        Raises:
            ProbeError: a level out of range, a NAK or no answer.
        """
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
            raise self._fail(f"brightness must be an int in 0..100, got {level!r}")
        seq = self._next_seq()
        await self._request(df.set_brightness(seq, level), seq, "set_brightness")
        return {"brightness": level}

    async def close(self) -> None:
        """Close the serial port."""
        await self.link.close()
