"""What the probes read fits protocol v1: their fields build valid heartbeat, audio, display and events."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest

from agent.probes import KINDS, create
from hil_tests.simulators import DisplayBoardSimulator, ModemSimulator, PowerMeterSimulator
from protocols import payloads

ENV = payloads.envelope("vn-trangxa-loa-03", 1764126000000, True, 86400123, "5f0c2a9e", 1)


def tone_then_silence(rate: int = 8000) -> bytes:
    amplitude = 32768 * 10 ** (-18 / 20) * math.sqrt(2)
    loud = [round(amplitude * math.sin(2 * math.pi * 440 * i / rate)) for i in range(2 * rate)]
    return struct.pack(f"<{len(loud)}h", *loud) + b"\x00\x00" * (3 * rate)


async def test_heartbeat_from_system_and_modem_probes_is_valid(tmp_path: Path) -> None:
    system = create("system", {"state_dir": str(tmp_path / "state")})
    await system.start()
    with ModemSimulator(transport="pty") as sim:
        modem = create("modem", {"url": sim.url, "timeout_s": 0.3})
        try:
            fields: dict[str, Any] = {**await system.read(), **await modem.read()}
        finally:
            await modem.close()
    fields.update(queue_depth=0, queue_dropped=0)
    payloads.build("heartbeat", ENV, fields)
    for event in system.drain_events():
        payloads.build("event", ENV, event)


async def test_audio_message_from_audio_and_power_meter_probes_is_valid(tmp_path: Path) -> None:
    raw = tmp_path / "line.raw"
    raw.write_bytes(tone_then_silence())
    audio = create(
        "audio", {"source": f"file:{raw}", "rate": 8000, "dead_air_enter_s": 1, "dead_air_clear_s": 1}
    )
    with PowerMeterSimulator(transport="tcp") as sim:
        meter = create("power_meter", {"url": sim.url, "timeout_s": 0.3})
        try:
            await audio.start()
            fields = {**await audio.read(), **await meter.read()}
        finally:
            await meter.close()
            await audio.close()
    payloads.build("audio", ENV, fields)
    events = audio.drain_events()
    assert events
    for event in events:
        payloads.build("event", ENV, event)


async def test_display_message_from_display_probe_is_valid() -> None:
    with DisplayBoardSimulator(transport="pty") as sim:
        display = create("display", {"url": sim.url, "timeout_s": 0.3})
        try:
            payloads.build("display", ENV, await display.read())
        finally:
            await display.close()


def test_unknown_probe_kind_is_refused_with_the_known_kinds() -> None:
    with pytest.raises(ValueError, match=r"probes\.loa\.kind must be one of system, audio"):
        create("loa", {})
    assert create("amp_2", {"kind": "power_meter", "url": "/dev/ttyUSB1"}).name == "amp_2"
    assert set(KINDS) == {"system", "audio", "power_meter", "display", "screen", "modem"}


async def test_display_message_from_screen_probe_alone_is_valid() -> None:
    from agent.probes.screen import Frame, ScreenProbe

    black = Frame(64, 36, bytes(4 * 64 * 36))
    now = [0.0]
    screen = ScreenProbe(
        "screen", {"display": ":0", "blank_after_s": 1}, grab=lambda: black, clock=lambda: now[0]
    )
    for step in range(3):
        now[0] = float(step)
        screen.observe(black)
    fields = await screen.read()
    await screen.close()
    assert fields["blank"] is True
    payloads.build("display", ENV, fields)
    for event in screen.drain_events():
        payloads.build("event", ENV, event)
