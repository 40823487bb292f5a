"""``tincoso server doctor``: a running server checked from the operator's chair.

Each check answers ``ok``, ``warn`` or ``fail`` with what it saw and, unless ok, one line
saying what to do. The checks talk to the services the way their clients do: a TLS
handshake with each name devices use, verified like an agent verifies it, on each
address the device listener binds; an MQTT CONNACK on the backend listener; InfluxDB's
``/ping`` and the backend's own ``backend_stats``; free disk for the spool and the
database; the kernel's clock-sync state; the newest backup.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import json
import os
import re
import shutil
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.provision.store import ProvisionStore
from backend.server.install import CERT_RENEW_DAYS, certificate_hosts
from backend.server.render import INFLUX_USERS, device_tls_paths
from backend.server.settings import ServerConfig

__all__ = ["Check", "format_checks", "run_checks"]

BACKUP_MAX_AGE_H = 26
STATS_MAX_AGE_S = 120


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``ok``, ``warn`` or ``fail``, what was seen, and the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _tls(host: str, port: int, name: str, cafile: str | None, timeout: float = 5.0) -> str:
    context = ssl.create_default_context(cafile=cafile)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            return ""
    except ssl.SSLCertVerificationError as exc:
        return f"certificate refused: {exc.verify_message}"
    except OSError as exc:
        return f"unreachable: {exc}"


def check_device_listener(config: ServerConfig) -> list[Check]:
    """Each name devices use, on each address the listener binds, verified like an agent does."""
    cafile = None if config.cert else str(config.secrets_dir / "ca" / "ca.crt")
    addresses = [a for a in config.listen_addresses if a not in ("0.0.0.0", "::")] or ["127.0.0.1"]
    checks = []
    for address in addresses:
        for name in config.cert_hosts:
            error = _tls(address, config.device_port, name, cafile)
            where = f"{address}:{config.device_port} as {name}"
            if not error:
                checks.append(Check("device listener", "ok", f"{where}: TLS verified"))
            elif error.startswith("unreachable"):
                fix = "start the broker: systemctl start tincoso-mosquitto (journalctl -u tincoso-mosquitto)"
                checks.append(Check("device listener", "fail", f"{where}: {error}", fix))
            else:
                fix = "the certificate lacks this name: run `tincoso server install` to issue it again"
                checks.append(Check("device listener", "fail", f"{where}: {error}", fix))
    return checks


def check_certificate(config: ServerConfig) -> Check:
    """The device listener's certificate names every configured host and lasts 30 days more."""
    cert, _key = device_tls_paths(config)
    try:
        hosts, not_after = certificate_hosts(cert)
    except (OSError, ValueError) as exc:
        return Check("certificate", "fail", f"{cert}: {exc}", "run `tincoso server install`")
    missing = [h for h in config.cert_hosts if h.lower() not in {x.lower() for x in hosts}]
    days = (not_after - dt.datetime.now(dt.UTC)).days
    renew = "renew it (operator certificate: your ACME client; else `tincoso server install`)"
    if missing:
        return Check("certificate", "fail", f"{cert} lacks {', '.join(missing)}", renew)
    if days < CERT_RENEW_DAYS:
        return Check("certificate", "fail", f"{cert} expires {not_after:%Y-%m-%d} ({days} days)", renew)
    return Check("certificate", "ok", f"{cert}: {', '.join(hosts)}; valid {days} more days")


def check_backend_listener(config: ServerConfig) -> Check:
    """The backend's identity gets a CONNACK on the loopback listener."""
    user, password = ProvisionStore(config.secrets_dir).ensure_backend()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tincoso-doctor-{os.getpid()}")
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(config.secrets_dir / "ca" / "ca.crt"))
    answers: list[object] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
    fix = "start the broker: systemctl start tincoso-mosquitto (journalctl -u tincoso-mosquitto)"
    try:
        client.connect("127.0.0.1", config.backend_port, keepalive=10)
        deadline = time.monotonic() + 5
        while not answers and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    except OSError as exc:
        return Check("broker", "fail", f"backend listener 127.0.0.1:{config.backend_port}: {exc}", fix)
    finally:
        client.disconnect()
    if not answers:
        return Check("broker", "fail", f"backend listener 127.0.0.1:{config.backend_port}: no CONNACK", fix)
    reason = str(answers[0])
    if reason != "Success":
        return Check(
            "broker",
            "fail",
            f"backend listener refused the backend: {reason}",
            "run `tincoso server install`",
        )
    return Check("broker", "ok", f"backend listener 127.0.0.1:{config.backend_port}: CONNACK as {user}")


def _influx_query(config: ServerConfig, role: str, statement: str) -> dict[str, object]:
    passwords = json.loads((config.secrets_dir / "influx-users.json").read_text(encoding="utf-8"))
    response = httpx.post(
        f"http://127.0.0.1:{config.influx_port}/query",
        data={"db": config.database, "q": statement, "epoch": "s"},
        params={"u": INFLUX_USERS[role], "p": passwords[role]},
        timeout=10,
    )
    body: dict[str, object] = response.json()
    return body


def check_influx(config: ServerConfig) -> Check:
    """``/ping`` answers and the read-only user can query the database."""
    fix = "start the database: systemctl start tincoso-influxdb (journalctl -u tincoso-influxdb)"
    try:
        ping = httpx.get(f"http://127.0.0.1:{config.influx_port}/ping", timeout=5)
        body = _influx_query(config, "reader", "SHOW MEASUREMENTS LIMIT 1")
    except (httpx.HTTPError, ValueError, OSError) as exc:
        return Check("influxdb", "fail", f"127.0.0.1:{config.influx_port}: {exc}", fix)
    if ping.status_code != httpx.codes.NO_CONTENT or "error" in json.dumps(body):
        return Check("influxdb", "fail", f"ping {ping.status_code}, query {json.dumps(body)[:120]}", fix)
    return Check("influxdb", "ok", f"127.0.0.1:{config.influx_port} answers; {INFLUX_USERS['reader']} reads")


def check_backend(config: ServerConfig, role: str) -> Check:
    """The role's last ``backend_stats`` point is recent; ingest's spool depth and write latency."""
    unit = f"tincoso-{role}"
    statement = f"SELECT * FROM backend_stats WHERE \"role\" = '{role}' ORDER BY time DESC LIMIT 1"
    try:
        body = _influx_query(config, "reader", statement)
    except (httpx.HTTPError, ValueError, OSError) as exc:
        return Check(role, "fail", f"cannot read backend_stats: {exc}", "check tincoso-influxdb first")
    results = body.get("results")
    series = results[0].get("series", []) if isinstance(results, list) and results else []
    if not series:
        return Check(role, "fail", "no backend_stats yet", f"systemctl start {unit}; journalctl -u {unit}")
    row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
    age = time.time() - float(row["time"])
    if age > STATS_MAX_AGE_S:
        return Check(
            role,
            "fail",
            f"last backend_stats {age:.0f} s ago",
            f"systemctl restart {unit}; journalctl -u {unit}",
        )
    detail = f"backend_stats {age:.0f} s ago"
    if role == "ingest":
        depth, p95 = row.get("spool_depth") or 0, row.get("write_latency_p95_ms")
        shown = f"{float(p95):.0f}" if isinstance(p95, int | float) else "-"
        detail += f"; spool depth {depth}; write latency p95 {shown} ms"
        if depth:
            return Check(
                role, "warn", detail, "InfluxDB is slow or was away: the spool drains by itself; watch it"
            )
    return Check(role, "ok", detail)


def check_disk(config: ServerConfig) -> list[Check]:
    """Free space where the spool and the database write."""
    checks = []
    for what, path in (("spool", config.data / "spool" / "ingest"), ("database", config.data / "influxdb")):
        try:
            usage = shutil.disk_usage(path)
        except OSError as exc:
            checks.append(Check("disk", "fail", f"{what} {path}: {exc}", "run `tincoso server install`"))
            continue
        free_mb = usage.free // 2**20
        detail = f"{what} {path}: {free_mb} MiB free of {usage.total // 2**20} MiB"
        if free_mb < config.min_free_mb:
            fix = f"free space on {path} (want {config.min_free_mb} MiB: old backups, logs) or grow the disk"
            checks.append(Check("disk", "fail", detail, fix))
        else:
            checks.append(Check("disk", "ok", detail))
    return checks


def check_clock() -> Check:
    """The kernel says the clock is synchronised (adjtimex)."""
    name = ctypes.util.find_library("c")
    state = -1
    if name is not None:
        buf = ctypes.create_string_buffer(512)
        state = ctypes.CDLL(name, use_errno=True).adjtimex(buf)
    if state < 0:
        return Check("clock", "warn", "cannot ask the kernel", "check `timedatectl`")
    if state == 5:  # TIME_ERROR
        return Check(
            "clock", "warn", "not synchronised", "apt-get install systemd-timesyncd (or chrony); timedatectl"
        )
    return Check("clock", "ok", "synchronised")


def check_backups(config: ServerConfig) -> Check:
    """The newest backup is less than a day old."""
    root = config.paths.path("backups")
    backups = sorted(p for p in root.glob("*") if (p / "influx").is_dir()) if root.is_dir() else []
    fix = "systemctl enable --now tincoso-backup.timer; run one now: systemctl start tincoso-backup"
    if not backups:
        return Check("backup", "warn", f"no backup in {root} yet", fix)
    age_h = (time.time() - backups[-1].stat().st_mtime) / 3600
    if age_h > BACKUP_MAX_AGE_H:
        return Check("backup", "fail", f"newest {backups[-1].name} is {age_h:.0f} h old", fix)
    return Check("backup", "ok", f"newest {backups[-1]} ({age_h:.1f} h old)")


def run_checks(config: ServerConfig) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    checks: list[Check] = [check_certificate(config)]
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: check_backend_listener(config),
        lambda: check_device_listener(config),
        lambda: check_influx(config),
        lambda: check_backend(config, "ingest"),
        lambda: check_backend(config, "monitor"),
        lambda: check_disk(config),
        check_clock,
        lambda: check_backups(config),
    ]
    for step in steps:
        got = step()
        checks += got if isinstance(got, list) else [got]
    return checks


# Vietnamese (the default): the check names, verdicts and fix lines; details stay technical.
_STATUS_VI = {"ok": "ĐẠT", "warn": "CHÚ Ý", "fail": "LỖI"}
_NAMES_VI = {
    "certificate": "chứng chỉ",
    "broker": "broker",
    "device listener": "cổng thiết bị",
    "influxdb": "influxdb",
    "ingest": "ingest",
    "monitor": "giám sát",
    "disk": "ổ đĩa",
    "clock": "đồng hồ",
    "backup": "sao lưu",
}
_FIXES_VI = (
    (r"start the broker: (.*)", "khởi động broker: {0}"),
    (
        r"the certificate lacks this name: run (.*) to issue it again",
        "chứng chỉ thiếu tên này: chạy {0} để cấp lại",
    ),
    (
        r"renew it \(operator certificate: your ACME client; else (.*)\)",
        "gia hạn chứng chỉ (chứng chỉ riêng: qua ACME client; nếu không: {0})",
    ),
    (r"run (`tincoso server install`)", "chạy {0}"),
    (r"start the database: (.*)", "khởi động cơ sở dữ liệu: {0}"),
    (r"check tincoso-influxdb first", "kiểm tra tincoso-influxdb trước"),
    (r"(systemctl (?:start|restart) \S+; journalctl -u \S+)", "khởi động lại dịch vụ: {0}"),
    (
        r"InfluxDB is slow or was away: the spool drains by itself",
        "InfluxDB chậm hoặc vừa gián đoạn: hàng đợi spool tự xả, hãy theo dõi",
    ),
    (
        r"free space on (\S+) \(want (\d+) MiB: old backups, logs\) or grow the disk",
        "giải phóng dung lượng ở {0} (cần {1} MiB: bản sao lưu cũ, nhật ký) hoặc mở rộng ổ đĩa",
    ),
    (r"check `timedatectl`", "kiểm tra `timedatectl`"),
    (r"apt-get install (.*)", "đồng bộ đồng hồ: apt-get install {0}"),
    (
        r"systemctl enable --now tincoso-backup.timer; run one now: (.*)",
        "bật sao lưu hằng đêm: systemctl enable --now tincoso-backup.timer; sao lưu ngay: {0}",
    ),
)


def _fix_vi(fix: str) -> str:
    for pattern, template in _FIXES_VI:
        match = re.fullmatch(pattern, fix)
        if match:
            return template.format(*match.groups())
    return fix


def format_checks(checks: list[Check], lang: str = "vi") -> str:
    """One line per check, a fix line under each that is not ok, then the verdict.

    Args:
        checks: What `run_checks` found.
        lang: ``vi`` (default) or ``en``.
    """
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    lines = []
    if lang == "en":
        for check in checks:
            lines.append(f"{check.status.upper():<4} {check.name:<15} {check.detail}")
            if check.fix:
                lines.append(f"     fix: {check.fix}")
        verdict = f"{failed} problem(s) to fix" if failed else "healthy"
        lines.append(verdict + (f" ({warned} warning(s))" if warned else ""))
        return "\n".join(lines)
    for check in checks:
        lines.append(
            f"{_STATUS_VI[check.status]:<5} {_NAMES_VI.get(check.name, check.name):<15} {check.detail}"
        )
        if check.fix:
            lines.append(f"      cách sửa: {_fix_vi(check.fix)}")
    verdict = f"{failed} lỗi cần sửa" if failed else "máy chủ hoạt động tốt"
    lines.append(verdict + (f" ({warned} cảnh báo)" if warned else ""))
    return "\n".join(lines)
