"""Screen probe: blank and frozen screens, seen on the player's own X11 display.

Most e-board players and LCD media players are a Linux box drawing on an X11 display
(HDMI to the panel). No vendor protocol is needed to see what they show: this probe grabs
the display's frames (``mss``, which talks to libX11 through ctypes) every ``sample_s``
and derives two faults the player never reports itself:

* *blank*: the frame is uniform (black, or one flat colour such as a "no signal" screen)
  for ``blank_after_s``; a fade through black between items is not a fault;
* *frozen*: the frame has not changed for ``frozen_after_s`` while not blank (a hung
  player keeps its window but the picture stops). ``content_rotates = false`` for a
  board that shows a still image on purpose.

A frame is reduced to the luminance of a grid of points (:data:`GRID` = 32 x 18), so a
4K frame costs as little as a small one; two frames differ when any point moved by more
than ``change_level`` (0-255). ``read()`` gives the display message's ``blank`` and
``frozen`` (with ``power`` true: the player's display answers); the serial adapter
(``display``), when configured too, gives the rest (the runtime merges them).
Events: ``fault_start`` / ``fault_end`` codes ``blank`` and ``frozen``, at the sample that
decided them. The frame grabber is injected (``grab``), so the logic is testable without X.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from agent.probes._config import ProbeConfig
from agent.probes.base import Probe, stop_task

GRID = (32, 18)


class Frame:
    """One grabbed frame: ``width`` x ``height`` pixels, ``bgra`` 4 bytes a pixel, row by row."""

    __slots__ = ("bgra", "height", "width")

    def __init__(self, width: int, height: int, bgra: bytes | bytearray) -> None:
        if width <= 0 or height <= 0 or len(bgra) < 4 * width * height:
            raise ValueError(f"frame of {width}x{height} needs {4 * width * height} bytes, got {len(bgra)}")
        self.width, self.height, self.bgra = width, height, bgra


Grabber = Callable[[], Frame]
Clock = Callable[[], float]


class ScreenGrabError(Exception):
    """The display cannot be opened or read; the message says which and why."""


def x11_grabber(display: str) -> Grabber:
    """Grab the whole X11 screen ``display`` (``":0"``) with mss; one connection a grab."""

    def grab() -> Frame:
        import mss  # only a board with a screen probe needs it (pip extra "screen")
        from mss.exception import ScreenShotError

        try:
            with mss.MSS(display=display) as screen:
                shot = screen.grab(screen.monitors[0])
                return Frame(shot.width, shot.height, shot.bgra)
        except ScreenShotError as exc:
            raise ScreenGrabError(f"X display {display}: {exc}") from None

    return grab


def signature(frame: Frame) -> list[int]:
    """Luminance (0-255) of the :data:`GRID` points of ``frame``."""
    columns, rows = GRID
    data, width = frame.bgra, frame.width
    out = []
    for row in range(rows):
        y = (2 * row + 1) * frame.height // (2 * rows)
        for column in range(columns):
            i = 4 * (y * width + (2 * column + 1) * width // (2 * columns))
            blue, green, red = data[i], data[i + 1], data[i + 2]
            out.append((299 * red + 587 * green + 114 * blue) // 1000)
    return out


def is_uniform(points: list[int], spread: int) -> bool:
    """Whether every point is within ``spread`` of the others (a black or flat screen)."""
    return max(points) - min(points) <= spread


def changed(before: list[int], after: list[int], level: int) -> bool:
    """Whether any point moved by more than ``level``."""
    return any(abs(a - b) > level for a, b in zip(before, after, strict=True))


class ScreenProbe(Probe):
    """Blank and frozen from the frames of the player's display.

    Config keys: ``display`` (required, ``":0"``), ``sample_s`` (2.0), ``frozen_after_s``
    (120), ``blank_after_s`` (10), ``content_rotates`` (true), ``blank_spread`` (12: the
    largest luminance spread of a uniform screen), ``change_level`` (10).
    """

    name = "screen"

    def __init__(
        self,
        name: str,
        section: Mapping[str, Any],
        *,
        grab: Grabber | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(name)
        config = ProbeConfig(name, section)
        self.display = config.required_string("display")
        self.sample_s = config.number("sample_s", 2.0, 0.05, 60)
        self.frozen_after_s = config.number("frozen_after_s", 120.0, 0)
        self.blank_after_s = config.number("blank_after_s", 10.0, 0)
        self.content_rotates = config.boolean("content_rotates", True)
        self.blank_spread = config.integer("blank_spread", 12, 0, 255)
        self.change_level = config.integer("change_level", 10, 0, 255)
        self.grab = grab or x11_grabber(self.display)
        self.clock = clock
        self.blank = False
        self.frozen = False
        self.frames = 0
        self._points: list[int] | None = None
        self._changed_at = 0.0
        self._uniform_since: float | None = None
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sampling; a display that cannot be read shows in ``read()``."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._sample_forever(), name=f"screen-probe-{self.name}")

    async def _sample_forever(self) -> None:
        while True:
            try:
                frame = await asyncio.to_thread(self.grab)
            except (ScreenGrabError, ValueError, OSError) as exc:
                self._failure = str(exc)
            else:
                self._failure = None
                self.observe(frame)
            await asyncio.sleep(self.sample_s)

    def observe(self, frame: Frame) -> None:
        """Take one frame into account (the sampling task calls it; tests may too)."""
        now = self.clock()
        points = signature(frame)
        self.frames += 1
        if self._points is None or changed(self._points, points, self.change_level):
            self._changed_at = now
        self._points = points
        if is_uniform(points, self.blank_spread):
            if self._uniform_since is None:
                self._uniform_since = now
        else:
            self._uniform_since = None
        blank = self._uniform_since is not None and now - self._uniform_since >= self.blank_after_s
        still_s = now - self._changed_at
        frozen = (
            self.content_rotates
            and self._uniform_since is None
            and self.frames > 1
            and still_s >= self.frozen_after_s
        )
        self._edge("blank", blank, f"screen uniform (level {points[0]}/255) for {self.blank_after_s:.0f} s")
        self._edge("frozen", frozen, f"screen unchanged for {still_s:.0f} s")

    def _edge(self, code: str, now_on: bool, detail: str) -> None:
        if now_on != getattr(self, code):
            setattr(self, code, now_on)
            self._emit("fault_start" if now_on else "fault_end", code, detail=detail if now_on else None)

    async def read(self) -> dict[str, Any]:
        """``power`` (the display answers), ``blank`` and ``frozen`` as last sampled.

        Raises:
            ProbeError: the display could not be grabbed (no X server, no permission).
        """
        await self.start()
        if not self.frames and self._failure is None:
            for _ in range(int(5 / 0.05)):  # the first sample, at most 5 s
                if self.frames or self._failure is not None:
                    break
                await asyncio.sleep(0.05)
        if self._failure is not None:
            raise self._fail(f"screen {self.display}: {self._failure}")
        if not self.frames:
            raise self._fail(f"screen {self.display}: no frame within 5 s")
        # What a screen cannot tell is null; a serial adapter's values win in the merge.
        return {
            "power": True,
            "brightness": None,
            "content_id": None,
            "blank": self.blank,
            "frozen": self.frozen,
            "failed_modules": None,
            "temp_c": None,
        }

    async def close(self) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        await stop_task(task)
