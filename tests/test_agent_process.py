"""The real agent process (``tincoso-agent --config``) against a real Mosquitto.

Broker outage, ``kill -9`` of the agent, and commands: every message arrives exactly once
or as a QoS-1 duplicate, in order, with its original timestamp, and ``seq`` has no holes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.localservices import LocalMosquitto
from protocols import payloads, topics

pytestmark = pytest.mark.slow

DEVICE = "vn-trangxa-loa-03"
OUTAGE_S = 60
AGENT = Path(sys.executable).parent / "tincoso-agent"


def write_config(tmp_path: Path, port: int, **queue: int) -> Path:
    queue_lines = "".join(f"{k} = {v}\n" for k, v in queue.items())
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

[reporting]
heartbeat_s = 1
poll_s = 0.2
jitter = 0.0

[queue]
{queue_lines}
[clock]
sync_check = "none"

[probes.system]
""",
        encoding="utf-8",
    )
    return path


class Subscriber:
    """A persistent-session subscriber to one device's topics that misses nothing."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="test-sub-" + uuid.uuid4().hex[:8],
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(f"tincoso/v1/{DEVICE}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def decoded(self) -> list[tuple[str, dict[str, Any]]]:
        # an empty payload is the test clearing a retained message
        # (the test's own commands, some malformed on purpose, are skipped)
        return [(t, payloads.decode(p)) for t, p in self.snapshot() if p and not t.endswith("/cmd")]

    def sequenced(self) -> list[dict[str, Any]]:
        """Every device message with a seq, batches unpacked, in arrival order."""
        out: list[dict[str, Any]] = []
        for _topic, msg in self.decoded():
            out.extend(msg["items"] if msg["kind"] == "batch" else [msg] if "seq" in msg else [])
        return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got {len(self.snapshot())} messages")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[[int], Subscriber]]:
    subs: list[Subscriber] = []

    def make(port: int) -> Subscriber:
        sub = Subscriber(port)
        subs.append(sub)
        return sub

    yield make
    for sub in subs:
        sub.close()


class AgentProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self._log = open(log, "ab")  # noqa: SIM115 -- closed in stop()/kill()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([str(AGENT), "--config", str(config)], stderr=self._log, env=env)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self._log.close()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    procs: list[AgentProcess] = []
    yield procs
    for agent in procs:
        if agent.proc.poll() is None:
            agent.kill9()


def check_stream(sequenced: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The invariants of one boot's stream; returns the first copy of each seq."""
    first: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    for msg in sequenced:
        seq = msg["seq"]
        if seq in first:
            # a QoS-1 duplicate is the same message: same kind, timestamp and content
            assert msg == first[seq], f"seq {seq} reused for different messages"
            continue
        first[seq] = msg
        if msg["kind"] != "birth":  # a birth is sent at connect, ahead of the backlog
            order.append(seq)
    assert order == sorted(order), "messages arrived out of order"
    assert sorted(first) == list(range(max(first) + 1)), "a seq is missing"
    assert len({m["boot_id"] for m in first.values()}) == 1
    return first


def test_broker_outage_loses_nothing_and_keeps_original_timestamps(
    tmp_path: Path, fresh_mosquitto: Callable[..., LocalMosquitto], subscriber_factory: Any, agents: Any
) -> None:
    broker = fresh_mosquitto()
    sub = subscriber_factory(broker.port)
    agent = AgentProcess(write_config(tmp_path, broker.port, batch_threshold=5), tmp_path / "agent.log")
    agents.append(agent)
    sub.wait_for(lambda: sum(m["kind"] == "heartbeat" for m in sub.sequenced()) >= 2, 15, "heartbeats")

    broker.stop()
    down_ms = int(time.time() * 1000)
    time.sleep(OUTAGE_S)  # the "unplug the broker for 60 s", in real time
    up_ms = int(time.time() * 1000)
    broker.start()

    def replayed() -> bool:
        hb = [m for m in sub.sequenced() if m["kind"] == "heartbeat"]
        return sum(down_ms + 1500 < m["ts"] < up_ms for m in hb) >= OUTAGE_S - 5 and any(
            m["ts"] > up_ms + 1000 for m in hb
        )

    sub.wait_for(replayed, 20, "the outage backlog")
    assert agent.terminate() == 0
    sub.wait_for(lambda: any(m.get("reason") == "clean" for _t, m in sub.decoded()), 5, "clean death")

    first = check_stream(sub.sequenced())
    during = [m for m in first.values() if m["kind"] == "heartbeat" and down_ms < m["ts"] < up_ms]
    # ~1 heartbeat a second was taken while the broker was down, stamped when taken
    assert len(during) >= OUTAGE_S - 5
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(during)]
    assert all(500 <= g <= 2500 for g in gaps), gaps
    assert max(m["queue_depth"] for m in during) >= 5
    # the backlog came back as batch messages (threshold 5)
    assert any(t.endswith("/batch") for t, _ in sub.snapshot())
    births = [m for m in first.values() if m["kind"] == "birth"]
    assert [b["bdseq"] for b in births] == sorted({b["bdseq"] for b in births})
    assert len(births) >= 2


def test_kill_minus_nine_mid_send_resends_only_unacknowledged_and_seq_continues(
    tmp_path: Path, fresh_mosquitto: Callable[..., LocalMosquitto], subscriber_factory: Any, agents: Any
) -> None:
    broker = fresh_mosquitto()
    sub = subscriber_factory(broker.port)
    config = write_config(tmp_path, broker.port)
    cmd_topic = topics.command_topic(DEVICE)
    for round_no in range(3):
        agent = AgentProcess(config, tmp_path / "agent.log")
        agents.append(agent)
        births = round_no + 1
        sub.wait_for(lambda n=births: sum(m["kind"] == "birth" for m in sub.sequenced()) >= n, 15, "birth")
        # a burst of work so that publishes are in flight when the kill lands
        for i in range(20):
            cmd = payloads.command(DEVICE, f"burst-{round_no}-{i}", "report_now", {}, int(time.time() * 1000))
            sub.client.publish(cmd_topic, payloads.encode(cmd), qos=1)
        time.sleep(0.2 + 0.3 * round_no)
        agent.kill9()
        # the broker publishes the Last Will: a retained death with this session's bdseq
        sub.wait_for(
            lambda n=births: sum(m.get("reason") == "lwt" for _t, m in sub.decoded()) >= n, 10, "Last Will"
        )
    agent = AgentProcess(config, tmp_path / "agent.log")
    agents.append(agent)
    sub.wait_for(lambda: sum(m["kind"] == "birth" for m in sub.sequenced()) >= 4, 15, "last birth")
    time.sleep(2.5)  # let the last agent drain what the killed ones left
    assert agent.terminate() == 0

    first = check_stream(sub.sequenced())
    results = [m for m in first.values() if m["kind"] == "result"]
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)), "a command was answered twice"
    assert len(results) >= 10
    deaths = [m for _t, m in sub.decoded() if m["kind"] == "death"]
    birth_msgs = [m for m in first.values() if m["kind"] == "birth"]
    assert [d["bdseq"] for d in deaths if d["reason"] == "lwt"] == [b["bdseq"] for b in birth_msgs][:3]


def test_commands_malformed_unknown_and_report_now(
    tmp_path: Path, mosquitto: LocalMosquitto, subscriber_factory: Any, agents: Any
) -> None:
    sub = subscriber_factory(mosquitto.port)
    # each test run gets its own device state, so the retained state of an earlier run
    # does not matter; clear it anyway to read only this run's messages
    sub.client.publish(topics.state_topic(DEVICE), b"", qos=1, retain=True)
    agent = AgentProcess(write_config(tmp_path, mosquitto.port), tmp_path / "agent.log")
    agents.append(agent)
    sub.wait_for(lambda: any(m["kind"] == "heartbeat" for m in sub.sequenced()), 15, "a heartbeat")
    cmd_topic = topics.command_topic(DEVICE)
    now = int(time.time() * 1000)
    sub.client.publish(cmd_topic, b'{"v": 1, "kind": "command", "id": "c-bad-1", "cmd": ', qos=1)
    sub.client.publish(
        cmd_topic,
        json.dumps(
            {
                "v": 1,
                "kind": "command",
                "device": DEVICE,
                "id": "c-unknown",
                "cmd": "dance",
                "args": {},
                "ts": now,
            }
        ),
        qos=1,
    )
    report = payloads.encode(payloads.command(DEVICE, "c-report", "report_now", {}, now))
    sub.client.publish(cmd_topic, report, qos=1)
    sub.client.publish(cmd_topic, report, qos=1)  # a redelivery must not run it twice

    def results() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for m in sub.sequenced():
            if m["kind"] == "result":
                out.setdefault(m["id"], []).append(m)
        return out

    sub.wait_for(lambda: {"unknown", "c-unknown", "c-report"} <= set(results()), 10, "three results")
    time.sleep(0.5)
    got = results()
    assert not got["unknown"][0]["ok"]
    assert "not valid JSON" in got["unknown"][0]["error"]
    assert not got["c-unknown"][0]["ok"]
    assert "command.cmd must be one of" in got["c-unknown"][0]["error"]
    assert got["c-unknown"][0]["cmd"] == "dance"
    assert len(got["c-report"]) == 1
    report_result = got["c-report"][0]
    assert report_result["ok"]
    hb_seq = report_result["measured"]["heartbeat_seq"]
    fresh = [m for m in sub.sequenced() if m["kind"] == "heartbeat" and m["seq"] == hb_seq]
    assert fresh
    assert fresh[0]["ts"] >= now

    assert agent.terminate() == 0
    sub.wait_for(lambda: any(m.get("reason") == "clean" for _t, m in sub.decoded()), 5, "clean death")
    assert (tmp_path / "state" / "clean_shutdown").exists()
