"""The agent's portable core on CPython: dead air, reporting policy, batching, ring, clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import Clock
from agent.core.backlog import batch_payload, overflow, plan_sends
from agent.core.dead_air import DeadAirDetector
from agent.core.messages import MessageBuilder, clock_ok, heartbeat_fields
from agent.core.policy import Jitter, ReportingPolicy, changed, device_seed
from agent.core.ring import RingBuffer
from protocols import payloads

# -- dead air -------------------------------------------------------------------------------


def test_dead_air_starts_after_fifteen_seconds_of_silence_during_bulletin() -> None:
    d = DeadAirDetector()
    edges = [d.update(-70.0, float(t)) for t in range(16)]
    assert edges[:15] == [None] * 15
    assert edges[15] == "start"
    assert d.active
    assert d.silent_for_s == 15.0


def test_short_pause_between_sentences_is_not_dead_air() -> None:
    d = DeadAirDetector()
    for t in range(14):
        assert d.update(-70.0, float(t)) is None
    assert d.update(-20.0, 14.0) is None
    for t in range(15, 29):
        assert d.update(-70.0, float(t)) is None
    assert not d.active


def test_dead_air_clears_only_after_ten_seconds_of_sound() -> None:
    d = DeadAirDetector(enter_s=2, clear_s=10)
    for t in range(3):
        d.update(-80.0, float(t))
    assert d.active
    assert d.update(-10.0, 3.0) is None
    assert d.update(-80.0, 4.0) is None  # a blip of sound does not clear it
    edges = [d.update(-10.0, 5.0 + t) for t in range(11)]
    assert edges.count("end") == 1
    assert edges[10] == "end"
    assert not d.active


def test_clock_stepping_backwards_gives_no_negative_silence() -> None:
    d = DeadAirDetector()
    d.update(-70.0, 100.0)
    d.update(-70.0, 50.0)
    assert d.silent_for_s == 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-120, 0), st.floats(0.01, 5.0)), max_size=200),
    st.floats(1, 20),
    st.floats(1, 20),
)
def test_dead_air_edges_alternate_and_follow_hysteresis(
    samples: list[tuple[float, float]], enter_s: float, clear_s: float
) -> None:
    d = DeadAirDetector(-50.0, enter_s, clear_s)
    now = 0.0
    edges: list[str] = []
    silent_since: float | None = None
    loud_since: float | None = None
    for level, step in samples:
        now += step
        if level <= -50.0:  # at the threshold is silence (protocols.stored_data.is_audible)
            silent_since = now if silent_since is None else silent_since
            loud_since = None
        else:
            loud_since = now if loud_since is None else loud_since
            silent_since = None
        edge = d.update(level, now)
        if edge == "start":
            assert silent_since is not None
            assert now - silent_since >= enter_s
        if edge == "end":
            assert loud_since is not None
            assert now - loud_since >= clear_s
        if edge:
            edges.append(edge)
    # edges alternate start, end, start, ... and `active` matches the last one
    assert all(e == ("start" if i % 2 == 0 else "end") for i, e in enumerate(edges))
    assert d.active == (bool(edges) and edges[-1] == "start")


# -- reporting policy -----------------------------------------------------------------------


def test_heartbeat_due_at_start_then_every_period_with_bounded_jitter() -> None:
    p = ReportingPolicy("vn-trangxa-loa-03", heartbeat_s=30, jitter=0.1)
    assert p.heartbeat_due(0.0)
    now, gaps = 0.0, []
    for _ in range(50):
        p.heartbeat_sent(now)
        nxt = now + p.next_heartbeat_in(now)
        assert not p.heartbeat_due(nxt - 0.001)
        assert p.heartbeat_due(nxt)
        gaps.append(nxt - now)
        now = nxt
    assert all(27.0 <= g <= 33.0 for g in gaps)
    assert len({round(g, 3) for g in gaps}) > 10  # really spread


def test_two_devices_get_different_jitter() -> None:
    a, b = ReportingPolicy("vn-a-loa-01"), ReportingPolicy("vn-a-loa-02")
    a.heartbeat_sent(0.0)
    b.heartbeat_sent(0.0)
    assert a.next_heartbeat_in(0.0) != b.next_heartbeat_in(0.0)


def test_telemetry_on_change_and_periodic_snapshot() -> None:
    p = ReportingPolicy("dev", snapshot_s=300, jitter=0.0)
    audio = {"rms_dbfs": -20.0, "playing": True, "amp_energy_wh": 10.0}
    assert p.telemetry_due("audio", audio, 0.0) == "first"
    p.telemetry_sent("audio", audio, 0.0)
    assert p.telemetry_due("audio", {**audio, "rms_dbfs": -22.0}, 10.0) is None  # within dead band
    assert p.telemetry_due("audio", {**audio, "amp_energy_wh": 99.0}, 10.0) is None  # counter
    assert p.telemetry_due("audio", {**audio, "playing": False}, 10.0) == "change:playing"
    assert p.telemetry_due("audio", {**audio, "rms_dbfs": -60.0}, 10.0) == "change:rms_dbfs"
    assert p.telemetry_due("audio", audio, 300.0) == "snapshot"
    p.force()
    assert p.heartbeat_due(0.0)
    assert p.telemetry_due("audio", audio, 1.0) == "snapshot"


def test_set_intervals_rejects_nonsense() -> None:
    p = ReportingPolicy("dev")
    p.set_intervals(heartbeat_s=5)
    assert p.heartbeat_s == 5.0
    with pytest.raises(ValueError, match="heartbeat_s"):
        p.set_intervals(heartbeat_s=0)


def test_changed_lists_new_and_different_fields() -> None:
    assert changed(None, {"a": 1}, {}) == ["a"]
    assert changed({"a": 1, "b": "x"}, {"a": 1, "b": "y", "c": None}, {}) == ["b", "c"]
    assert changed({"t": 40.0}, {"t": 42.0}, {"t": 3.0}) == []


def test_jitter_matches_the_values_checked_under_micropython() -> None:
    # tests/micropython/mp_agent_core.py asserts the same numbers on MicroPython.
    assert device_seed("vn-trangxa-loa-03") == 242707102
    assert Jitter(242707102, 0.1).spread(30.0) == pytest.approx(28.478160020895302)


def test_jitter_is_within_fraction() -> None:
    j = Jitter(12345, 0.2)
    values = [j.spread(100.0) for _ in range(1000)]
    assert min(values) >= 80.0
    assert max(values) <= 120.0


# -- batching and cap -------------------------------------------------------------------------


def test_short_backlog_is_sent_one_by_one() -> None:
    rows = [(i, "heartbeat", 300) for i in range(10)]
    assert plan_sends(rows, backlog=10, threshold=50) == [[i] for i in range(10)]


@given(
    st.lists(
        st.tuples(st.sampled_from(["heartbeat", "audio", "event", "birth"]), st.integers(1, 8192)),
        max_size=400,
    ),
    st.integers(1, 200),
    st.integers(8192, 262144),
)
def test_long_backlog_batches_keep_order_and_limits(
    kinds_sizes: list[tuple[str, int]], max_items: int, max_bytes: int
) -> None:
    rows = [(i, kind, size) for i, (kind, size) in enumerate(kinds_sizes)]
    groups = plan_sends(rows, backlog=10_000, threshold=50, max_items=max_items, max_bytes=max_bytes)
    assert [k for g in groups for k in g] == list(range(len(rows)))  # all, once, in order
    for g in groups:
        assert len(g) <= max_items
        if len(g) > 1:
            assert all(rows[k][1] != "birth" for k in g)
            assert sum(rows[k][2] + 1 for k in g) <= max_bytes


def test_overflow_counts_what_to_drop() -> None:
    assert overflow(10, 10) == 0
    assert overflow(13, 10) == 3
    with pytest.raises(ValueError, match="cap"):
        overflow(1, 0)


def test_batch_payload_is_a_valid_batch() -> None:
    b = MessageBuilder("vn-x-loa-01", "boot")
    items = [
        payloads.encode(b.build("heartbeat", heartbeat_fields({}, 0, 0, 0), seq, 1_764_000_000_000, True, 5))
        for seq in range(3)
    ]
    msg = payloads.decode(batch_payload("vn-x-loa-01", items))
    assert [item["seq"] for item in msg["items"]] == [0, 1, 2]


# -- ring buffer (the MicroPython queue) ------------------------------------------------------


def test_ring_keeps_order_drops_oldest_and_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "ring.bin")
    ring = RingBuffer(path, capacity=4, record_size=64)
    dropped = sum(ring.append(b"m%d" % i) for i in range(6))
    assert dropped == 2
    assert ring.dropped == 2
    assert ring.peek(10) == [b"m2", b"m3", b"m4", b"m5"]
    ring.pop(1)
    ring.close()
    again = RingBuffer(path, capacity=4, record_size=64)
    assert again.peek(10) == [b"m3", b"m4", b"m5"]
    assert again.dropped == 2
    with pytest.raises(ValueError, match="record holds"):
        again.append(b"x" * 100)
    again.close()


def test_ring_torn_header_falls_back_to_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "ring.bin"
    ring = RingBuffer(str(path), capacity=4, record_size=64)
    ring.append(b"a")
    ring.append(b"b")
    gen = ring.generation
    ring.close()
    raw = bytearray(path.read_bytes())
    slot = (gen % 2) * 32
    raw[slot + 8] ^= 0xFF  # corrupt the newest header
    path.write_bytes(bytes(raw))
    again = RingBuffer(str(path), capacity=4, record_size=64)
    assert again.peek(10) == [b"a"]  # the state before the torn write
    again.close()


# -- clock ---------------------------------------------------------------------------------------


def test_clock_before_min_epoch_is_not_ok() -> None:
    assert not clock_ok(1000, True, min_epoch_ms=1_735_689_600_000)
    assert clock_ok(1_764_000_000_000, None)
    assert not clock_ok(1_764_000_000_000, False)


def test_clock_marks_unsynchronised_readings_and_carries_mono() -> None:
    synced = [False]
    clock = Clock(
        min_epoch_s=1_735_689_600,
        sync_check=lambda: synced[0],
        wall=lambda: 1_764_000_000.5,
        boot=lambda: 42.0,
        recheck_s=0.0,
    )
    assert clock.stamp() == (1_764_000_000_500, False, 42000)
    synced[0] = True
    assert clock.stamp() == (1_764_000_000_500, True, 42000)


def test_board_booted_in_1970_reports_clock_not_ok() -> None:
    clock = Clock(sync_check=lambda: None, wall=lambda: 3600.0, boot=lambda: 12.5)
    ts, ok, mono = clock.stamp()
    assert (ts, ok, mono) == (3_600_000, False, 12500)


def test_broken_sync_check_does_not_stop_reporting() -> None:
    def broken() -> bool:
        raise RuntimeError("no adjtimex")

    clock = Clock(sync_check=broken, wall=lambda: 1_764_000_000.0, boot=lambda: 1.0)
    assert clock.stamp()[1] is True


def test_message_builder_output_is_valid_json() -> None:
    b = MessageBuilder("vn-x-loa-01", "boot-1")
    msg = b.build("event", {"event": "info", "code": "x"}, 7, 1_764_000_000_000, False, 99)
    assert json.loads(payloads.encode(msg))["seq"] == 7
