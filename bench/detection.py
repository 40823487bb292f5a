"""Detection latency: from fault injection to the alert e-mail received by an SMTP server.

Real agents against simulated hardware (hil_tests.rig), the real backend with e-mail
alerts to an aiosmtpd server, and faults injected at staggered moments, one per device:

* **power cut**: the device's 4G link freezes (`TcpProxy.cut(blackhole=True)`: no FIN, no
  RST, as when the pole loses mains and the modem with it) and the agent is SIGKILLed; the
  broker notices by the MQTT keepalive and publishes the Last Will;
* **dead air**: a scheduled bulletin goes silent (the receiver outputs its noise floor);
* **board dark**: an e-board switches off during its operating hours.

The full run uses the shipped defaults (agent keepalive and heartbeat 30 s, dead air after
15 s below -50 dBFS, ``board_dark`` after 120 s, monitor tick 2 s); ``--quick`` scales
them down (keepalive 5 s, dead air 3 s, board dark 10 s), so its figures only show the
path works, not the default latency.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from backend.alerts.messages import FAULT_TEXT
from backend.localservices import free_port
from bench.common import percentile, say, services, table, workdir, write_result
from hil_tests.faults.backend import bulletin_window_now
from hil_tests.rig import Rig, RigDevice

ANCHORS = {"ThingsBoard (inactivity timeout default)": 600.0, "Xibo (1.1 × 300 s collect interval)": 330.0}


class Inbox:
    """aiosmtpd on a free port; remembers (received time, subject) of every message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        import email
        import email.policy

        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append((time.time(), str(message["Subject"])))
        return "250 Message accepted"

    def first(self, device: str, fault: str, after: float) -> float | None:
        """Receive time of the first FAULT mail for ``device`` and ``fault`` after ``after``."""
        title = FAULT_TEXT[fault]["en"][0]
        with self.lock:
            for at, subject in self.received:
                if at >= after and "FAULT:" in subject and title in subject and f"({device})" in subject:
                    return at
        return None


def settings(quick: bool) -> dict[str, Any]:
    """Agent and backend settings: shipped defaults, or scaled down for ``--quick``."""
    if quick:
        return {
            "agent": {
                "reporting": {"heartbeat_s": 5.0, "snapshot_s": 30.0, "poll_s": 1.0, "jitter": 0.1},
                "mqtt": {"keepalive_s": 5, "reconnect_min_s": 0.5, "reconnect_max_s": 5.0},
            },
            "probes": {"audio": {"window_s": 0.5, "dead_air_enter_s": 3.0, "dead_air_clear_s": 2.0}},
            "rules": {"board_dark": {"for_s": 10.0}},
            # Five clusters of one commune cut within seconds are, for the shipped defaults, one
            # area notice (bench/areas.py measures that); here each device's own alert is timed.
            "monitor": {"tick_s": 1.0, "area_grouping": False},
            "threshold_s": {"power_cut": 7.5, "dead_air": 3.0, "board_dark": 10.0},
        }
    return {
        "agent": {
            "reporting": {"heartbeat_s": 30.0, "snapshot_s": 300.0, "poll_s": 5.0, "jitter": 0.1},
            "mqtt": {"keepalive_s": 30, "reconnect_min_s": 1.0, "reconnect_max_s": 60.0},
        },
        "probes": {"audio": {"window_s": 1.0, "dead_air_enter_s": 15.0, "dead_air_clear_s": 10.0}},
        "rules": {},
        "monitor": {"tick_s": 2.0, "area_grouping": False},  # each device's own alert (see above)
        "threshold_s": {"power_cut": 45.0, "dead_air": 15.0, "board_dark": 120.0},
    }


def run(quick: bool) -> dict[str, Any]:
    """Measure and print; returns what goes into ``bench/results/detection.json``."""
    cfg = settings(quick)
    counts = (
        {"power_cut": 3, "dead_air": 3, "board_dark": 2}
        if quick
        else {"power_cut": 5, "dead_air": 5, "board_dark": 3}
    )
    spread_s = 5.0 if quick else 20.0
    results: dict[str, Any] = {"mode": "scaled intervals" if quick else "default settings", "settings": cfg}
    inbox = Inbox()
    inbox.controller.start()
    try:
        with workdir("detection") as root, services(root) as (broker, influx):
            rig = Rig(
                root,
                broker_port=broker.port,
                proxied=True,
                transport="tcp",
                audio_rate=8000,
                sections=cfg["agent"],
                probe_overrides=cfg["probes"],
            )
            with rig:
                speakers = [
                    rig.add_speaker_cluster(commune="trang-xa")
                    for _ in range(counts["power_cut"] + counts["dead_air"])
                ]
                # The overrides are audio settings: a board has no audio probe.
                rig.probe_overrides = {}
                boards = [rig.add_board("eboard", commune="la-hien") for _ in range(counts["board_dark"])]
                backend = rig.backend(
                    influx.url,
                    "tincoso",
                    schedule=[bulletin_window_now(minutes=60)],
                    sections={
                        "mqtt": {"keepalive_s": 30, "reconnect_max_s": 30.0},
                        "ingest": {"batch_ms": 200, "stats_interval_s": 10.0},
                        "monitor": {**cfg["monitor"], "gap_grace_s": 120.0, "stats_interval_s": 30.0},
                        "rules": cfg["rules"],
                        "alerts": {
                            "smtp_host": "127.0.0.1",
                            "smtp_port": inbox.port,
                            "smtp_starttls": False,
                            "backoff_s": 5.0,
                        },
                    },
                )
                backend.write_config()
                _english_technicians(backend.registry_path)
                backend._own_registry = False  # keep the edited registry on start
                backend.start(timeout=60)
                rig.start()
                for device in speakers:
                    device.speaker.start_bulletin("ban-tin-chieu")
                warmup = 15.0 if quick else 45.0
                say(f"detection: {len(rig.devices)} agents up; warm-up {warmup:.0f} s")
                time.sleep(warmup)
                injections = _inject(speakers, boards, counts, spread_s)
                limit = max(cfg["threshold_s"].values()) * 2 + 60
                say(
                    f"detection: {len(injections)} faults injected; waiting up to {limit:.0f} s for the mails"
                )
                deadline = time.time() + limit
                while time.time() < deadline:
                    if all(inbox.first(d, _rule(f), at) for d, f, at in injections):
                        break
                    time.sleep(0.5)
            samples: dict[str, list[float]] = {f: [] for f in counts}
            missed: dict[str, int] = dict.fromkeys(counts, 0)
            for device_id, fault, at in injections:
                got = inbox.first(device_id, _rule(fault), at)
                if got is None:
                    missed[fault] += 1
                else:
                    samples[fault].append(round(got - at, 2))
    finally:
        inbox.controller.stop()
    results["samples_s"] = samples
    results["missed"] = missed
    rows = []
    targets = {
        "power_cut": "< 60 s p95",
        "dead_air": f"< {cfg['threshold_s']['dead_air'] + 5:g} s (threshold + 5 s)",
    }
    for fault, values in samples.items():
        rows.append(
            [
                fault.replace("_", " "),
                len(values),
                missed[fault],
                percentile(values, 0.5),
                percentile(values, 0.95),
                cfg["threshold_s"][fault],
                targets.get(fault, "-"),
            ]
        )
    for name, seconds in ANCHORS.items():
        rows.append([f"offline, {name}", "-", "-", seconds, seconds, "-", "-"])
    results["table"] = table(
        f"Detection latency, injection to e-mail received ({results['mode']})",
        ["fault", "runs", "missed", "p50 s", "p95 s", "configured delay s", "target"],
        rows,
    )
    write_result("detection", quick, results)
    return results


def _rule(fault: str) -> str:
    return "offline" if fault == "power_cut" else fault


def _inject(
    speakers: list[RigDevice], boards: list[RigDevice], counts: dict[str, int], spread_s: float
) -> list[tuple[str, str, float]]:
    """Fire every fault at a random moment within ``spread_s``; (device, fault, epoch s) each."""
    plan: list[tuple[float, RigDevice, str, Callable[[], None]]] = []
    cut, silent = speakers[: counts["power_cut"]], speakers[counts["power_cut"] :]
    for device in cut:
        plan.append((random.uniform(0, spread_s), device, "power_cut", _power_cut(device)))
    for device in silent:
        plan.append((random.uniform(0, spread_s), device, "dead_air", device.speaker.dead_air))
    for device in boards:
        plan.append((random.uniform(0, spread_s), device, "board_dark", device.board.goes_dark))
    plan.sort(key=lambda p: p[0])
    began = time.monotonic()
    done = []
    for offset, device, fault, action in plan:
        time.sleep(max(0.0, offset - (time.monotonic() - began)))
        at = time.time()
        action()
        done.append((device.id, fault, at))
    return done


def _power_cut(device: RigDevice) -> Callable[[], None]:
    def cut() -> None:
        # The link freezes with the device: the broker gets no FIN or RST and must notice
        # by the keepalive. (Killing the agent process too would let the proxy pass on the
        # socket's close, which a real power cut does not send.)
        assert device.proxy is not None
        device.proxy.cut(blackhole=True)

    return cut


def _english_technicians(path: Any) -> None:
    """Make every technician read English, so subjects can be matched on the English fault title."""
    import yaml

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for commune in doc["communes"]:
        for person in commune.get("technicians", []):
            person["language"] = "en"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
