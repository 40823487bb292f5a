"""Ingest throughput: QoS 1 messages/s from Mosquitto into InfluxDB, end to end, nothing lost.

The broker is pre-loaded: each consumer's persistent session and subscription are made
first, the consumer goes away, the whole stream is published, then the consumer starts and
drains it, so the publisher is never the limit. Measured in one run, on the same stream:

* **bare subscriber** (the broker/client limit): a paho-mqtt client that only counts;
* **raw writes** (the database limit): the very points ingest writes, posted as line
  protocol in 5,000-point gzip batches by one client;
* **ingest × 1** and **ingest × 2** (``tincoso backend --role ingest``, shared subscription):
  from the session's CONNACK to the last point visible in InfluxDB, then a sequence audit
  (``hil_tests.audit``) that every message is stored exactly once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.config import MqttSettings
from backend.influx import InfluxClient
from backend.ingest.placement import ClockPlacer
from backend.ingest.points import message_lines
from backend.localservices.mosquitto import MAX_INFLIGHT_MESSAGES
from backend.registry import load_registry
from bench import profiling
from bench.common import (
    WORK_ROOT,
    Sampler,
    influx_query,
    log_time,
    say,
    services,
    table,
    workdir,
    write_result,
)
from bench.messages import SimDevice, fleet, stream
from hil_tests.audit import compare, query_stored
from hil_tests.faults.backend import BackendProcess, write_registry
from protocols import topics

DEVICES = 1000
RECEIVE_MAXIMUM = MqttSettings().receive_maximum  # the ingest default
PROTOCOL = MqttSettings().protocol  # the ingest default (4, MQTT 3.1.1)
# (processes, MQTT protocol, receive_maximum): the shipped defaults with 1 and 2 processes,
# then MQTT 5 (the default before 2026-11-26) and a wider MQTT 5 window, to show what each costs.
# With 3.1.1 the window is the broker's max_inflight_messages (backend.localservices), the same.
VARIANTS = (
    (1, PROTOCOL, MAX_INFLIGHT_MESSAGES),
    (2, PROTOCOL, MAX_INFLIGHT_MESSAGES),
    (1, 5, RECEIVE_MAXIMUM),
    (2, 5, RECEIVE_MAXIMUM),
    (1, 5, 10_000),
)


def publish_all(port: int, messages: list[tuple[str, bytes]], timeout: float = 300.0) -> float:
    """Publish QoS 1 with a wide in-flight window; return messages/s until the last PUBACK."""
    done = threading.Event()
    acked = [0]

    def on_publish(*_args: Any) -> None:
        acked[0] += 1
        if acked[0] >= len(messages):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    started = time.monotonic()
    for n, (topic, payload) in enumerate(messages):
        # paho's packet ids are 16 bits and key its outgoing store: far fewer than 65,535
        # may wait at once, or a reused id silently replaces an unsent message.
        while n - acked[0] > 20_000:
            time.sleep(0.005)
        client.publish(topic, payload, qos=1)
    if not done.wait(timeout):
        raise RuntimeError(f"publisher: only {acked[0]} of {len(messages)} PUBACKs in {timeout:.0f} s")
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return len(messages) / elapsed


def _session_client(client_id: str) -> tuple[mqtt.Client, Properties | None]:
    """A persistent-session paho client speaking the ingest's default protocol."""
    if PROTOCOL == 4:
        return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False), None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return client, props


def _connect(client: mqtt.Client, port: int, props: Properties | None) -> None:
    if props is None:
        client.connect("127.0.0.1", port)
    else:
        client.connect("127.0.0.1", port, clean_start=False, properties=props)


def bare_subscriber(port: int, messages: list[tuple[str, bytes]]) -> dict[str, Any]:
    """The broker/client limit: a persistent paho session, speaking the ingest's default
    protocol, that drains the pre-loaded stream."""
    client_id = f"bench-bare-{uuid.uuid4().hex[:8]}"
    filters = [(f, 1) for f in topics.subscription_filters()]
    client, props = _session_client(client_id)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    _connect(client, port, props)
    client.loop_start()
    client.subscribe(filters)
    if not subscribed.wait(10):
        raise RuntimeError("bare subscriber: no SUBACK")
    client.disconnect()
    client.loop_stop()

    publish_rate = publish_all(port, messages)
    received = [0]
    done = threading.Event()
    connected_at = [0.0]

    def on_message(*_args: Any) -> None:
        received[0] += 1
        if received[0] >= len(messages):
            done.set()

    def on_connect(*_args: Any) -> None:
        connected_at[0] = time.monotonic()

    client, props = _session_client(client_id)
    client.on_message = on_message
    client.on_connect = on_connect
    _connect(client, port, props)
    client.loop_start()
    done.wait(300)
    finished = time.monotonic()
    client.disconnect()
    client.loop_stop()
    if received[0] < len(messages):
        raise RuntimeError(f"bare subscriber got {received[0]} of {len(messages)} messages")
    return {
        "messages": received[0],
        "rate": received[0] / (finished - connected_at[0]),
        "publish_rate": publish_rate,
    }


def ingest_lines(registry_path: Path, messages: list[tuple[str, bytes]]) -> list[str]:
    """The points ingest writes for the stream (same code path: `message_lines`)."""
    registry = load_registry(registry_path)
    placer = ClockPlacer()
    now_ms = int(time.time() * 1000)
    return [
        line
        for topic, payload in messages
        for line in message_lines(topic, payload, now_ms, registry=registry, placer=placer)
    ]


def raw_writes(url: str, lines: list[str], messages: int, batch: int = 5000) -> dict[str, Any]:
    """The database limit: the same points in ``batch``-point gzip batches from one client."""

    async def write() -> float:
        async with InfluxClient(url, "baseline", gzip_writes=True) as client:
            await client.create_database()
            started = time.monotonic()
            for start in range(0, len(lines), batch):
                await client.write(lines[start : start + batch], precision="ns")
            return time.monotonic() - started

    elapsed = asyncio.run(write())
    return {"points": len(lines), "points_rate": len(lines) / elapsed, "rate": messages / elapsed}


def _stored_points(url: str, database: str) -> int:
    series = influx_query(url, database, 'SELECT count("seq") FROM "heartbeat","audio"')
    return sum(int(s["values"][0][1]) for s in series if s.get("values"))


def run_ingest(
    root: Path,
    broker: Any,
    influx: Any,
    registry: Path,
    messages: list[tuple[str, bytes]],
    devices: list[SimDevice],
    processes: int,
    profile: Path | None = None,
    protocol: int = PROTOCOL,
    receive_maximum: int = RECEIVE_MAXIMUM,
) -> dict[str, Any]:
    """``processes`` ingest processes (shared subscription) drain the pre-loaded stream.

    With ``profile``, py-spy samples the first process into that file (a separate run: the
    sampling costs the process some speed).
    """
    database = f"ingest_{processes}_v{protocol}_rm{receive_maximum}" + ("_profiled" if profile else "")
    group = f"bench-{uuid.uuid4().hex[:6]}"
    backends = [
        BackendProcess(
            root / database,
            mqtt_port=broker.port,
            influx_url=influx.url,
            database=database,
            registry_path=registry,
            role="ingest",
            name=f"{database}-{n}",
            sections={
                # The shipped defaults (backend/examples/backend.toml), not the rig's test values.
                "mqtt": {
                    "shared_group": group,
                    "keepalive_s": 30,
                    "receive_maximum": receive_maximum,
                    "protocol": protocol,
                },
                "ingest": {"batch_ms": 200, "batch_points": 5000, "stats_interval_s": 10.0},
            },
        )
        for n in range(processes)
    ]
    for backend in backends:  # make the persistent sessions and their shared subscription
        backend.start(timeout=30)
    for backend in backends:
        backend.stop()
    publish_all(broker.port, messages)
    for backend in backends:
        backend.start(wait=False)
    deadline = time.monotonic() + 30
    while any(b.process.pid is None for b in backends) and time.monotonic() < deadline:
        time.sleep(0.01)
    pids = {f"ingest-{n}": b.process.pid or 0 for n, b in enumerate(backends)}
    sampler = Sampler({**pids, "influxd": influx.pid, "mosquitto": broker.pid}, interval_s=0.5).start()
    recorder = profiling.start(pids["ingest-0"], profile) if profile else None
    expected = len(messages)
    stored = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        stored = _stored_points(influx.url, database) if _connected(backends) else 0
        if stored >= expected:
            break
        time.sleep(0.1)
    finished = time.time()
    usage = sampler.stop()
    profiling.stop(recorder)
    # From the CONNACK: a stored session's messages flow from then on, before the SUBACK
    # (after which `event=mqtt_connected` is logged, up to one window later).
    starts = [log_time(b.process.log_text(since_start=True), r"event=mqtt_connack") for b in backends]
    started = min(s for s in starts if s is not None)
    for backend in backends:
        backend.stop()
    produced = {d.device: {d.boot_id: range(1, d.seq + 1)} for d in devices}
    audit = compare(query_stored(influx.url, database), produced=produced).totals()
    return {
        "processes": processes,
        "protocol": protocol,
        "receive_maximum": receive_maximum,
        "messages": expected,
        "stored": stored,
        "seconds": round(finished - started, 2),
        "rate": expected / (finished - started),
        "lost": audit.get("lost", 0),
        "duplicated": audit.get("duplicated", 0),
        "usage": usage,
    }


def _label(r: dict[str, Any]) -> str:
    label = f"tincoso ingest × {r['processes']}"
    if r["protocol"] != PROTOCOL:
        label += ", MQTT 5" if r["protocol"] == 5 else ", MQTT 3.1.1"
    if r["receive_maximum"] != RECEIVE_MAXIMUM:
        label += f", receive_maximum {r['receive_maximum']:,}"
    return label


def _cpu_us_per_message(r: dict[str, Any]) -> float:
    """Ingest CPU (all processes, start-up included) per message: the cost that decides the
    rate when the cores are busy, and steadier than the rate on a shared machine."""
    cpu_s = sum(v["cpu_s"] for k, v in r["usage"].items() if k.startswith("ingest"))
    return float(1e6 * cpu_s / r["messages"])


def _connected(backends: list[BackendProcess]) -> bool:
    return all("event=mqtt_connected" in b.process.log_text(since_start=True) for b in backends)


def run(quick: bool) -> dict[str, Any]:
    """Measure and print; returns what goes into ``bench/results/ingest.json``."""
    # The pre-loaded stream must fit in one offline session queue (MAX_QUEUED_MESSAGES, 100,000).
    count = 20_000 if quick else 90_000
    with workdir("ingest") as root, services(root) as (broker, influx):
        registry = write_registry(root / "registry.yaml", fleet(DEVICES))
        results: dict[str, Any] = {"messages": count, "devices": DEVICES}
        sims = [SimDevice(d.id) for d in fleet(DEVICES)]
        say(f"ingest: bare subscriber draining {count:,} pre-loaded QoS 1 messages")
        bare = bare_subscriber(broker.port, list(stream(sims, count)))
        results["bare_subscriber"] = bare
        say("ingest: raw line-protocol writes of the same points")
        msgs = list(stream(sims, count))
        lines = ingest_lines(registry, msgs)
        results["payload_bytes_mean"] = round(sum(len(p) for _, p in msgs) / len(msgs), 1)
        results["raw_writes"] = raw_writes(influx.url, lines, len(msgs))
        runs = []
        for processes, protocol, window in VARIANTS:
            sims = [SimDevice(d.id) for d in fleet(DEVICES)]
            msgs = list(stream(sims, count))
            say(f"ingest: {processes} process(es), receive_maximum {window}: {count:,} messages")
            runs.append(
                run_ingest(
                    root,
                    broker,
                    influx,
                    registry,
                    msgs,
                    sims,
                    processes,
                    protocol=protocol,
                    receive_maximum=window,
                )
            )
        results["ingest"] = runs
        if profiling.py_spy() is not None:
            sims = [SimDevice(d.id) for d in fleet(DEVICES)]
            msgs = list(stream(sims, count))
            say("ingest: one more single-process run under py-spy (profile only)")
            raw = WORK_ROOT / "ingest-profile.txt"
            profiled = run_ingest(root, broker, influx, registry, msgs, sims, 1, profile=raw)
            results["profile"] = {"rate_while_profiled": profiled["rate"], **profiling.summarise(raw, top=25)}
    lower = min(bare["rate"], results["raw_writes"]["rate"])
    results["lower_limit"] = lower
    rows = [
        ["bare paho subscriber (broker limit)", bare["rate"], 1.0, "-", "-", "-"],
        ["raw line protocol, 5,000/batch (DB limit)", results["raw_writes"]["rate"], 1.0, "-", "-", "-"],
    ]
    for r in runs:
        r["ratio_broker"] = r["rate"] / bare["rate"]
        r["ratio_db"] = r["rate"] / results["raw_writes"]["rate"]
        r["ratio_lower"] = r["rate"] / lower
        r["cpu_us_per_message"] = _cpu_us_per_message(r)
        rows.append(
            [
                _label(r),
                r["rate"],
                f"{r['ratio_broker']:.2f} / {r['ratio_db']:.2f}",
                f"{r['lost']} / {r['duplicated']}",
                " + ".join(
                    f"{v['cpu_mean_pct']:.0f}" for k, v in r["usage"].items() if k.startswith("ingest")
                ),
                f"{r['cpu_us_per_message']:.0f}",
            ]
        )
    results["table"] = table(
        f"Ingest throughput ({count:,} QoS 1 messages, {results['payload_bytes_mean']:.0f} B mean payload)",
        [
            "consumer",
            "messages/s",
            "ratio to broker / DB limit",
            "lost / duplicated",
            "ingest CPU %",
            "ingest CPU µs per message",
        ],
        rows,
    )
    if "profile" in results:
        prof = results["profile"]
        table(
            f"Where one ingest process spends its time (py-spy, {prof['samples']:,} samples)",
            ["function (inclusive)", "% samples", "function (self)", "% samples"],
            [[*a, *b] for a, b in zip(prof["inclusive"][:12], prof["self"][:12], strict=False)],
        )
    write_result("ingest", quick, results)
    return results
