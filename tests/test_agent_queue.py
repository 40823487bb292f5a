"""The durable queue: order, cap, seq across restarts and boots, and SIGKILL at random points."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.queue import DurableQueue


def _msg(seq: int, kind: str = "heartbeat") -> tuple[str, str, bytes]:
    return f"t/{kind}", kind, json.dumps({"seq": seq}).encode()


def test_messages_leave_in_order_only_when_acknowledged(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.db", "boot-a")
    seqs = [q.append(_msg) for _ in range(5)]
    assert seqs == [0, 1, 2, 3, 4]
    rows = q.peek(3)
    assert [json.loads(r.payload)["seq"] for r in rows] == [0, 1, 2]
    q.ack([rows[0].id, rows[1].id])
    assert q.depth == 3
    assert [json.loads(r.payload)["seq"] for r in q.peek(10)] == [2, 3, 4]
    q.close()


def test_seq_continues_after_agent_restart_and_restarts_on_new_boot(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.db", "boot-a")
    for _ in range(3):
        q.append(_msg)
    q.close()
    q = DurableQueue(tmp_path / "q.db", "boot-a")
    assert q.append(_msg) == 3
    assert q.depth == 4
    q.close()
    q = DurableQueue(tmp_path / "q.db", "boot-b")
    assert q.append(_msg) == 0
    assert q.depth == 5  # the old boot's messages are still sent
    q.close()


def test_cap_drops_oldest_and_counts(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.db", "boot-a", max_messages=10)
    for _ in range(25):
        q.append(_msg)
    assert q.depth == 10
    assert q.dropped == 15
    assert [json.loads(r.payload)["seq"] for r in q.peek(100)] == list(range(15, 25))
    q.close()
    assert DurableQueue(tmp_path / "q.db", "boot-a", max_messages=10).dropped == 15


def test_failed_build_stores_nothing_and_uses_no_seq(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.db", "boot-a")

    def broken(seq: int) -> tuple[str, str, bytes]:
        raise ValueError("audio.rms_dbfs must be a number")

    with pytest.raises(ValueError, match="rms_dbfs"):
        q.append(broken)
    assert q.depth == 0
    assert q.append(_msg) == 0
    q.close()


def test_bdseq_bumps_on_every_session_and_persists(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.db", "boot-a")
    assert [q.next_bdseq(), q.next_bdseq()] == [1, 2]
    q.close()
    assert DurableQueue(tmp_path / "q.db", "boot-b").next_bdseq() == 3


def test_redelivered_command_is_recognised_after_restart(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.db", "boot-a")
    assert not q.command_seen("c-1")
    assert q.command_seen("c-1")
    q.close()
    assert DurableQueue(tmp_path / "q.db", "boot-a").command_seen("c-1")


# A writer that appends and acknowledges as fast as it can, logging (fsynced) what the queue
# confirmed, until it is killed. The parent then checks the queue against the log.
_WORKER = r"""
import json, os, sys
from agent.queue import DurableQueue
path, log_path = sys.argv[1], sys.argv[2]
q = DurableQueue(path, "boot-a", max_messages=1_000_000)
log = open(log_path, "a")
def note(line):
    log.write(line + "\n"); log.flush(); os.fsync(log.fileno())
while True:
    seq = q.append(lambda s: ("t", "heartbeat", json.dumps({"seq": s}).encode()))
    note("appended %d" % seq)
    if seq % 3 == 0:
        rows = q.peek(2)
        q.ack([r.id for r in rows])
        note("acked " + " ".join(str(json.loads(r.payload)["seq"]) for r in rows))
"""


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing_committed(tmp_path: Path) -> None:
    db, log_path = tmp_path / "q.db", tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    rng = random.Random(1234)
    silently_acked: set[int] = set()
    for kills in range(1, 9):
        proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(db), str(log_path)], env=env)
        time.sleep(0.15 + rng.random() * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        appended: list[int] = []
        acked: set[int] = set()
        for line in log_path.read_text().splitlines():
            word, *nums = line.split()
            if word == "appended":
                appended.append(int(nums[0]))
            else:
                acked.update(int(n) for n in nums)
        q = DurableQueue(db, "boot-a", max_messages=1_000_000)  # opens a possibly torn WAL
        stored = [json.loads(r.payload)["seq"] for r in q.peek(1_000_000)]
        # seq never repeats and continues across the kills; a kill between COMMIT and the
        # log line hides at most one seq per kill from the log
        assert appended == sorted(set(appended))
        unlogged = set(range(q.next_seq)) - set(appended)
        assert len(unlogged) <= kills
        assert set(stored) - set(appended) <= unlogged
        assert q.next_seq > appended[-1]
        # everything confirmed and not acknowledged is still there, in order (but for the
        # two oldest: the kill may land between an ack's COMMIT and its log line)
        assert stored == sorted(stored)
        pending = sorted(set(appended) - acked - silently_acked)
        assert set(pending) - set(stored) <= set(pending[:2])
        silently_acked |= set(pending) - set(stored)
        q.close()
    assert len(appended) > 50


def test_a_full_queue_logs_which_seqs_it_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    q = DurableQueue(tmp_path / "q.db", "boot-a", max_messages=6)
    for _ in range(6):
        q.append(_msg)
    q.mark_sent([q.peek(1)[0].id], time.monotonic())  # seq 0: the broker acknowledged it
    q.close()
    q = DurableQueue(tmp_path / "q.db", "boot-a", max_messages=3)  # a smaller cap after an update
    with caplog.at_level("WARNING", logger="agent.queue"):
        q.append(_msg)
        q.append(_msg)
    assert q.dropped == 5
    assert [r.getMessage() for r in caplog.records] == [
        "queue full (3 messages): dropped the 4 oldest: seq 0-3 of boot boot-a"
        " (1 of them acknowledged by the broker)",
        "queue full (3 messages): dropped the 1 oldest: seq 4 of boot boot-a"
        " (0 of them acknowledged by the broker)",
    ]
    q.close()
