"""Everything the demo runs, started in order and stopped in reverse, never left behind.

* Mosquitto in secure mode (TLS, a password and an ACL per device; the backend on its own
  listener with the backend identity) and InfluxDB, under the demo directory;
* the technicians' end: SMTP server, webhook receiver, SMS gateway and Telegram Bot API;
* ``tincoso backend`` (ingest and monitor) as a child process, with demo-speed settings;
* an audit capture on the backend listener (every message the broker routed);
* the fleet: per device the simulated hardware and a real ``tincoso-agent`` process whose
  ``[mqtt]`` section is the device's provisioned snippet.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from backend.localservices import LocalServices
from backend.provision.store import ProvisionStore
from hil_tests.audit import MqttCapture
from hil_tests.demo.district import District
from hil_tests.demo.receivers import HttpReceiver, SmsGatewayReceiver, SmtpServer, TelegramBotApi
from hil_tests.faults.backend import BackendProcess
from hil_tests.rig import Rig

DATABASE = "tincoso"
MARKER = ".tincoso-demo"
# Demo speed: a heartbeat every 5 s (offline after 3 missed = 15 s), fault delays of seconds.
AGENT_SECTIONS = {"reporting": {"heartbeat_s": 5.0, "snapshot_s": 10.0, "poll_s": 1.0, "jitter": 0.1}}
RULES = {
    # The silence before a bulletin is still on record in its first seconds (the demo's agents
    # clear dead air after 1 s): look 5 s into the window, then dead air must last 4 s.
    "dead_air": {"for_s": 4.0, "grace_s": 5.0},
    # The simulated amplifiers idle at 8 W and draw ~23 W playing a bulletin at -18 dBFS:
    # below 12 W while audio plays is a dead amplifier (0 W) or a cut speaker line (idle).
    "amp_idle": {"for_s": 3.0, "threshold": 12.0},
    "board_dark": {"for_s": 3.0},
    "board_frozen": {"for_s": 30.0},
}
AGENT_STOP_TIMEOUT_S = 5.0
TELEGRAM_TOKEN = "demo:tincoso"
PROGRAMME_LEVEL_DBFS = -18.0


class DemoError(RuntimeError):
    """The demo cannot run as asked (the message says why and what to do)."""


class SecureCapture(MqttCapture):
    """:class:`MqttCapture` over TLS with the backend identity (the secure broker's rule)."""

    def __init__(self, port: int, *, username: str, password: str, cafile: Path) -> None:
        super().__init__("127.0.0.1", port, client_id="tincoso-demo-audit")
        self._client.username_pw_set(username, password)
        self._client.tls_set(ca_certs=str(cafile))


def prepare_directory(root: Path) -> None:
    """Empty the demo directory (stopping services a kept run left), or refuse a foreign one.

    Raises:
        DemoError: ``root`` holds files but is not a demo directory.
    """
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise DemoError(f"{root} exists and is not a tincoso demo directory; choose another --dir")
        with contextlib.suppress(Exception):
            left = LocalServices.load(root)
            if left is not None:
                left.stop()
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("tincoso demo data: wiped by the next `tincoso demo`\n", encoding="utf-8")


class Stack:
    """The running parts of one demo; ``stop()`` is safe at any point and twice."""

    def __init__(self, root: Path, district: District) -> None:
        self.root = root
        self.district = district
        self.services: LocalServices | None = None
        self.credentials: dict[str, dict[str, Any]] = {}
        self.smtp: SmtpServer | None = None
        self.http: HttpReceiver | None = None
        self.sms: SmsGatewayReceiver | None = None
        self.telegram: TelegramBotApi | None = None
        self.backend: BackendProcess | None = None
        self.capture: SecureCapture | None = None
        self.rig: Rig | None = None

    # -- starting ------------------------------------------------------------------------

    def start_services(self) -> LocalServices:
        """Provision every device, then start Mosquitto (secure) and InfluxDB."""
        self.services = LocalServices(self.root, secure=True)
        store = self.secrets
        for device in self.district.devices:
            snippet = store.provision(device.id).snippet
            self.credentials[device.id] = tomllib.loads(snippet.read_text(encoding="utf-8"))["mqtt"]
        # Own session: a Ctrl-C in the terminal reaches the demo, which stops them in order.
        self.services.start(detach=True)
        return self.services

    @property
    def secrets(self) -> ProvisionStore:
        """The provisioning store of the secure broker."""
        assert self.services is not None
        assert self.services.secrets is not None
        return self.services.secrets

    def start_receivers(self) -> tuple[SmtpServer, HttpReceiver]:
        """The SMTP server, the webhook/website receiver, the SMS gateway and the Telegram Bot API."""
        self.smtp, self.http = SmtpServer(), HttpReceiver()
        self.sms, self.telegram = SmsGatewayReceiver(), TelegramBotApi(TELEGRAM_TOKEN)
        for receiver in (self.smtp, self.http, self.sms, self.telegram):
            receiver.start()
        return self.smtp, self.http

    def start_backend(self, registry: Path, *, dead_air_rule: bool) -> BackendProcess:
        """``tincoso backend`` on the backend listener, as the backend identity."""
        assert self.services is not None
        assert self.smtp is not None
        assert self.sms is not None
        assert self.telegram is not None
        user, password = self.secrets.ensure_backend()
        rules: dict[str, Any] = {k: dict(v) for k, v in RULES.items()}
        if not dead_air_rule:
            rules["dead_air"]["enabled"] = False
        sections: dict[str, Any] = {
            "mqtt": {
                "url": f"mqtts://127.0.0.1:{self.services.mosquitto.port}",
                "username": user,
                "password": password,
                "tls_ca": str(self.secrets.ca.cert_path),
            },
            "monitor": {
                "tick_s": 0.5,
                "gap_grace_s": 10.0,
                "stats_interval_s": 5.0,
                "default_heartbeat_s": AGENT_SECTIONS["reporting"]["heartbeat_s"],
                "website_check_s": 30.0,
            },
            "rules": rules,
            "alerts": {
                "smtp_host": "127.0.0.1",
                "smtp_port": self.smtp.port,
                "smtp_starttls": False,
                "smtp_from": "tincoso-demo@localhost",
                # The common brandname-SMS API shape (eSMS), answered by the local gateway.
                "sms_url": f"{self.sms.url}/sms",
                "sms_params": {"ApiKey": "demo", "SecretKey": "demo", "Brandname": "TINCOSO", "SmsType": "2"},
                "sms_ok_field": "CodeResult",
                "sms_ok_value": "100",
                "telegram_token": TELEGRAM_TOKEN,
                "telegram_base_url": self.telegram.url,
                "telegram_poll_s": 1.0,
                "backoff_s": 0.5,
                "backoff_max_s": 2.0,
            },
        }
        self.backend = BackendProcess(
            self.root / "backend",
            mqtt_port=self.services.mosquitto.port,
            influx_url=self.services.influxdb.url,
            database=DATABASE,
            registry_path=registry,
            sections=sections,
        )
        self.backend.start(wait=True, timeout=60.0)
        user, password = self.secrets.ensure_backend()
        self.capture = SecureCapture(
            self.services.mosquitto.port, username=user, password=password, cafile=self.secrets.ca.cert_path
        )
        self.capture.start()
        return self.backend

    def start_fleet(self, linked: set[str]) -> Rig:
        """Hardware and agent of every device; ``linked`` devices reach the broker through a
        link proxy (their 4G link, which the script cuts)."""
        assert self.services is not None
        assert self.services.device_port is not None
        rig = self.rig = Rig(
            self.root / "agents",
            broker_port=self.services.device_port,
            proxied=False,
            transport="tcp",
            audio_rate=8000,
            sections=AGENT_SECTIONS,
        )
        for device in self.district.devices:
            rig.proxied = device.id in linked
            # Host and port are the broker's, or the link proxy's that stands in for 4G.
            mqtt = {k: v for k, v in self.credentials[device.id].items() if k not in ("host", "port")}
            where: dict[str, Any] = {
                "commune": device.commune,
                "hamlet": device.hamlet,
                "sections": {"mqtt": mqtt},
            }
            if device.kind == "speaker_cluster":
                added = rig.add_speaker_cluster(device.id, **where)
                added.speaker.audio.prepare_programme(PROGRAMME_LEVEL_DBFS)
            else:
                rig.add_board(device.kind, device.id, **where)
        rig.proxied = False
        rig.start()
        return rig

    # -- stopping ------------------------------------------------------------------------

    def stop_agents(self) -> list[str]:
        """SIGTERM every agent at once (clean shutdown: queue flushed, death sent) and wait;
        return the agents that had to be killed because they did not exit in time."""
        if self.rig is None:
            return []
        codes = self.rig.stop_agents(AGENT_STOP_TIMEOUT_S)
        # A stuck agent gets SIGABRT (its threads' stacks go to agent.log), then SIGKILL.
        killed = (-signal.SIGABRT, -signal.SIGKILL)
        return [device for device, code in codes.items() if code in killed]

    def stop(self, *, keep_services: bool = False, report: Callable[[str], None] | None = None) -> None:
        """Stop everything still running, in reverse order; report (not raise) failures."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("agents", self.stop_agents),
            ("simulated hardware", lambda: self.rig.stop() if self.rig else None),
            ("audit capture", lambda: self.capture.stop() if self.capture else None),
            ("backend", lambda: self.backend.stop() if self.backend else None),
            ("SMTP server", lambda: self.smtp.stop() if self.smtp else None),
            ("webhook receiver", lambda: self.http.stop() if self.http else None),
            ("SMS gateway", lambda: self.sms.stop() if self.sms else None),
            ("Telegram Bot API", lambda: self.telegram.stop() if self.telegram else None),
        ]
        if not keep_services:
            steps.append(("Mosquitto and InfluxDB", lambda: self.services.stop() if self.services else None))
        for name, action in steps:
            try:
                action()
            except Exception as exc:  # one stuck part must not leave the others running
                if report is not None:
                    report(f"stopping the {name} failed: {exc}")

    def mqtt_urls(self) -> Mapping[str, str]:
        """Where devices and the backend reach the broker."""
        assert self.services is not None
        return {
            "devices": f"mqtts://127.0.0.1:{self.services.device_port}",
            "backend": self.services.mosquitto.url,
        }
