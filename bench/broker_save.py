"""What the broker's shorter save interval costs: Mosquitto's CPU with its store saved
every 10 s (``AUTOSAVE_INTERVAL_S``) against every 1,800 s (Mosquitto's usual), holding a
backlog for an offline persistent session while readings keep arriving.

Mosquitto writes its whole store at each save, so the cost grows with what it holds: the
backlog here (``backlog`` QoS 1 messages of a heartbeat's size, queued for an offline ingest
session) is what an outage of the ingest leaves in it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from backend.localservices import LocalMosquitto
from backend.localservices.mosquitto import AUTOSAVE_INTERVAL_S
from bench.common import say, table, workdir, write_result
from bench.messages import SimDevice, heartbeat


def _client(broker: LocalMosquitto, client_id: str, clean: bool) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _measure(autosave_s: int, backlog: int, window_s: float, rate: float) -> dict[str, Any]:
    with workdir(f"broker-save-{autosave_s}") as root:
        broker = LocalMosquitto(root, autosave_interval=autosave_s)
        broker.start()
        try:
            offline = _client(broker, "offline-ingest", clean=False)
            offline.subscribe("tincoso/v1/+/telemetry/+", qos=1)
            time.sleep(0.5)
            offline.disconnect()
            offline.loop_stop()
            device = SimDevice("vn-bench-loa-0001")
            publisher = _client(broker, f"pub-{uuid.uuid4().hex[:6]}", clean=True)
            infos = [
                publisher.publish(*device.message("heartbeat", heartbeat(1.0)), qos=1) for _ in range(backlog)
            ]
            for info in infos:
                info.wait_for_publish(60)
            assert broker.pid is not None
            proc = psutil.Process(broker.pid)
            before = proc.cpu_times()
            started = time.monotonic()
            sent = 0
            while time.monotonic() - started < window_s:
                publisher.publish(*device.message("heartbeat", heartbeat(1.0)), qos=1)
                sent += 1
                time.sleep(1 / rate)
            after = proc.cpu_times()
            elapsed = time.monotonic() - started
            publisher.disconnect()
            publisher.loop_stop()
            cpu = (after.user + after.system) - (before.user + before.system)
            store = broker.data_dir / "mosquitto.db"
            return {
                "autosave_s": autosave_s,
                "backlog": backlog,
                "window_s": round(elapsed, 1),
                "messages_in_window": sent,
                "cpu_s": round(cpu, 3),
                "cpu_percent_of_core": round(100 * cpu / elapsed, 2),
                "store_mb": round(store.stat().st_size / 2**20, 1) if store.exists() else None,
            }
        finally:
            broker.stop()


def run(quick: bool) -> dict[str, Any]:
    """Measure both intervals; print the table; write bench/results/broker_save.json."""
    backlog = 20_000 if quick else 100_000
    window_s = 30.0 if quick else 120.0
    rows = []
    for autosave_s in (1800, AUTOSAVE_INTERVAL_S):
        say(f"broker save every {autosave_s} s, backlog {backlog:,}")
        rows.append(_measure(autosave_s, backlog, window_s, rate=50.0))
    base, short = rows
    ratio = short["cpu_s"] / base["cpu_s"] if base["cpu_s"] else float("nan")
    table(
        "Broker persistence: CPU with a held backlog, readings arriving at 50/s",
        ["save every (s)", "backlog", "store (MB)", "CPU (% of a core)", "ratio to 1,800 s"],
        [[r["autosave_s"], r["backlog"], r["store_mb"], r["cpu_percent_of_core"], None] for r in rows[:1]]
        + [
            [
                short["autosave_s"],
                short["backlog"],
                short["store_mb"],
                short["cpu_percent_of_core"],
                round(ratio, 2),
            ]
        ],
    )
    result = {"runs": rows, "ratio": round(ratio, 2)}
    write_result("broker_save", quick, result)
    return result
