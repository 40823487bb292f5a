"""AgentProcess, BackendProcess and the rig: start, stop, power cut, restore, disk, config."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from hil_tests.audit import CapturedMessage, MqttCapture
from hil_tests.faults import AgentProcess, FleetDevice, fill, free_space, write_registry
from hil_tests.rig import Rig, probe_sections
from hil_tests.simulators.board import Board
from hil_tests.simulators.speaker_cluster import SpeakerCluster


def _wait_for(
    capture: MqttCapture, predicate: Callable[[list[CapturedMessage]], object], timeout: float = 15.0
) -> list[CapturedMessage]:
    deadline = time.monotonic() + timeout
    while True:
        messages = capture.snapshot()
        if predicate(messages):
            return messages
        assert time.monotonic() < deadline, f"not seen in {timeout:g} s; last: {messages[-3:]!r}"
        time.sleep(0.05)


def _heartbeats(device_id: str) -> Callable[[list[CapturedMessage]], list[CapturedMessage]]:
    return lambda messages: [m for m in messages if m.device == device_id and m.kind == "heartbeat"]


def test_agent_config_points_at_the_simulators_and_the_proxy(tmp_path: Path) -> None:
    cluster = SpeakerCluster(tmp_path / "hw")
    try:
        agent = AgentProcess(
            tmp_path / "agent", "vn-trangxa-loa-01", "speaker_cluster", 41883, probes=probe_sections(cluster)
        )
        path = agent.write_config()
        config = tomllib.loads(path.read_text())
        assert config["mqtt"]["port"] == 41883
        assert config["probes"]["audio"]["source"] == cluster.audio.url
        assert config["probes"]["power_meter"]["url"] == cluster.power_meter.url
        assert config["probes"]["system"]["boot_id_path"] == str(agent.boot_id_file)
        assert agent.boot_id_file.read_text().strip() == agent.boot_id
    finally:
        cluster.stop()


def test_board_probe_sections_name_the_display_controller() -> None:
    board = Board("district_led")
    try:
        sections = probe_sections(board, {"display": {"frozen_after_s": 9.0}})
        assert sections["display"] == {"url": board.display.url, "frozen_after_s": 9.0}
        assert sections["modem"] == {"url": board.modem.url}
    finally:
        board.stop()


def test_agent_reports_through_the_rig_and_stops_cleanly(rig: Rig, mqtt_capture: MqttCapture) -> None:
    loa = rig.add_speaker_cluster(commune="trang-xa", hamlet="Nà Hốc")
    rig.start()
    started_ms = time.time_ns() // 1_000_000
    loa.speaker.start_bulletin("ban-tin-chieu", -18.0)

    def inside_bulletin(m: CapturedMessage) -> bool:
        # The level is measured over the reading's window: judge one whose window lies
        # wholly inside the bulletin (on a busy machine the first may still hold silence).
        window_ms = int(m.body.get("window_s", 0) * 1000)
        return bool(m.body.get("playing")) and m.ts is not None and m.ts - window_ms >= started_ms

    messages = _wait_for(
        mqtt_capture,
        lambda ms: any(m.kind == "audio" and inside_bulletin(m) for m in ms if m.device == loa.id),
        timeout=30,
    )
    audio = next(m for m in messages if m.device == loa.id and m.kind == "audio" and inside_bulletin(m))
    assert audio.body["rms_dbfs"] == pytest.approx(-18.0, abs=1.0)
    assert audio.body["programme"] == "ban-tin-chieu"
    assert loa.proxy is not None
    assert loa.proxy.connections_total >= 1
    assert loa.agent.stop() == 0
    assert (loa.agent.state_dir / "clean_shutdown").exists()


def test_power_cut_then_restore_reports_power_loss(rig: Rig, mqtt_capture: MqttCapture) -> None:
    loa = rig.add_speaker_cluster()
    rig.start()
    _wait_for(mqtt_capture, lambda ms: _heartbeats(loa.id)(ms) != [])
    first_boot = loa.agent.boot_id
    loa.agent.power_cut()
    assert not loa.agent.running
    assert not (loa.agent.state_dir / "clean_shutdown").exists()
    loa.agent.restore()
    assert loa.agent.boot_id != first_boot
    messages = _wait_for(
        mqtt_capture,
        lambda ms: any(m.body.get("reboot_reason") == "power_loss" for m in _heartbeats(loa.id)(ms)),
    )
    assert messages
    produced = loa.agent.produced()
    assert produced
    assert all(len(seqs) > 0 for seqs in produced.values())


def test_cut_link_queues_and_restore_delivers(rig: Rig, mqtt_capture: MqttCapture) -> None:
    loa = rig.add_speaker_cluster()
    rig.start()
    _wait_for(mqtt_capture, lambda ms: _heartbeats(loa.id)(ms) != [])
    assert loa.proxy is not None
    loa.proxy.cut()
    time.sleep(3)
    queued = loa.agent.produced()
    loa.proxy.restore()
    ((_boot, seqs),) = queued.items()
    _wait_for(
        mqtt_capture, lambda ms: {m.seq for m in ms if m.device == loa.id} >= set(seqs) - {0}, timeout=20
    )


def test_registry_lists_each_commune_once(tmp_path: Path) -> None:
    from backend.registry import load_registry

    fleet = [
        FleetDevice("vn-trangxa-loa-01", "speaker_cluster", "trang-xa", "Nà Hốc"),
        FleetDevice("vn-trangxa-loa-02", "speaker_cluster", "trang-xa", "Khuôn Vạc"),
        FleetDevice("vn-huyen-led-01", "district_led", "dinh-ca", "UBND huyện"),
    ]
    registry = load_registry(write_registry(tmp_path / "registry.yaml", fleet))
    assert sorted(registry.communes) == ["dinh-ca", "trang-xa"]
    assert registry.communes["trang-xa"].name == "Tràng Xá"
    assert registry.device("vn-huyen-led-01") is not None


def test_tiny_disk_fills_up(tiny_disk: Callable[..., Path]) -> None:
    disk = tiny_disk("256k")
    fill(disk)
    with pytest.raises(OSError, match="No space left"):
        (disk / "more").write_bytes(b"x" * 8192)
    free_space(disk)
    (disk / "more").write_bytes(b"x" * 8192)


def test_clock_offset_skews_the_device_timestamps(rig: Rig, mqtt_capture: MqttCapture) -> None:
    # Its own id: no other test's agent (on the shared broker) can answer for it.
    loa = rig.add_speaker_cluster("vn-clockskew-loa-01", clock_offset_s=3600.0)
    rig.start()
    beat = _heartbeats(loa.id)(_wait_for(mqtt_capture, _heartbeats(loa.id)))[0]
    assert beat.ts is not None
    assert beat.ts / 1000 - beat.received_at == pytest.approx(3600, abs=30)
