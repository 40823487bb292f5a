"""Line building: every payload kind becomes the points of the schema in docs/architecture.md."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from backend.ingest import ClockPlacer, MessageRejected, message_lines, quarantine_line
from backend.registry import Registry, parse_registry
from protocols import payloads, topics
from protocols.examples import EXAMPLES

REGISTRY_YAML = """
district: Võ Nhai
communes:
  - {id: trang-xa, name: Tràng Xá, type: commune, radio_system: ip}
devices:
  - {id: vn-trangxa-loa-03, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm Đồng Mỏ}
  - {id: vn-trangxa-bangtin-01, kind: eboard, commune: trang-xa, hamlet: UBND xã}
"""
DEVICE = "vn-trangxa-loa-03"
RECEIVED_MS = 1_764_126_005_000


@pytest.fixture
def registry() -> Registry:
    return parse_registry(REGISTRY_YAML)


def _lines(
    registry: Registry, msg: dict[str, Any], *, received_ms: int = RECEIVED_MS, **kw: Any
) -> list[str]:
    placer = kw.pop("placer", None) or ClockPlacer()
    topic = kw.pop("topic", None) or topics.topic_for(msg)
    return message_lines(topic, json.dumps(msg).encode(), received_ms, registry=registry, placer=placer, **kw)


def _ms(point: str) -> int:
    """The millisecond of a point (ingest writes nanoseconds)."""
    return int(point.rsplit(" ", 1)[1]) // 1_000_000


def _example(kind: str, **changes: Any) -> dict[str, Any]:
    msg = copy.deepcopy(EXAMPLES[kind])
    msg.update(changes)
    return msg


def test_heartbeat_is_tagged_with_commune_and_hamlet_and_typed_by_schema(registry: Registry) -> None:
    [point] = _lines(registry, _example("heartbeat"))
    assert point.startswith(
        "heartbeat,commune=trang-xa,device=vn-trangxa-loa-03,hamlet=Xóm\\ Đồng\\ Mỏ,kind=speaker_cluster "
    )
    # signal_dbm is a "num": -87 in JSON is written as a float, so -87.5 later cannot conflict.
    assert "signal_dbm=-87.0" in point
    assert "queue_depth=0i" in point
    assert 'reboot_reason="power_loss"' in point
    assert "seq=1042i" in point
    assert 'boot_id="5f0c2a9e"' in point
    assert "clock_ok=true" in point
    assert 'placed="device"' in point
    assert point.endswith(" 1764126000000001042")  # nanoseconds: the ms, then seq 1042


def test_audio_fields_from_amplifier_power_meter(registry: Registry) -> None:
    [point] = _lines(registry, _example("audio", amp_current_a=None))
    assert point.startswith("audio,")
    assert "rms_dbfs=-18.4" in point
    assert "amp_power_w=64.2" in point
    assert "volume=80i" in point
    assert "dead_air=false" in point
    assert "amp_current_a" not in point  # null fields are left out
    assert "mono_ms" not in point
    assert ",v=" not in point
    assert " v=" not in point


def test_display_of_an_eboard(registry: Registry) -> None:
    msg = _example("display", device="vn-trangxa-bangtin-01")
    [point] = _lines(registry, msg)
    assert point.startswith(
        "display,commune=trang-xa,device=vn-trangxa-bangtin-01,hamlet=UBND\\ xã,kind=eboard "
    )
    assert "brightness=70i" in point
    assert "failed_modules=0i" in point
    assert "temp_c=43.5" in point


def test_event_code_and_type_are_tags(registry: Registry) -> None:
    [point] = _lines(registry, _example("event", duration_s=15))
    assert point.startswith(
        "event,code=dead_air,commune=trang-xa,device=vn-trangxa-loa-03,event=fault_start,"
    )
    assert 'detail="below -50 dBFS for 15 s"' in point
    assert "duration_s=15.0" in point
    assert "seq=1042i" in point


def test_result_measurements_are_flattened(registry: Registry) -> None:
    [point] = _lines(registry, _example("result"))
    assert point.startswith("result,cmd=play_test_tone,commune=trang-xa,")
    assert "measured_freq_hz=1000.0" in point
    assert "measured_rms_dbfs=-12.1" in point
    assert 'id="c-20251126-0001"' in point
    assert "ok=true" in point
    assert "error=" not in point


def test_batch_is_unpacked_into_its_items(registry: Registry) -> None:
    items = [_example("audio", seq=10 + i, ts=1_764_126_000_000 + i * 10_000) for i in range(3)]
    items.append(_example("event", seq=13))
    batch = payloads.batch(DEVICE, items)
    points = _lines(registry, batch)
    assert [p.split(",")[0] for p in points] == ["audio", "audio", "audio", "event"]
    assert [_ms(p) for p in points[:3]] == [1764126000000, 1764126010000, 1764126020000]


def test_reading_with_wrong_clock_is_placed_by_receive_time(registry: Registry) -> None:
    msg = _example("audio", ts=946_684_800_000, clock_ok=False, mono_ms=50_000)  # device thinks it is 2000
    [point] = _lines(registry, msg)
    assert _ms(point) == RECEIVED_MS
    assert 'placed="received"' in point
    assert "clock_ok=false" in point


def test_backlog_batch_without_clock_is_spread_by_mono_ms(registry: Registry) -> None:
    items = [_example("audio", seq=i, clock_ok=False, ts=0, mono_ms=1_000_000 + i * 10_000) for i in range(3)]
    points = _lines(registry, payloads.batch(DEVICE, items))
    stamps = [_ms(p) for p in points]
    assert stamps == [RECEIVED_MS - 20_000, RECEIVED_MS - 10_000, RECEIVED_MS]


def test_redelivered_duplicate_without_clock_lands_on_the_same_timestamp(registry: Registry) -> None:
    placer = ClockPlacer()
    msg = _example("heartbeat", clock_ok=False, ts=5, mono_ms=70_000)
    first = _lines(registry, msg, placer=placer)
    later = _lines(registry, msg, placer=placer, received_ms=RECEIVED_MS + 30_000)
    assert first == later


DAY_MS = 86_400_000


def test_synchronised_clock_a_day_ahead_is_not_trusted(registry: Registry) -> None:
    msg = _example("heartbeat", clock_ok=True, ts=RECEIVED_MS + DAY_MS, mono_ms=70_000)
    [point] = _lines(registry, msg)
    assert _ms(point) == RECEIVED_MS
    assert 'placed="received"' in point


def test_old_backlog_with_a_good_clock_keeps_its_own_time(registry: Registry) -> None:
    placer = ClockPlacer()
    live = _example("heartbeat", clock_ok=True, ts=RECEIVED_MS - 50, mono_ms=7_200_000, seq=2)
    _lines(registry, live, placer=placer)
    made_two_hours_ago = RECEIVED_MS - 7_200_000 + 1_000
    replay = _example("heartbeat", clock_ok=True, ts=made_two_hours_ago, mono_ms=1_000, seq=1)
    [point] = _lines(registry, replay, placer=placer, received_ms=RECEIVED_MS + 100)
    assert _ms(point) == made_two_hours_ago
    assert 'placed="device"' in point


def test_anchor_prefers_the_least_delayed_delivery(registry: Registry) -> None:
    placer = ClockPlacer()
    delayed = _example("heartbeat", clock_ok=False, ts=5, mono_ms=70_000, seq=1)
    _lines(registry, delayed, placer=placer, received_ms=RECEIVED_MS + 60_000)  # sat in the broker a minute
    live = _example("heartbeat", clock_ok=False, ts=5, mono_ms=140_000, seq=2)
    [point] = _lines(registry, live, placer=placer, received_ms=RECEIVED_MS + 70_000)
    assert placer.anchor(DEVICE, "5f0c2a9e") == RECEIVED_MS + 70_000 - 140_000
    assert _ms(point) == RECEIVED_MS + 70_000


def test_birth_and_commands_are_not_ingests_to_write(registry: Registry) -> None:
    assert _lines(registry, _example("birth")) == []
    cmd = payloads.command(DEVICE, "c-1", "report_now", {}, 1)
    assert _lines(registry, cmd, topic=topics.command_topic(DEVICE)) == []


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "device"),
    [
        ("tincoso/v1/Bad+Id/event", b"{}", "bad_topic", "Bad+Id"),
        ("tincoso/v1/vn-trangxa-loa-03/telemetry/weather", b"{}", "bad_topic", DEVICE),
        ("tincoso/v1/vn-trangxa-loa-03/event", b"\xff\xfe", "bad_payload", DEVICE),
        ("tincoso/v1/vn-trangxa-loa-03/event", b'{"v": 1, "kind": "event"}', "bad_payload", DEVICE),
        (
            "tincoso/v1/vn-trangxa-loa-02/event",
            json.dumps(EXAMPLES["event"]).encode(),
            "device_mismatch",
            None,
        ),
        (
            "tincoso/v1/vn-trangxa-loa-03/event",
            json.dumps(EXAMPLES["audio"]).encode(),
            "kind_mismatch",
            DEVICE,
        ),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(
    registry: Registry, topic: str, payload: bytes, reason: str, device: str | None
) -> None:
    with pytest.raises(MessageRejected) as caught:
        message_lines(topic, payload, RECEIVED_MS, registry=registry, placer=ClockPlacer())
    assert caught.value.reason == reason
    assert caught.value.device == (device or "vn-trangxa-loa-02")
    assert caught.value.detail


def test_unknown_device_is_rejected_not_written(registry: Registry) -> None:
    msg = _example("heartbeat", device="vn-lahien-loa-99")
    with pytest.raises(MessageRejected, match="not in the registry") as caught:
        _lines(registry, msg)
    assert caught.value.reason == "unknown_device"


def test_quarantine_point_keeps_a_truncated_printable_payload() -> None:
    rejected = MessageRejected("bad_payload", DEVICE, "payload is not valid JSON (600 bytes)")
    payload = b"\x00garbage\n" + b"x" * 600
    point = quarantine_line(rejected, "tincoso/v1/vn-trangxa-loa-03/event", payload, 123, keep_bytes=64)
    assert point.startswith("quarantine,device=vn-trangxa-loa-03,reason=bad_payload ")
    assert 'payload="?garbage?' + "x" * 55 + '"' in point
    assert "payload_bytes=609i" in point
    assert "\n" not in point
    assert "\x00" not in point
    assert point.endswith(" 123000000")  # nanoseconds, like every point of ingest


def test_readings_in_one_millisecond_get_distinct_timestamps_and_a_replay_the_same(
    registry: Registry,
) -> None:
    first = _example("audio", seq=41, ts=1_764_126_000_000)
    second = _example("audio", seq=42, ts=1_764_126_000_000, rms_dbfs=-30.0)
    [a], [b] = _lines(registry, first), _lines(registry, second)
    assert (a.rsplit(" ", 1)[1], b.rsplit(" ", 1)[1]) == ("1764126000000000041", "1764126000000000042")
    [replayed] = _lines(registry, payloads.batch(DEVICE, [first]), received_ms=RECEIVED_MS + 60_000)
    assert replayed == a


def test_device_moved_to_another_hamlet_by_a_registry_reload_is_tagged_with_the_new_one(
    registry: Registry,
) -> None:
    # Ingest builds each device's series key once; a reload must not leave the old tags.
    placer = ClockPlacer()
    [before] = _lines(registry, _example("heartbeat"), placer=placer)
    moved = parse_registry(REGISTRY_YAML.replace("hamlet: Xóm Đồng Mỏ", "hamlet: Xóm Na Ho"))
    [after] = _lines(moved, _example("heartbeat", seq=1043), placer=placer)
    assert ",hamlet=Xóm\\ Đồng\\ Mỏ," in before
    assert ",hamlet=Xóm\\ Na\\ Ho," in after
    assert "seq=1043i" in after
