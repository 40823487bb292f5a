"""Fleet scale: how many simulated agents one backend keeps fully tracked on this machine.

For each step (1,000 / 5,000 / 10,000 devices; smaller with ``--quick``): fresh Mosquitto
and InfluxDB, ``tincoso backend`` (ingest and monitor in one process, shipped default
settings), then `bench.fleetsim` connects every device (own connection, will, birth) and
reports at the default intervals (heartbeat 30 s, snapshot 300 s). Measured over a steady
window: backend CPU and memory, ingest lag (a probe heartbeat's publish-to-queryable time)
and backlog (acknowledged by the broker but not yet in InfluxDB). Then state tracking:
every device online in the monitor's ``state``; a subset's connections are dropped and
exactly those must go offline, the rest stay online.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.localservices import LocalInflux
from bench import profiling
from bench.common import (
    REPO,
    Sampler,
    influx_count,
    influx_query,
    percentile,
    say,
    services,
    table,
    workdir,
    write_result,
)
from bench.messages import SimDevice, fleet, heartbeat
from hil_tests.faults.backend import BackendProcess, FleetDevice, write_registry

PROBE = "vn-bench-lagprobe"
DEFAULTS = {
    "mqtt": {"keepalive_s": 30, "reconnect_max_s": 30.0},
    "ingest": {"batch_ms": 200, "stats_interval_s": 10.0},
    "monitor": {"tick_s": 2.0, "gap_grace_s": 120.0, "stats_interval_s": 30.0},
    "alerts": {"backoff_s": 5.0, "backoff_max_s": 600.0},
}


class Sim:
    """The `bench.fleetsim` child process and its stdin/stdout protocol."""

    def __init__(self, port: int, devices: int, log: Path, extra: list[str] | None = None) -> None:
        command = [sys.executable, "-m", "bench.fleetsim", "--port", str(port), "--devices", str(devices)]
        command += extra or []
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )

    def answer(self, timeout: float = 300.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            raise RuntimeError(f"fleetsim gave no answer (exit code {self.proc.poll()})")
        result: dict[str, Any] = json.loads(box[0])
        return result

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.answer(60)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("quit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
        self._log.close()


def online_states(url: str, database: str) -> dict[str, bool]:
    """device -> latest ``online`` the monitor wrote."""
    series = influx_query(url, database, 'SELECT last("online") FROM "state" GROUP BY "device"')
    return {s["tags"]["device"]: bool(s["values"][0][1]) for s in series}


def lag_probe(
    port: int, url: str, database: str, samples: int, every_s: float, secure: Secure | None = None
) -> list[float]:
    """Publish-to-queryable seconds of ``samples`` probe heartbeats sent through the same broker."""
    sim = SimDevice(PROBE)
    client_id = PROBE if secure else f"bench-probe-{uuid.uuid4().hex[:6]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if secure is not None:
        client.tls_set(ca_certs=str(secure.ca))
        client.username_pw_set(PROBE, secure.passwords[PROBE])
    client.connect("127.0.0.1", port)
    client.loop_start()
    lags = []
    for _ in range(samples):
        topic, payload = sim.message("heartbeat", heartbeat(1.0))
        sent = time.monotonic()
        client.publish(topic, payload, qos=1)
        query = f'SELECT count("seq") FROM "heartbeat" WHERE "device" = \'{PROBE}\' AND "seq" = {sim.seq}'
        while time.monotonic() - sent < 60 and influx_count(url, database, query) == 0:
            time.sleep(0.02)
        lags.append(time.monotonic() - sent)
        if lags[-1] >= 60:
            break  # ingest is a minute behind: more probes would only say so again
        time.sleep(max(0.0, every_s - lags[-1]))
    client.disconnect()
    client.loop_stop()
    return lags


def stored_messages(url: str, database: str) -> int:
    """Heartbeat and audio points in InfluxDB."""
    series = influx_query(url, database, 'SELECT count("seq") FROM "heartbeat","audio"')
    return sum(int(s["values"][0][1]) for s in series if s.get("values"))


def wait_for(check: Any, timeout: float, every: float = 1.0) -> bool:
    """Poll ``check()`` until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return bool(check())


class Secure(NamedTuple):
    """The deployed broker's settings for one step: TLS, per-device passwords, ACLs."""

    device_port: int
    ca: Path
    passwords: dict[str, str]
    passwords_file: Path
    backend: dict[str, Any]


@contextlib.contextmanager
def secure_services(root: Path, names: list[str]) -> Iterator[tuple[Any, Any, Secure]]:
    """Mosquitto as `tincoso server` runs it (TLS, passwords, ACLs) and InfluxDB, under ``root``."""
    from backend.provision.acl import render_acl
    from backend.provision.broker import secure_mosquitto
    from backend.provision.passwd import PasswordFile
    from backend.provision.store import ProvisionStore

    store = ProvisionStore(root / "secrets")
    user, password = store.ensure_backend()
    passwords = {name: uuid.uuid4().hex for name in names}
    # One write for the whole fleet (provisioning devices one by one rewrites the files each time).
    passwd = PasswordFile(store.passwd_path)
    for name, secret in passwords.items():
        passwd.set(name, secret)
    passwd.save()
    store.acl_path.write_text(render_acl(names, [user]), encoding="utf-8")
    broker, device_port = secure_mosquitto(root, store)
    influx = LocalInflux(root)
    passwords_file = root / "passwords.json"
    passwords_file.write_text(json.dumps(passwords), encoding="utf-8")
    backend = {
        "url": f"mqtts://127.0.0.1:{broker.port}",
        "username": user,
        "password": password,
        "tls_ca": str(store.ca.cert_path),
    }
    try:
        broker.start()
        influx.start()
        yield broker, influx, Secure(device_port, store.ca.cert_path, passwords, passwords_file, backend)
    finally:
        for service in (influx, broker):
            with contextlib.suppress(Exception):
                service.stop()


def step(
    root: Path,
    devices: int,
    window_s: float,
    kill_share: float,
    profile: Path | None = None,
    *,
    secure: bool = False,
) -> dict[str, Any]:
    """One fleet size: connect, steady window, kill a subset, check state tracking.

    With ``profile``, py-spy samples the backend over the steady window into that file. With
    ``secure``, the broker is the deployed one: devices over TLS with per-device passwords.
    """
    where = root / f"step-{devices}{'-tls' if secure else ''}"
    accounts = [d.id for d in fleet(devices)] + [PROBE]
    with contextlib.ExitStack() as stack:
        tls: Secure | None = None
        if secure:
            broker, influx, tls = stack.enter_context(secure_services(where, accounts))
        else:
            broker, influx = stack.enter_context(services(where))
        registry = write_registry(
            where / "registry.yaml",
            [*fleet(devices), FleetDevice(PROBE, "speaker_cluster", "trang-xa", "Xóm 1")],
        )
        backend = BackendProcess(
            where / "backend",
            mqtt_port=broker.port,
            influx_url=influx.url,
            database="tincoso",
            registry_path=registry,
            sections={**DEFAULTS, "mqtt": {**DEFAULTS["mqtt"], **(tls.backend if tls else {})}},
        )
        backend.start(timeout=60)
        assert backend.process.pid is not None
        extra = ["--tls-ca", str(tls.ca), "--passwords", str(tls.passwords_file)] if tls else []
        sim = Sim(tls.device_port if tls else broker.port, devices, where / "fleetsim.log", extra)
        try:
            began = time.monotonic()
            ready = sim.answer(timeout=600)
            say(f"fleet {devices:,}: connected in {ready['connect_s']} s; steady window {window_s:.0f} s")
            sampler = Sampler(
                {
                    "backend": backend.process.pid,
                    "mosquitto": broker.pid,
                    "influxd": influx.pid,
                    "fleetsim": sim.proc.pid,
                },
                interval_s=1.0,
            ).start()
            recorder = profiling.start(backend.process.pid, profile) if profile else None
            probes = max(3, int(window_s / 10))
            port = tls.device_port if tls else broker.port
            lags = lag_probe(port, influx.url, "tincoso", probes, window_s / probes, tls)
            usage = sampler.stop()
            profiling.stop(recorder)
            say(f"fleet {devices:,}: window done; checking state tracking")
            stats = sim.ask("stats")
            backlog = (
                stats["acked"] - stored_messages(influx.url, "tincoso") - devices
            )  # births are not stored
            names = {d.id for d in fleet(devices)}

            def all_online() -> bool:
                states = online_states(influx.url, "tincoso")
                return sum(states.get(n, False) for n in names) == devices

            tracked = wait_for(all_online, 60)
            states = online_states(influx.url, "tincoso")
            online_before = sum(states.get(n, False) for n in names)
            say(
                f"fleet {devices:,}: {online_before:,} online; dropping {max(1, int(devices * kill_share)):,}"
            )
            killed = set(sim.ask(f"kill {max(1, int(devices * kill_share))}")["killed"])
            kill_at = time.monotonic()

            def exact() -> bool:
                now = online_states(influx.url, "tincoso")
                return {n for n in names if not now.get(n, False)} == killed

            exact_ok = wait_for(exact, 60, every=0.5)
            offline_s = time.monotonic() - kill_at
            states = online_states(influx.url, "tincoso")
            offline = {n for n in names if not states.get(n, False)}
            result = {
                "devices": devices,
                "broker": "TLS, per-device passwords, ACLs" if tls else "plain",
                "connect_s": ready["connect_s"],
                "window_s": round(time.monotonic() - began, 1),
                "messages_acked": stats["acked"],
                "backlog_messages": max(0, backlog),
                "lag_p50_s": round(percentile(lags, 0.5), 3),
                "lag_max_s": round(max(lags), 3),
                "usage": usage,
                "all_online": tracked,
                "online_before_kill": online_before,
                "killed": len(killed),
                "offline_after_kill": len(offline),
                "wrongly_offline": len(offline - killed),
                "missed_offline": len(killed - offline),
                "state_exact": exact_ok,
                "offline_detected_s": round(offline_s, 1),
            }
        finally:
            sim.close()
            backend.stop()
    return result


def run(quick: bool) -> dict[str, Any]:
    """Measure and print; returns what goes into ``bench/results/fleet.json``."""
    steps = (200, 1000) if quick else (1000, 5000, 10000)
    window_s = 15.0 if quick else 75.0
    results: dict[str, Any] = {"steps": [], "window_s": window_s, "heartbeat_s": 30, "snapshot_s": 300}
    with workdir("fleet") as root:
        for devices in steps:
            results["steps"].append(step(root, devices, window_s, kill_share=0.1))
        # The deployed configuration (`tincoso server`): devices over TLS with per-device
        # passwords and ACLs, the backend on its TLS loopback listener; beside the plain run.
        results["tls_steps"] = [step(root, steps[-1], window_s, kill_share=0.1, secure=True)]
    rows = []
    for r in [*results["steps"], *results["tls_steps"]]:
        u = r["usage"]
        rows.append(
            [
                r["devices"],
                "TLS + passwords" if r.get("broker", "plain") != "plain" else "plain",
                u["backend"]["cpu_mean_pct"],
                u["backend"]["rss_max_mb"],
                u["mosquitto"]["cpu_mean_pct"],
                u["influxd"]["cpu_mean_pct"],
                f"{r['lag_p50_s']:.2f} / {r['lag_max_s']:.2f}",
                r["backlog_messages"],
                f"{r['online_before_kill']:,}/{r['devices']:,}",
                f"{r['offline_after_kill']:,} ({r['wrongly_offline']} wrong, {r['missed_offline']} missed)",
                "yes" if r["all_online"] and r["state_exact"] else "NO",
            ]
        )
    results["table"] = table(
        f"Fleet scale (heartbeat 30 s, snapshot 300 s; steady window {window_s:.0f} s; 10 % killed)",
        [
            "devices",
            "broker",
            "backend CPU % (1 core)",
            "backend RSS MiB",
            "mosquitto CPU %",
            "influxd CPU %",
            "ingest lag p50 / max s",
            "backlog msgs",
            "online",
            "offline after kill",
            "tracked exactly",
        ],
        rows,
    )
    write_result("fleet", quick, results)
    return results


def profile_main() -> None:
    """``python -m bench.fleet DEVICES``: one step with the backend under py-spy.

    Writes ``bench/results/fleet-profile.json`` (the step's figures and the profile summary).
    """
    devices = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with workdir("fleet-profile") as root:
        raw = root / "backend-profile.txt"
        result = step(root, devices, 75.0, kill_share=0.1, profile=raw)
        result["profile"] = profiling.summarise(raw, top=25)
    write_result("fleet-profile", False, result)
    print(json.dumps(result["profile"], indent=1, ensure_ascii=False))


def tls_main(devices: int) -> None:
    """``python -m bench.fleet tls DEVICES``: the plain and the deployed (TLS) broker, one size.

    Writes ``bench/results/fleet-tls.json``; the same step as `run` with the same window.
    """
    with workdir("fleet-tls") as root:
        plain = step(root, devices, 75.0, kill_share=0.1)
        secure = step(root, devices, 75.0, kill_share=0.1, secure=True)
    result = {"plain": plain, "tls": secure}
    for name, r in result.items():
        u = r["usage"]
        say(
            f"{name}: backend CPU {u['backend']['cpu_mean_pct']} %, RSS {u['backend']['rss_max_mb']} MiB, "
            f"mosquitto CPU {u['mosquitto']['cpu_mean_pct']} %, connect {r['connect_s']} s, "
            f"lag p50/max {r['lag_p50_s']}/{r['lag_max_s']} s, exact {r['all_online'] and r['state_exact']}"
        )
    ratio = result["tls"]["usage"]["mosquitto"]["cpu_mean_pct"] / max(
        0.01, result["plain"]["usage"]["mosquitto"]["cpu_mean_pct"]
    )
    say(f"mosquitto CPU, TLS against plain: {ratio:.2f}x")
    write_result("fleet-tls", False, result)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "tls":
        tls_main(int(sys.argv[2]))
    else:
        profile_main()
