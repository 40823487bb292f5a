"""The screen probe on a real X server (Xvfb): a real X client (ImageMagick's ``display``)
draws changing content, then leaves a still frame, then draws black; the probe, grabbing
frames with mss, reports frozen and blank within the configured windows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.probes import ProbeError, create
from agent.probes.screen import Frame, ScreenProbe, changed, is_uniform, signature
from agent.runtime import merge_fields

X_TOOLS = {"Xvfb": "xvfb", "display": "imagemagick", "convert": "imagemagick", "xdotool": "xdotool"}
MISSING = sorted({pkg for tool, pkg in X_TOOLS.items() if shutil.which(tool) is None})
needs_x = pytest.mark.skipif(bool(MISSING), reason=f"needs the Debian packages {MISSING} (make system-deps)")

FROZEN_AFTER_S = 5.0
BLANK_AFTER_S = 2.0
SAMPLE_S = 0.25


def flat(width: int, height: int, bgr: tuple[int, int, int]) -> Frame:
    return Frame(width, height, bytes([*bgr, 255]) * (width * height))


def test_uniform_and_changed_frames_from_their_grid() -> None:
    black = signature(flat(64, 36, (0, 0, 0)))
    blue = signature(flat(64, 36, (200, 0, 0)))
    assert is_uniform(black, 12)
    assert is_uniform(blue, 12)  # a flat "no signal" screen is blank too
    half = bytearray(flat(64, 36, (0, 0, 0)).bgra)
    half[: 4 * 64 * 18] = bytes([255, 255, 255, 255]) * (64 * 18)
    split = signature(Frame(64, 36, half))
    assert not is_uniform(split, 12)
    assert changed(black, split, 10)
    assert not changed(split, split, 10)


def test_short_frame_is_refused_with_its_size() -> None:
    with pytest.raises(ValueError, match="frame of 4x4 needs 64 bytes, got 8"):
        Frame(4, 4, b"\0" * 8)


def test_screen_and_serial_adapter_merge_into_one_display_message() -> None:
    serial = {"power": True, "brightness": 80, "content_id": "lich-tiem", "blank": False, "frozen": False}
    screen = {"power": True, "brightness": None, "content_id": None, "blank": False, "frozen": True}
    fields: dict[str, Any] = {}
    merge_fields(fields, serial)
    merge_fields(fields, screen)
    assert fields == {**serial, "frozen": True}


# -- a real X server ----------------------------------------------------------------------


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private Xvfb (display number chosen by the server), killed even when the test fails."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "320x240x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class Player:
    """Draws on the X display's root window, as a signage player does full screen."""

    def __init__(self, display: str, work: Path) -> None:
        self.display, self.work = display, work
        self.windows: list[asyncio.subprocess.Process] = []
        self.frames = []
        colours = ["red-blue", "yellow-green", "white-purple", "orange-navy", "cyan-maroon", "pink-teal"]
        for i, colour in enumerate(colours):
            path = work / f"slide{i}.png"
            subprocess.run(["convert", "-size", "320x240", f"gradient:{colour}", str(path)], check=True)
            self.frames.append(path)
        self.black = work / "black.png"
        subprocess.run(["convert", "-size", "320x240", "xc:black", str(self.black)], check=True)

    async def show(self, image: Path) -> None:
        """Open a window with ``image`` at the top left, wait until it is mapped, close the last."""
        window = await asyncio.create_subprocess_exec(
            "display", "-display", self.display, "-geometry", "+0+0", "-borderwidth", "0", str(image),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.windows.append(window)
        mapped = await asyncio.create_subprocess_exec(
            "xdotool", "search", "--sync", "--onlyvisible", "--name", image.name,
            env={**os.environ, "DISPLAY": self.display}, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.wait_for(mapped.wait(), 30)
        while len(self.windows) > 1:
            await self._close(self.windows.pop(0))

    async def _close(self, window: asyncio.subprocess.Process) -> None:
        if window.returncode is None:
            window.terminate()
        await window.wait()

    async def stop(self) -> None:
        while self.windows:
            await self._close(self.windows.pop())


@contextlib.asynccontextmanager
async def sampling(probe: ScreenProbe) -> AsyncIterator[ScreenProbe]:
    await probe.start()
    try:
        yield probe
    finally:
        await probe.close()


async def wait_for_event(
    probe: ScreenProbe, seen: list[dict[str, Any]], code: str, timeout_s: float
) -> float:
    """Collect events until ``fault_start`` ``code``; when it came (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in probe.drain_events():
            seen.append(event)
            if (event["event"], event["code"]) == ("fault_start", code):
                return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {code} within {timeout_s} s; events: {seen}")


def screen_probe(display: str, **options: Any) -> ScreenProbe:
    section = {
        "kind": "screen",
        "display": display,
        "sample_s": SAMPLE_S,
        "frozen_after_s": FROZEN_AFTER_S,
        "blank_after_s": BLANK_AFTER_S,
        **options,
    }
    probe = create("screen", section)
    assert isinstance(probe, ScreenProbe)
    return probe


@needs_x
@pytest.mark.parametrize(
    "content_rotates",
    [
        True,
        pytest.param(
            False,
            marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason="frozen detection off"),
        ),
    ],
)
async def test_player_on_xvfb_changing_then_frozen_then_black(
    xvfb: str, tmp_path: Path, content_rotates: bool
) -> None:
    player = Player(xvfb, tmp_path)
    try:
        await play_and_watch(player, xvfb, content_rotates)
    finally:
        await player.stop()


async def play_and_watch(player: Player, xvfb: str, content_rotates: bool) -> None:
    seen: list[dict[str, Any]] = []
    async with sampling(screen_probe(xvfb, content_rotates=content_rotates)) as probe:
        # Slides change well within the frozen window: never frozen, never blank.
        for slide in player.frames:
            await player.show(slide)
            still_since = time.monotonic()  # the last slide stays: from here on
            await asyncio.sleep(0.2)
        first = await probe.read()
        assert first == {
            "power": True, "brightness": None, "content_id": None, "blank": False, "frozen": False,
            "failed_modules": None, "temp_c": None,
        }  # fmt: skip
        seen += probe.drain_events()
        assert seen == []
        # The player hangs on its last slide: frozen after the window, not before (the
        # slide was mapped at most when `show` returned; sampling adds up to SAMPLE_S).
        frozen_at = await wait_for_event(probe, seen, "frozen", FROZEN_AFTER_S + 15)
        assert frozen_at - still_since >= FROZEN_AFTER_S - 1.0
        assert (await probe.read())["frozen"] is True
        assert seen[-1]["detail"].startswith("screen unchanged for ")
        # Then the screen goes black: blank, and no longer frozen (black is not a picture).
        await player.show(player.black)
        black_since = time.monotonic()
        blank_at = await wait_for_event(probe, seen, "blank", BLANK_AFTER_S + 15)
        assert blank_at - black_since >= BLANK_AFTER_S - 1.0
        assert (await probe.read())["blank"] is True
        assert ("fault_end", "frozen") in [(e["event"], e["code"]) for e in seen]
        # Content again: both faults end.
        await player.show(player.frames[0])
        for _ in range(600):
            if not probe.blank:
                break
            await asyncio.sleep(0.05)
        reading = await probe.read()
    assert (reading["blank"], reading["frozen"]) == (False, False)
    assert probe.frames > 10


@needs_x
async def test_no_x_server_is_a_probe_error_naming_the_display(tmp_path: Path) -> None:
    probe = screen_probe(":987")
    try:
        with pytest.raises(ProbeError, match="screen :987: X display :987"):
            await probe.read()
    finally:
        await probe.close()
