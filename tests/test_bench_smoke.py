"""The benchmarks' moving parts work (correctness only: nothing here is timed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.localservices import LocalMosquitto
from bench.profiling import summarise
from dashboards.querytools import substitute
from protocols import payloads

REPO = Path(__file__).resolve().parent.parent


def test_fleetsim_devices_send_births_and_their_wills_fire_when_dropped(mosquitto: LocalMosquitto) -> None:
    prefix = f"vn-smoke{int(time.time() * 1000) % 100000}"
    seen: dict[str, dict[str, object]] = {}
    lock = threading.Lock()

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        msg = payloads.decode(message.payload)
        if not str(msg["device"]).startswith(prefix):
            return
        with lock:
            seen[f"{msg['device']}/{msg['kind']}"] = msg

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-watch")
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe("tincoso/v1/#", qos=1)
    watcher.loop_start()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.fleetsim",
            "--port",
            str(mosquitto.port),
            "--devices",
            "20",
            "--prefix",
            prefix,
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert sim.stdin is not None
        assert sim.stdout is not None
        assert json.loads(sim.stdout.readline())["ready"] == 20
        sim.stdin.write(b"kill 5\n")
        sim.stdin.flush()
        killed = json.loads(sim.stdout.readline())["killed"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                deaths = {k.split("/")[0] for k, m in seen.items() if m["kind"] == "death"}
                births = {k.split("/")[0] for k, m in seen.items() if m["kind"] == "birth"}
            if deaths == set(killed) and len(births) == 20:
                break
            time.sleep(0.1)
        assert len(births) == 20
        assert deaths == set(killed)
        assert len(killed) == 5
        with lock:
            assert all(seen[f"{d}/heartbeat"]["seq"] == 2 for d in births)  # birth is seq 1
    finally:
        if sim.stdin is not None:
            sim.stdin.close()
        sim.wait(10)
        if sim.stdout is not None:
            sim.stdout.close()
        watcher.loop_stop()
        watcher.disconnect()


def test_profile_summary_counts_inclusive_and_self_shares(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "thread;main (a.py:1);work (b.py:2) 3\nthread;main (a.py:1);wait (c.py:9) 1\n", encoding="utf-8"
    )
    summary = summarise(raw)
    assert summary["samples"] == 4
    assert dict(summary["inclusive"])["main (a.py)"] == 100.0
    assert dict(summary["self"]) == {"work (b.py)": 75.0, "wait (c.py)": 25.0}


def test_a_leftover_grafana_macro_is_an_error() -> None:
    query = 'SELECT last("online") FROM "state" WHERE $timeFilter AND "commune" =~ /^$commune$/'
    done = substitute(query, {"commune": ["trang-xa"]}, start_ms=0, end_ms=1000)
    assert "time >= 0ms and time <= 1000ms" in done
    assert "(trang\\-xa)" in done
    with pytest.raises(ValueError, match="unsubstituted"):
        substitute(query, {}, start_ms=0, end_ms=1000)


@pytest.mark.micropython
@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs MicroPython")
def test_micropython_heap_script_reports_allocations() -> None:
    done = subprocess.run(
        ["node", "tests/micropython/run.mjs", "--repo", str(REPO), "bench/micropython_heap.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after_imports"] > report["before_imports"] > 0
    assert report["per_heartbeat"] > 0
    assert report["heartbeat_bytes"] > 300


@pytest.mark.micropython
def test_mcu_heap_bench_runs_a_cycle_that_ends_with_the_ring_receipted() -> None:
    from bench.mcu_heap import measure

    report = measure()  # the script itself checks that the receipt emptied the flash ring
    assert report["after_agent"] > report["after_imports"] > report["before_imports"] > 0
    assert report["cycle_alloc"] > 0
    assert report["sent_bytes"] > 500


def test_area_bench_sends_one_notice_per_commune_and_district_not_per_device(tmp_path: Path) -> None:
    from bench.areas import district, outage

    registry = district(90)  # 6 devices in each of the 15 communes
    base = outage(registry, grouping=False, state_dir=str(tmp_path / "off"))
    grouped = outage(registry, grouping=True, state_dir=str(tmp_path / "on"))
    assert base["by_fault"] == {"offline": 90}
    assert grouped["by_fault"] == {"district_offline": 1, "area_offline": 15}
    assert grouped["open_alerts"] == base["open_alerts"] == 90
