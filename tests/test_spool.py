"""The ingest spool: nothing acknowledged is lost, a torn tail never crashes it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from backend.spool import Spool, SpoolFull, SpoolLocked, encode_record


def _tail_segment(directory: Path) -> Path:
    return sorted(directory.glob("spool-*.log"))[-1]


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    payloads = [f"audio,device=loa-{i} rms_dbfs=-18.4 {i}".encode() for i in range(20)]
    for payload in payloads:
        spool.append(payload)
    assert len(list(tmp_path.glob("spool-*.log"))) > 3
    records = spool.read(100)
    assert [r.payload for r in records] == payloads
    spool.commit(records[-1].end)
    assert spool.depth == 0
    assert len(list(tmp_path.glob("spool-*.log"))) == 1
    spool.close()


def test_a_full_spool_refuses_the_next_batch_until_drained(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    spool.append(b"x" * 600)
    spool.append(b"y" * 600)  # the cap is not reached yet: this batch may pass it
    with pytest.raises(SpoolFull, match=r"is full: 1,200 bytes wait, its cap is 1,000 \(spool.max_mb\)"):
        spool.append(b"z" * 600)
    assert spool.depth == 2  # the refused batch left nothing behind
    records = spool.read(10)
    spool.commit(records[-1].end)
    spool.append(b"z" * 5000)  # drained: room again, even for a batch larger than the cap
    assert [r.payload for r in spool.read(10)] == [b"z" * 5000]
    spool.close()


def test_spool_keeps_its_disks_free_space_floor(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    spool = Spool(tmp_path, min_free_bytes=free + 2**30)  # more than this disk has free
    with pytest.raises(SpoolFull, match=r"nearly full: [\d,]+ MiB free, [\d,]+ MiB kept for InfluxDB"):
        spool.append(b"audio,device=loa-1 rms_dbfs=-18.4 1")
    assert spool.depth == 0
    spool.close()
    roomy = Spool(tmp_path, min_free_bytes=2**20)
    roomy.append(b"audio,device=loa-1 rms_dbfs=-18.4 1")
    assert roomy.depth == 1
    roomy.close()


def test_drained_records_stay_drained_after_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(b"r%d" % i)
    records = spool.read(3)
    spool.commit(records[-1].end)
    spool.close()
    reopened = Spool(tmp_path)
    assert reopened.depth == 2
    assert [r.payload for r in reopened.read(10)] == [b"r3", b"r4"]
    reopened.close()


def test_torn_tail_after_a_crash_is_cut_and_appends_continue(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"heartbeat 1")
    spool.close()
    with open(_tail_segment(tmp_path), "ab") as f:
        f.write(encode_record(b"heartbeat 2 torn")[:-3])
    reopened = Spool(tmp_path)
    assert reopened.depth == 1
    reopened.append(b"heartbeat 3")
    assert [r.payload for r in reopened.read(10)] == [b"heartbeat 1", b"heartbeat 3"]
    reopened.close()


def test_zero_filled_tail_is_not_taken_for_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"x")
    spool.close()
    with open(_tail_segment(tmp_path), "ab") as f:
        f.write(b"\0" * 4096)
    reopened = Spool(tmp_path)
    assert [r.payload for r in reopened.read(10)] == [b"x"]
    reopened.close()


def test_corrupt_record_in_an_older_segment_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=30)
    for i in range(6):
        spool.append(b"event-%d-padding-padding" % i)
    spool.close()
    first = sorted(tmp_path.glob("spool-*.log"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF
    first.write_bytes(bytes(data))
    reopened = Spool(tmp_path, segment_bytes=30)
    assert reopened.corrupt_records == 1
    payloads = [r.payload for r in reopened.read(100)]
    assert b"event-0-padding-padding" not in payloads
    assert b"event-5-padding-padding" in payloads
    reopened.close()


def test_second_process_cannot_open_the_same_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolLocked, match="in use"):
        Spool(tmp_path)
    spool.close()


class SpoolCrashMachine(RuleBasedStateMachine):
    """Random appends, drains and crashes (with torn tails) against a list model."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="spool-"))
        self.spool = Spool(self.directory, segment_bytes=64)
        self.model: list[bytes] = []

    @rule(payload=st.binary(max_size=40))
    def append(self, payload: bytes) -> None:
        self.spool.append(payload)
        self.model.append(payload)

    @rule(n=st.integers(1, 6))
    def drain(self, n: int) -> None:
        records = self.spool.read(n)
        assert [r.payload for r in records] == self.model[: len(records)]
        assert len(records) == min(n, len(self.model))
        if records:
            self.spool.commit(records[-1].end)
        del self.model[: len(records)]

    @rule(n=st.integers(1, 6))
    def read_then_crash_before_commit(self, n: int) -> None:
        records = self.spool.read(n)
        assert [r.payload for r in records] == self.model[: len(records)]
        self._reopen()

    @rule(garbage=st.binary(max_size=30), torn=st.binary(min_size=1, max_size=40), cut=st.integers(1, 100))
    def crash_with_torn_tail(self, garbage: bytes, torn: bytes, cut: int) -> None:
        self.spool.close()
        record = encode_record(torn)
        with open(_tail_segment(self.directory), "ab") as f:
            f.write(record[: max(0, len(record) - cut)] or garbage)
        self.spool = Spool(self.directory, segment_bytes=64)

    @rule()
    def crash(self) -> None:
        self._reopen()

    def _reopen(self) -> None:
        self.spool.close()
        self.spool = Spool(self.directory, segment_bytes=64)

    @invariant()
    def depth_matches(self) -> None:
        assert self.spool.depth == len(self.model)

    def teardown(self) -> None:
        remaining = [r.payload for r in self.spool.read(10_000)]
        assert remaining == self.model
        self.spool.close()
        shutil.rmtree(self.directory, ignore_errors=True)


TestSpoolCrashes = SpoolCrashMachine.TestCase
TestSpoolCrashes.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
