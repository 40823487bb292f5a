"""Command handling with a fake host and fake probes (the real process is in test_agent_process)."""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path
from typing import Any

from agent.commands import CommandDispatcher, CommandHost, write_tone
from agent.config import AgentConfig
from agent.probes.base import Probe
from protocols import payloads

DEVICE = "vn-trangxa-loa-03"


class FakeAudio(Probe):
    name = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.measured: list[float] = []

    async def read(self) -> dict[str, Any]:
        return {}

    async def measure(self, seconds: float, freq_hz: float | None = None) -> dict[str, Any]:
        self.measured.append(seconds)
        values: dict[str, Any] = {"rms_dbfs": -60.0 if len(self.measured) == 1 else -15.0, "peak_dbfs": -12.0}
        if freq_hz is not None:
            values["tone_dbfs"] = -15.1
        return values


class FakePowerMeter(Probe):
    name = "power_meter"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def read(self) -> dict[str, Any]:
        self.calls += 1
        return {"amp_power_w": 12.0 if self.calls == 1 else 64.0}


class FakeHost(CommandHost):
    def __init__(self, commands: dict[str, Any], probes: dict[str, Probe] | None = None) -> None:
        self.config = AgentConfig(
            {
                "device": {"id": DEVICE, "kind": "speaker_cluster", "state_dir": "/nonexistent"},
                "commands": commands,
            }
        )
        self.probes = probes or {}
        self.results: list[dict[str, Any]] = []
        self.reports = 0

    def probe(self, name: str) -> Any | None:
        return self.probes.get(name)

    async def report_now(self) -> dict[str, Any]:
        self.reports += 1
        return {"heartbeat_seq": 41}

    def set_intervals(self, heartbeat_s: float | None, snapshot_s: float | None) -> dict[str, Any]:
        return {"heartbeat_s": heartbeat_s}

    def enqueue_result(self, fields: dict[str, Any]) -> None:
        env = payloads.envelope(DEVICE, 1_764_000_000_000, True, 1, "b", len(self.results))
        self.results.append(payloads.build("result", env, fields))  # must be a valid result

    async def wait_sent(self, timeout_s: float) -> bool:
        return True


def _dispatcher(host: FakeHost) -> CommandDispatcher:
    seen: set[str] = set()

    def mark(command_id: str) -> bool:
        was = command_id in seen
        seen.add(command_id)
        return was

    return CommandDispatcher(host, mark)


def _cmd(cmd: str, args: dict[str, Any], command_id: str = "c-1") -> bytes:
    return json.dumps(
        {"v": 1, "kind": "command", "device": DEVICE, "id": command_id, "cmd": cmd, "args": args, "ts": 1}
    ).encode()


async def test_test_tone_plays_once_and_reports_levels_before_and_during(tmp_path: Path) -> None:
    log = tmp_path / "played.txt"
    player = [
        sys.executable,
        "-c",
        f"import sys; open({str(log)!r}, 'a').write(sys.argv[1] + '\\n')",
        "{wav}",
    ]
    audio, power = FakeAudio(), FakePowerMeter()
    host = FakeHost({"player": player}, {"audio": audio, "power_meter": power})
    d = _dispatcher(host)
    data = _cmd("play_test_tone", {"freq_hz": 1000, "level_dbfs": -12, "seconds": 0.5})
    await d.handle(data)
    await d.handle(data)  # QoS-1 redelivery: no second tone, no second result
    assert len(log.read_text().splitlines()) == 1
    [result] = host.results
    assert result["ok"], result
    m = result["measured"]
    assert m["rms_dbfs_before"] == -60.0
    assert m["rms_dbfs"] == -15.0
    assert m["tone_dbfs"] == -15.1
    assert "tone_dbfs_before" not in m
    assert m["amp_power_w_before"] == 12.0
    assert m["amp_power_w"] == 64.0
    assert m["freq_hz"] == 1000
    assert d.counts["duplicate"] == 1


async def test_failing_player_gives_an_error_result() -> None:
    host = FakeHost({"player": [sys.executable, "-c", "import sys; sys.exit('no sound card')"]})
    await _dispatcher(host).handle(
        _cmd("play_test_tone", {"freq_hz": 440, "level_dbfs": -20, "seconds": 0.5})
    )
    [result] = host.results
    assert not result["ok"]
    assert "exited with 1" in result["error"]
    assert "no sound card" in result["error"]


async def test_missing_player_binary_gives_an_error_result() -> None:
    host = FakeHost({"set_volume": ["/nonexistent/amixer", "{level}"]})
    await _dispatcher(host).handle(_cmd("set_volume", {"level": 80}))
    assert not host.results[0]["ok"]
    assert "cannot run" in host.results[0]["error"]


async def test_out_of_range_argument_is_rejected_with_its_name() -> None:
    host = FakeHost({})
    await _dispatcher(host).handle(_cmd("set_volume", {"level": 150}))
    assert "command.args.level must be <= 100" in host.results[0]["error"]
    assert host.results[0]["id"] == "c-1"


async def test_command_for_another_device_is_refused() -> None:
    host = FakeHost({})
    data = json.dumps(
        {
            "v": 1,
            "kind": "command",
            "device": "vn-other",
            "id": "c-9",
            "cmd": "report_now",
            "args": {},
            "ts": 1,
        }
    ).encode()
    await _dispatcher(host).handle(data)
    assert not host.results[0]["ok"]
    assert "vn-other" in host.results[0]["error"]
    assert host.reports == 0


async def test_reboot_needs_confirmation_and_permission(tmp_path: Path) -> None:
    marker = tmp_path / "rebooted"
    reboot = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    refused = FakeHost({"reboot": reboot, "allow_reboot": False})
    d = _dispatcher(refused)
    await d.handle(_cmd("reboot", {"confirm": DEVICE}, "r-1"))
    await d.handle(_cmd("reboot", {"confirm": "vn-wrong"}, "r-2"))
    assert [r["ok"] for r in refused.results] == [False, False]
    assert "allow_reboot" in refused.results[0]["error"]
    assert "confirm" in refused.results[1]["error"]
    assert not marker.exists()
    allowed = FakeHost({"reboot": reboot, "allow_reboot": True})
    await _dispatcher(allowed).handle(_cmd("reboot", {"confirm": DEVICE}, "r-3"))
    assert allowed.results[0]["ok"]
    assert marker.exists()


async def test_test_pattern_without_display_probe_is_an_error() -> None:
    host = FakeHost({})
    await _dispatcher(host).handle(_cmd("show_test_pattern", {"pattern": "grid", "seconds": 5}))
    assert "no display probe" in host.results[0]["error"]


def test_tone_wav_has_the_asked_length_and_level(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_tone(path, 1000.0, -6.0, 0.5, rate=8000)
    with wave.open(str(path)) as w:
        assert w.getnframes() == 4000
        frames = w.readframes(4000)
    samples = [int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, len(frames), 2)]
    assert 16000 < max(samples) <= 16422  # -6 dBFS of 32767


class FakeModem(Probe):
    async def read(self) -> dict[str, Any]:
        return {}

    async def identity(self) -> dict[str, Any]:
        return {"imei": "867698041234561", "iccid": "89840480000123456789"}


async def test_identify_answers_imei_iccid_and_controller_serial() -> None:
    host = FakeHost({}, {"modem": FakeModem("modem")})
    await _dispatcher(host).handle(_cmd("identify", {}))
    [result] = host.results
    assert result["ok"] is True
    assert result["measured"]["imei"] == "867698041234561"
    assert result["measured"]["iccid"] == "89840480000123456789"
    assert "serial" in result["measured"]


def test_controller_serial_from_the_device_tree_or_cpuinfo(tmp_path: Path) -> None:
    from agent.commands import controller_serial

    tree = tmp_path / "serial-number"
    tree.write_bytes(b"10000000abcdef01\0")
    assert controller_serial((tmp_path / "missing", tree)) == {
        "serial": "10000000abcdef01",
        "serial_source": str(tree),
    }
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("Hardware\t: BCM2835\nSerial\t\t: 00000000c0ffee42\n")
    assert controller_serial((), cpuinfo)["serial"] == "00000000c0ffee42"
    assert controller_serial((), tmp_path / "none") == {"serial": None, "serial_source": None}
