"""The runtime's poll with fake probes: fault edges, event pass-through, telemetry policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.clock import Clock
from agent.config import AgentConfig
from agent.probes.base import Probe, ProbeError
from agent.runtime import Agent
from protocols import payloads


class FlakyMeter(Probe):
    """A power meter whose serial line can be unplugged."""

    name = "power_meter"

    def __init__(self) -> None:
        super().__init__()
        self.plugged = True

    async def read(self) -> dict[str, Any]:
        if not self.plugged:
            raise ProbeError("power meter at /dev/ttyUSB0 did not answer")
        return {"amp_power_w": 60.0}


class FakeAudio(Probe):
    name = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.rms = -20.0

    async def read(self) -> dict[str, Any]:
        return {
            "window_s": 1.0,
            "playing": True,
            "rms_dbfs": self.rms,
            "peak_dbfs": -3.0,
            "dead_air": False,
            "dead_air_s": 0.0,
            "clipping": False,
        }


def _agent(tmp_path: Path, probes: dict[str, Probe], now: list[float]) -> Agent:
    config = AgentConfig(
        {
            "device": {"id": "vn-trangxa-loa-03", "kind": "speaker_cluster", "state_dir": str(tmp_path)},
            "reporting": {"heartbeat_s": 30, "snapshot_s": 300, "jitter": 0.0},
            "probes": {name: {} for name in probes},
        }
    )
    clock = Clock(sync_check=lambda: True, wall=lambda: 1_764_000_000 + now[0], boot=lambda: now[0])
    return Agent(config, probes, clock=clock, boot_id="boot-1")


def _queued(agent: Agent) -> list[dict[str, Any]]:
    return [payloads.decode(row.payload) for row in agent.queue.peek(1000)]


async def test_unplugged_power_meter_gives_one_fault_start_and_one_fault_end(tmp_path: Path) -> None:
    meter, audio = FlakyMeter(), FakeAudio()
    now = [100.0]
    agent = _agent(tmp_path, {"power_meter": meter, "audio": audio}, now)
    await agent.poll_once()
    meter.plugged = False
    for _ in range(3):
        now[0] += 1
        await agent.poll_once()
    meter.plugged = True
    now[0] += 1
    await agent.poll_once()
    events = [m for m in _queued(agent) if m["kind"] == "event"]
    assert [(e["event"], e["code"]) for e in events] == [
        ("fault_start", "probe.power_meter"),
        ("fault_end", "probe.power_meter"),
    ]
    assert "did not answer" in events[0]["detail"]
    heartbeats = [m for m in _queued(agent) if m["kind"] == "heartbeat"]
    assert heartbeats[0]["probe_faults"] == 0
    agent.queue.close()


async def test_audio_goes_out_on_change_not_every_poll(tmp_path: Path) -> None:
    audio = FakeAudio()
    now = [100.0]
    agent = _agent(tmp_path, {"audio": audio}, now)
    for _ in range(5):
        now[0] += 1
        await agent.poll_once()
    audio.rms = -70.0  # the programme stopped
    now[0] += 1
    await agent.poll_once()
    sent = [m for m in _queued(agent) if m["kind"] == "audio"]
    # The four unchanged polls go out as one reading, stamped at the last of them, just
    # before the change: the audio messages cover all six seconds measured, none twice.
    assert [m["rms_dbfs"] for m in sent] == [-20.0, -20.0, -70.0]
    assert [m["window_s"] for m in sent] == [1.0, 4.0, 1.0]
    assert [m["ts"] - sent[0]["ts"] for m in sent] == [0, 4000, 5000]
    assert [m["seq"] for m in _queued(agent)] == list(range(len(_queued(agent))))
    agent.queue.close()


async def test_probe_events_are_sent_at_once(tmp_path: Path) -> None:
    audio = FakeAudio()
    audio._emit("fault_start", "dead_air", programme="ban-tin-chieu", detail="below -50 dBFS for 15 s")
    agent = _agent(tmp_path, {"audio": audio}, [5.0])
    await agent.poll_once()
    [event] = [m for m in _queued(agent) if m["kind"] == "event"]
    assert event["code"] == "dead_air"
    assert event["programme"] == "ban-tin-chieu"
    agent.queue.close()


async def test_invalid_probe_reading_is_dropped_and_counted(tmp_path: Path) -> None:
    audio = FakeAudio()
    audio.rms = 5.0  # above full scale: a probe bug
    agent = _agent(tmp_path, {"audio": audio}, [5.0])
    await agent.poll_once()
    assert agent.invalid_messages == 1
    assert not [m for m in _queued(agent) if m["kind"] == "audio"]
    assert json.loads(agent.queue.peek(1)[0].payload)["kind"] == "heartbeat"
    agent.queue.close()


async def test_unsynchronised_clock_marks_every_message(tmp_path: Path) -> None:
    config = AgentConfig(
        {"device": {"id": "vn-trangxa-loa-03", "kind": "speaker_cluster", "state_dir": str(tmp_path)}}
    )
    clock = Clock(sync_check=lambda: None, wall=lambda: 86_400.0, boot=lambda: 12.0)  # booted in 1970
    agent = Agent(config, {}, clock=clock, boot_id="boot-1")
    await agent.poll_once()
    [hb] = _queued(agent)
    assert hb["clock_ok"] is False
    assert hb["mono_ms"] == 12000
    agent.queue.close()


async def test_cut_speaker_line_idle_amplifier_while_audio_plays_raises_amp_idle(tmp_path: Path) -> None:
    from agent.probes import create
    from hil_tests.simulators import PowerMeterSimulator

    with PowerMeterSimulator() as meter_sim:
        meter_sim.set_amplifier("idle")  # speaker line cut: audio plays, the amplifier draws idle power
        meter = create("power_meter", {"url": meter_sim.url, "amp_idle_s": 5})
        await meter.start()
        now = [100.0]
        agent = _agent(tmp_path, {"audio": FakeAudio(), "power_meter": meter}, now)
        try:
            for _ in range(8):
                await agent.poll_once()
                now[0] += 1
        finally:
            await meter.close()
    events = [(m["event"], m["code"]) for m in _queued(agent) if m["kind"] == "event"]
    assert ("fault_start", "amp_idle") in events
