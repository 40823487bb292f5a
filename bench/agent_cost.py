"""Agent cost: CPython agent RSS and CPU, MicroPython heap, and bytes on the wire per day.

* CPython: the real ``tincoso-agent`` (shipped defaults: heartbeat 30 s, snapshot 300 s,
  poll 5 s, 1 s audio windows at 16 kHz) against a simulated speaker cluster (audio,
  amplifier power meter, modem, system: every probe a cluster has), sampled with psutil
  over a steady window after a warm-up.
* MicroPython: `bench/micropython_heap.py` under ``tests/micropython/run.mjs`` (real
  MicroPython 1.27) reports ``gc.mem_alloc()`` around building and encoding messages.
* Wire bytes: the agent talks to the broker through a `TcpProxy` that counts bytes both
  ways (MQTT packets with their topics, PUBACKs, PINGs; not TCP/IP headers), over an idle
  window and a window with a bulletin playing; a day is 22 idle hours and 2 bulletin hours.
  A naive reporter (every field as one JSON object every 10 s, QoS 1) runs through its own
  proxy over the same windows.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import REPO, Sampler, say, services, table, workdir, write_result
from bench.messages import SimDevice, audio, heartbeat
from hil_tests.faults.proxy import TcpProxy
from hil_tests.rig import Rig

DEFAULT_SECTIONS = {
    "reporting": {"heartbeat_s": 30.0, "snapshot_s": 300.0, "poll_s": 5.0, "jitter": 0.1},
    "mqtt": {"keepalive_s": 30, "reconnect_min_s": 1.0, "reconnect_max_s": 60.0},
}
DEFAULT_PROBES = {
    "audio": {"window_s": 1.0, "dead_air_enter_s": 15.0, "dead_air_clear_s": 10.0},
    "power_meter": {"amp_idle_s": 30.0, "timeout_s": 1.0},
}
DAY_S = 86400
BULLETIN_HOURS = 2


class NaiveReporter:
    """Every field as one JSON object every ``period_s``, QoS 1, through its own proxy."""

    def __init__(self, proxy: TcpProxy, period_s: float = 10.0) -> None:
        self.proxy = proxy
        self.period_s = period_s
        self.sim = SimDevice("vn-bench-naive")
        self._stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"naive-{uuid.uuid4().hex[:6]}")
        self.playing = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.client.connect(self.proxy.host, self.proxy.port, keepalive=60)
        self.client.loop_start()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            fields = {**heartbeat(3600.0), **audio(self.playing)}
            fields.pop("probe_faults", None)
            self.sim.seq += 1
            doc = {"device": self.sim.device, "ts": int(time.time() * 1000), "seq": self.sim.seq, **fields}
            self.client.publish(f"naive/{self.sim.device}/telemetry", json.dumps(doc), qos=1)
            self._stop.wait(self.period_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def micropython_heap() -> dict[str, Any]:
    """Run `bench/micropython_heap.py` under real MicroPython; its JSON report."""
    runner = REPO / "tests" / "micropython" / "run.mjs"
    script = REPO / "bench" / "micropython_heap.py"
    done = subprocess.run(
        ["node", str(runner), "--repo", str(REPO), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    for row in done.stdout.splitlines():
        if row.startswith("{"):
            result: dict[str, Any] = json.loads(row)
            return result
    return {"error": (done.stderr or done.stdout)[-500:]}


def _window(proxy: TcpProxy, naive: TcpProxy, seconds: float) -> tuple[int, int]:
    up0, down0 = proxy.bytes_up + proxy.bytes_down, naive.bytes_up + naive.bytes_down
    time.sleep(seconds)
    return proxy.bytes_up + proxy.bytes_down - up0, naive.bytes_up + naive.bytes_down - down0


def run(quick: bool) -> dict[str, Any]:
    """Measure and print; returns what goes into ``bench/results/agent_cost.json``."""
    warmup_s, idle_s, bulletin_s = (10.0, 30.0, 20.0) if quick else (20.0, 300.0, 120.0)
    results: dict[str, Any] = {"warmup_s": warmup_s, "idle_window_s": idle_s, "bulletin_window_s": bulletin_s}
    say("agent cost: MicroPython heap")
    results["micropython"] = micropython_heap()
    with workdir("agent") as root, services(root, influx=False) as (broker, _):
        rig = Rig(
            root,
            broker_port=broker.port,
            proxied=True,
            sections=DEFAULT_SECTIONS,
            probe_overrides=DEFAULT_PROBES,
        )
        with rig:
            device = rig.add_speaker_cluster()
            naive_proxy = TcpProxy("127.0.0.1", broker.port).start()
            naive = NaiveReporter(naive_proxy)
            try:
                rig.start()
                naive.start()
                say(f"agent cost: warm-up {warmup_s:.0f} s, idle {idle_s:.0f} s, bulletin {bulletin_s:.0f} s")
                time.sleep(warmup_s)
                assert device.agent.pid is not None
                sampler = Sampler({"agent": device.agent.pid}, interval_s=1.0).start()
                idle = _window(device.proxy, naive_proxy, idle_s) if device.proxy else (0, 0)
                device.speaker.start_bulletin("ban-tin-chieu")
                naive.playing = True
                playing = _window(device.proxy, naive_proxy, bulletin_s) if device.proxy else (0, 0)
                usage = sampler.stop()["agent"]
            finally:
                naive.stop()
                naive_proxy.stop()
    per_day = (
        idle[0] / idle_s * (DAY_S - BULLETIN_HOURS * 3600) + playing[0] / bulletin_s * BULLETIN_HOURS * 3600
    )
    naive_day = (
        idle[1] / idle_s * (DAY_S - BULLETIN_HOURS * 3600) + playing[1] / bulletin_s * BULLETIN_HOURS * 3600
    )
    results["cpython"] = usage
    results["wire"] = {
        "idle_bytes": idle[0],
        "bulletin_bytes": playing[0],
        "per_day_mb": round(per_day / 1e6, 3),
        "naive_idle_bytes": idle[1],
        "naive_bulletin_bytes": playing[1],
        "naive_per_day_mb": round(naive_day / 1e6, 3),
        "ratio_to_naive": round(per_day / naive_day, 3) if naive_day else None,
    }
    mp = results["micropython"]
    rows = [
        ["CPython agent RSS (max)", f"{usage['rss_max_mb']:.1f} MiB", "≤ 40 MiB"],
        ["CPython agent CPU (mean, % of one core)", f"{usage['cpu_mean_pct']:.2f} %", "≤ 2 %"],
        ["MicroPython heap after imports", f"{mp.get('after_imports', '?')} B", "-"],
        ["MicroPython heap, peak while building + encoding", f"{mp.get('peak_build', '?')} B", "-"],
        ["wire bytes per day (agent, defaults)", f"{per_day / 1e6:.2f} MB", "≤ 1.5 MB"],
        ["wire bytes per day (naive full JSON every 10 s)", f"{naive_day / 1e6:.2f} MB", "-"],
        ["agent / naive", f"{per_day / naive_day:.2f}" if naive_day else "-", "-"],
    ]
    results["table"] = table(
        f"Agent cost (speaker cluster, all probes; {idle_s:.0f} s idle + {bulletin_s:.0f} s bulletin)",
        ["what", "measured", "target"],
        rows,
    )
    write_result("agent_cost", quick, results)
    return results
