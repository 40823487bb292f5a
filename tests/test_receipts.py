"""Delivery receipts: a device forgets a reading only once the backend has made it durable.

Pure pieces (the portable matching logic, the protocol's receipt, the SQLite queue) and one
end-to-end run: a real agent process, a real Mosquitto SIGKILLed while it holds readings it
acknowledged, the real ingest and InfluxDB.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.core import receipts
from agent.queue import DurableQueue
from backend.influx import InfluxClient
from backend.localservices import LocalMosquitto
from hil_tests.audit import read_agent_queue
from protocols import payloads
from protocols.errors import InvalidPayload
from tests.integrity_support import ingest_config, registry, running_ingest, stored_seqs, wait_for
from tests.services_fixtures import InfluxDatabase

DEVICE = "vn-trangxa-loa-03"
STORED = '"heartbeat","event","result","audio","display"'
AGENT = Path(sys.executable).parent / "tincoso-agent"


# -- the portable logic ------------------------------------------------------------------


def test_ranges_are_merged_and_searched() -> None:
    ranges = receipts.merge([[5, 7], [1, 2], [3, 4], [10, 12], [11, 15]])
    assert ranges == [[1, 7], [10, 15]]
    covered = [s for s in range(18) if receipts.covers(ranges, s)]
    assert covered == [1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15]
    assert not receipts.covers([], 0)


def test_a_receipt_clears_only_its_own_boots_covered_entries() -> None:
    entries = [("a", "boot1", 1), ("b", "boot1", 2), ("c", "boot2", 2), ("d", "boot1", 9)]
    assert receipts.cleared(entries, "boot1", [[1, 2]]) == ["a", "b"]


def test_sent_entries_are_due_again_after_the_timeout() -> None:
    entries = [("never", None), ("recent", 9_000), ("old", 1_000)]
    assert receipts.due(entries, now_ms=10_000, timeout_ms=5_000) == ["never", "old"]


def test_receipt_for_another_device_or_of_another_kind_is_refused() -> None:
    msg = payloads.receipts(DEVICE, "b1", [1, 2, 3], [7], 1)[0]
    assert receipts.parse(payloads.encode(msg), DEVICE) == ("b1", [[1, 3], [7, 7]])
    with pytest.raises(InvalidPayload, match="not 'other'"):
        receipts.parse(payloads.encode(msg), "other")
    with pytest.raises(InvalidPayload, match="expected a receipt"):
        receipts.parse(payloads.encode(payloads.batch(DEVICE, [])), DEVICE)


def test_receipt_ranges_are_validated_and_split_under_the_message_limit() -> None:
    bad = dict(payloads.receipts(DEVICE, "b1", [1], [], 1)[0], stored=[[3, 2]])
    with pytest.raises(InvalidPayload, match=r"receipt.stored\[0\]"):
        payloads.validate(bad)
    many = payloads.receipts(DEVICE, "b1", list(range(0, 2000, 2)), list(range(1, 101, 2)), 1)
    assert len(many) == 6
    assert all(len(payloads.encode(m)) <= payloads.MAX_MESSAGE_BYTES for m in many)
    covered = receipts.merge([r for m in many for r in m["stored"] + m["rejected"]])
    assert [s for s in range(2000) if receipts.covers(covered, s)] == sorted(
        set(range(0, 2000, 2)) | set(range(1, 101, 2))
    )


# -- the SQLite queue --------------------------------------------------------------------


def _fill(queue: DurableQueue, n: int) -> list[int]:
    return [queue.append(lambda seq: ("t", "heartbeat", b"x%d" % seq)) for _ in range(n)]


def test_queue_keeps_acknowledged_readings_until_receipted(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "q.db", "boot1")
    _fill(queue, 5)
    rows = queue.peek_due(10, now=100.0, timeout_s=60)
    queue.mark_sent([r.id for r in rows[:4]], now=100.0)
    assert queue.depth == 5
    assert queue.in_flight == 4
    assert [r.payload for r in queue.peek_due(10, now=110.0, timeout_s=60)] == [b"x4"]
    assert queue.receipted("boot1", [[0, 1], [3, 3]]) == 3
    assert queue.receipted("boot2", [[0, 9]]) == 0
    assert queue.depth == 2
    # no receipt for seq 2 within the timeout: it is due again, oldest first
    assert [r.payload for r in queue.peek_due(10, now=161.0, timeout_s=60)] == [b"x2", b"x4"]
    queue.unsend_all()
    assert queue.in_flight == 0
    queue.close()


def test_queue_from_before_receipts_gains_the_columns_and_drops_old_rows_on_puback(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
        " kind TEXT NOT NULL, payload BLOB NOT NULL);"
        "INSERT INTO outbox (topic, kind, payload) VALUES ('t', 'heartbeat', x'00');"
    )
    db.commit()
    db.close()
    queue = DurableQueue(path, "boot1")
    _fill(queue, 1)
    rows = queue.peek_due(10, now=1.0, timeout_s=60)
    queue.mark_sent([r.id for r in rows], now=1.0)
    assert queue.depth == 1  # the old row had no seq: deleted on PUBACK; the new one waits
    assert queue.receipted("boot1", [[0, 0]]) == 1
    assert queue.depth == 0
    queue.close()


# -- end to end ---------------------------------------------------------------------------


def _agent_config(tmp_path: Path, port: int, receipts_on: bool) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[device]
id = "{DEVICE}"
kind = "speaker_cluster"
state_dir = "{tmp_path / "state"}"

[mqtt]
port = {port}
keepalive_s = 5
reconnect_min_s = 0.2
reconnect_max_s = 1.0
publish_timeout_s = 3
receipts = {"true" if receipts_on else "false"}
receipt_timeout_s = 10

[reporting]
heartbeat_s = 1
poll_s = 0.1
jitter = 0.0

[clock]
sync_check = "none"

[probes.system]
""",
        encoding="utf-8",
    )
    return path


def _start_agent(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen([str(AGENT), "--config", str(config)], stderr=log, env=env)


def _stop_agent(agent: subprocess.Popen[bytes]) -> None:
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
    try:
        agent.wait(timeout=20)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()


def _queued_seqs(queue_file: Path) -> list[tuple[int]]:
    with sqlite3.connect(f"file:{queue_file}?mode=ro", uri=True) as db:
        return db.execute("SELECT seq FROM outbox WHERE seq IS NOT NULL").fetchall()


def _birth_seqs(log: Path) -> set[int]:
    return {int(m) for m in re.findall(r"birth seq (\d+)", log.read_text(encoding="utf-8", errors="replace"))}


class ReadingsLost(AssertionError):
    """Readings the agent produced were never stored."""


async def _broker_crash_after_puback(
    tmp_path: Path,
    fresh_mosquitto: Callable[..., LocalMosquitto],
    influx_db: InfluxDatabase,
    receipts_on: bool,
) -> None:
    # The broker never saves on its own here: a SIGKILL loses everything it holds.
    broker = fresh_mosquitto(autosave_interval=3600)
    config = ingest_config(
        tmp_path / "ingest",
        mqtt_settings={"url": broker.url, "client_id": "ingest-crash"},
        influx_url=influx_db.base_url,
        database=influx_db.name,
        devices=[DEVICE],
    )
    devices = registry([DEVICE])
    async with running_ingest(config, devices):
        pass  # the ingest's persistent session now exists: the broker queues for it
    log_path = tmp_path / "agent.log"
    queue_file = tmp_path / "state" / "queue.sqlite3"
    agent = _start_agent(_agent_config(tmp_path, broker.port, receipts_on), log_path)
    try:
        await asyncio.sleep(4)  # readings acknowledged by the broker, held for the ingest
        broker.kill()
        broker.start()
        await asyncio.sleep(2)
        async with (
            running_ingest(config, devices),
            InfluxClient(influx_db.base_url, influx_db.name) as influx,
        ):

            async def drained() -> bool:
                mark = read_agent_queue(queue_file)
                return mark is not None and mark.depth == 0

            await wait_for(drained, limit_s=40, what="the agent's queue to empty")
            await asyncio.to_thread(_stop_agent, agent)
            mark = read_agent_queue(queue_file)
            assert mark is not None
            # Whatever is still queued is not lost: the agent sends it when it runs again.
            queued = {row[0] for row in _queued_seqs(queue_file)}
            produced = set(range(mark.next_seq)) - _birth_seqs(log_path) - queued

            # Every reading stored, or (the ingest connected, the agent stopped) nothing more
            # stored for 3 s: the broker holds nothing more, what is missing is lost.
            settled: dict[str, float] = {"count": -1, "since": time.monotonic()}

            async def all_stored_or_settled() -> tuple[list[int]] | None:
                seqs = (await stored_seqs(influx, STORED)).get(DEVICE, [])
                if set(seqs) >= produced:
                    return (seqs,)
                if len(seqs) != settled["count"]:
                    settled["count"], settled["since"] = len(seqs), time.monotonic()
                return (seqs,) if time.monotonic() - settled["since"] >= 3.0 else None

            (seqs,) = await wait_for(all_stored_or_settled, limit_s=20, what="storage to settle")
    finally:
        await asyncio.to_thread(_stop_agent, agent)
    assert len(produced) >= 6
    if produced - set(seqs):
        raise ReadingsLost(f"readings lost: {sorted(produced - set(seqs))}, stored {seqs}")
    assert len(seqs) == len(set(seqs)), "readings duplicated"


@pytest.mark.slow
async def test_broker_crash_after_puback_loses_no_reading(
    tmp_path: Path, fresh_mosquitto: Callable[..., LocalMosquitto], influx_db: InfluxDatabase
) -> None:
    await _broker_crash_after_puback(tmp_path, fresh_mosquitto, influx_db, receipts_on=True)


@pytest.mark.slow
@pytest.mark.xfail(
    reason="without receipts the agent forgets readings at PUBACK", strict=True, raises=ReadingsLost
)
async def test_without_receipts_a_broker_crash_loses_acknowledged_readings(
    tmp_path: Path, fresh_mosquitto: Callable[..., LocalMosquitto], influx_db: InfluxDatabase
) -> None:
    await _broker_crash_after_puback(tmp_path, fresh_mosquitto, influx_db, receipts_on=False)
