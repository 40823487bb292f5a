"""After a scenario: did every reading a device produced land in InfluxDB exactly once?

Three accounts are compared per device and boot:

* **produced**: the seqs the agent allocated, from its durable queue's high-water mark
  (``next_seq`` per boot, see :func:`read_agent_queue`), given as ranges;
* **captured**: what reached the broker, from an :class:`MqttCapture` subscribed during
  the whole scenario (batches unpacked into their items);
* **stored**: what InfluxDB holds (:func:`query_stored`), by device, ``boot_id`` and ``seq``.

A seq produced but never stored is *lost*: ``lost_in_backend`` if the broker saw it (ingest
lost it), ``lost_before_broker`` otherwise (the agent dropped it, e.g. its queue cap, which
its heartbeats account for in ``queue_dropped``). Seqs of kinds InfluxDB does not keep by
seq (``birth``) are left out once the capture shows their kind. A (boot, seq) stored at two
timestamps, or in two measurements, is *duplicated*. A message that first reached the broker
more than ``late_after_s`` after its device timestamp (clock_ok only) is *late*.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.influx import InfluxClient, rows

STORED_MEASUREMENTS = ("heartbeat", "audio", "display", "event", "result")
UNSTORED_KINDS = ("birth", "death", "command")

Key = tuple[str, int]  # (boot_id, seq)


class StoredPoint(NamedTuple):
    """One point InfluxDB holds for a device message."""

    device: str
    measurement: str
    boot_id: str | None
    seq: int
    time_ms: int
    time_ns: int = 0
    """The exact stored time (ingest stores nanoseconds: the ms, then the seq)."""


class CapturedMessage(NamedTuple):
    """One device message seen on the broker."""

    device: str
    kind: str
    boot_id: str | None
    seq: int | None
    ts: int | None
    clock_ok: bool | None
    received_at: float
    body: dict[str, Any]


class QueueMark(NamedTuple):
    """What an agent's durable queue says about the current boot."""

    boot_id: str
    next_seq: int
    dropped: int
    depth: int


# -- the three accounts -------------------------------------------------------------------


class MqttCapture:
    """Subscribe to every device topic and keep what arrives (a persistent QoS 1 session).

    The session survives broker restarts (Mosquitto persists it), so nothing published
    while the capture reconnects is missed.

    Args:
        host: broker host.
        port: broker port.
        root: topic root.
        client_id: the capture's MQTT client id (unique per broker).
    """

    def __init__(
        self, host: str, port: int, *, root: str = "tincoso/v1", client_id: str = "tincoso-hil-audit"
    ) -> None:
        self.host, self.port, self.root = host, port, root
        self.messages: list[CapturedMessage] = []
        self.invalid = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)

    def start(self, timeout: float = 10.0) -> MqttCapture:
        """Connect and subscribe; return once the subscription is active."""
        self._client.connect(self.host, self.port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"audit capture could not connect to {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[CapturedMessage]:
        """The messages captured so far."""
        with self._lock:
            return list(self.messages)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(f"{self.root}/+/#", qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        # Only now does the broker route messages to us: a scenario must not publish before.
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/receipt"):
            return  # the backend's delivery receipts, not device readings
        received = time.time()
        try:
            body = json.loads(message.payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.invalid += 1
            return
        items = body.get("items") if body.get("kind") == "batch" else [body]
        if not isinstance(items, list):
            self.invalid += 1
            return
        captured = [c for c in (_captured(item, received) for item in items) if c is not None]
        with self._lock:
            self.invalid += len(items) - len(captured)
            self.messages.extend(captured)


def _captured(item: Any, received: float) -> CapturedMessage | None:
    if not isinstance(item, dict) or not isinstance(item.get("device"), str):
        return None
    seq = item.get("seq")
    return CapturedMessage(
        device=item["device"],
        kind=str(item.get("kind")),
        boot_id=item.get("boot_id"),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        ts=item.get("ts") if isinstance(item.get("ts"), int) else None,
        clock_ok=item.get("clock_ok") if isinstance(item.get("clock_ok"), bool) else None,
        received_at=received,
        body=item,
    )


def read_agent_queue(db_path: str | Path) -> QueueMark | None:
    """The boot id, next seq, dropped count and depth in an agent's queue database.

    Read it before the agent starts on a new boot id: the queue resets ``next_seq`` then.
    Returns None when the file does not exist or has no boot yet.
    """
    path = Path(db_path)
    if not path.exists():
        return None
    # Read-only URI: the agent may hold the database open (WAL allows a concurrent reader).
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        depth = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    if not meta.get("boot_id"):
        return None
    return QueueMark(str(meta["boot_id"]), int(meta.get("next_seq", 0)), int(meta.get("dropped", 0)), depth)


def _stored_query(devices: Iterable[str] | None, measurements: Iterable[str]) -> str:
    sources = ",".join(f'"{m}"' for m in measurements)
    where = ""
    if devices is not None:
        names = list(devices)
        if not names:
            names = [""]
        where = " WHERE " + " OR ".join("\"device\" = '{}'".format(d.replace("'", "\\'")) for d in names)
    return f'SELECT "seq","boot_id" FROM {sources}{where} GROUP BY "device"'


def _points(series: list[dict[str, Any]]) -> list[StoredPoint]:
    points = []
    for s in series:
        measurement = s.get("name", "")
        for row in rows([s]):
            if row.get("seq") is None:
                continue
            ns = int(row["time"])
            point = StoredPoint(
                row["device"], measurement, row.get("boot_id"), int(row["seq"]), ns // 1_000_000, ns
            )
            points.append(point)
    return points


def query_stored(
    url: str,
    database: str,
    *,
    devices: Iterable[str] | None = None,
    measurements: Iterable[str] = STORED_MEASUREMENTS,
    username: str | None = None,
    password: str | None = None,
) -> list[StoredPoint]:
    """Every stored device point's (device, measurement, boot_id, seq, time) (blocking)."""
    params = {"db": database, "q": _stored_query(devices, measurements), "epoch": "ns"}
    auth = {"u": username, "p": password or ""} if username is not None else {}
    # InfluxDB 1.x reads u/p from the URL, not from the form body.
    response = httpx.post(url.rstrip("/") + "/query", data=params, params=auth, timeout=30)
    response.raise_for_status()
    series: list[dict[str, Any]] = []
    for result in response.json().get("results", []):
        if "error" in result:
            raise RuntimeError("InfluxQL error in audit query: {}".format(result["error"]))
        series.extend(result.get("series", []))
    return _points(series)


async def query_stored_async(
    client: InfluxClient,
    *,
    devices: Iterable[str] | None = None,
    measurements: Iterable[str] = STORED_MEASUREMENTS,
) -> list[StoredPoint]:
    """As :func:`query_stored`, through an open :class:`~backend.influx.InfluxClient`."""
    return _points(await client.query(_stored_query(devices, measurements), epoch="ns"))


# -- the comparison -----------------------------------------------------------------------


@dataclass
class DeviceAudit:
    """One device's account; the lists hold (boot_id, seq) pairs, sorted."""

    device: str
    produced: int = 0
    stored: int = 0
    lost_in_backend: list[Key] = field(default_factory=list)
    lost_before_broker: list[Key] = field(default_factory=list)
    duplicated: list[Key] = field(default_factory=list)
    late: list[Key] = field(default_factory=list)
    unexpected: list[Key] = field(default_factory=list)
    accounted_drops: int = 0

    @property
    def lost(self) -> list[Key]:
        """Every produced seq missing from InfluxDB."""
        return sorted(self.lost_in_backend + self.lost_before_broker)


@dataclass
class AuditResult:
    """Per-device accounts of one scenario."""

    devices: dict[str, DeviceAudit]

    def totals(self) -> dict[str, int]:
        """Sums over every device: produced, stored, lost, duplicated, late, unexpected."""
        out: Counter[str] = Counter()
        for d in self.devices.values():
            out.update(
                produced=d.produced,
                stored=d.stored,
                lost=len(d.lost),
                lost_in_backend=len(d.lost_in_backend),
                duplicated=len(d.duplicated),
                late=len(d.late),
                unexpected=len(d.unexpected),
            )
        return dict(out)

    @property
    def clean(self) -> bool:
        """Nothing lost, duplicated or unexpected on any device."""
        t = self.totals()
        return not (t.get("lost") or t.get("duplicated") or t.get("unexpected"))

    def __str__(self) -> str:
        head = (
            f"{'device':<28} {'produced':>8} {'stored':>8} {'lost':>6} {'(backend)':>9} "
            f"{'dup':>6} {'late':>6} {'extra':>6}"
        )
        lines = [head]
        for name in sorted(self.devices):
            d = self.devices[name]
            lines.append(
                f"{name:<28} {d.produced:>8} {d.stored:>8} {len(d.lost):>6} {len(d.lost_in_backend):>9} "
                f"{len(d.duplicated):>6} {len(d.late):>6} {len(d.unexpected):>6}"
            )
        return "\n".join(lines)


def compare(
    stored: Iterable[StoredPoint],
    *,
    produced: Mapping[str, Mapping[str, Iterable[int]]] | None = None,
    captured: Iterable[CapturedMessage] = (),
    late_after_s: float = 60.0,
) -> AuditResult:
    """Compare the accounts (see the module docstring).

    Args:
        stored: points from :func:`query_stored`.
        produced: device -> boot_id -> seqs the agent allocated (e.g. ``range(0, next_seq)``).
            Without it, what the broker saw is taken as produced.
        captured: messages from an :class:`MqttCapture`.
        late_after_s: how long after its device timestamp a message may first reach the broker.
    """
    by_device: dict[str, DeviceAudit] = {}

    def audit_of(device: str) -> DeviceAudit:
        return by_device.setdefault(device, DeviceAudit(device))

    seen, unstored, first_arrival, dropped = _captured_accounts(captured)
    expected: dict[str, set[Key]] = defaultdict(set)
    for device, boots in (produced or {}).items():
        audit_of(device)
        for boot, seqs in boots.items():
            expected[device].update((boot, s) for s in seqs)
    for device, keys in seen.items():
        audit_of(device)
        expected[device] |= keys
    times: dict[tuple[str, str, int], set[tuple[str, int]]] = defaultdict(set)
    for p in stored:
        audit_of(p.device)
        boot = p.boot_id if p.boot_id is not None else _boot_of(p.seq, expected[p.device])
        # Nanoseconds: a twin one digit apart below the millisecond is a second point too.
        times[(p.device, boot, p.seq)].add((p.measurement, p.time_ns or p.time_ms * 1_000_000))
    holds: dict[str, set[Key]] = defaultdict(set)
    for (device, boot, seq), placements in times.items():
        holds[device].add((boot, seq))
        if len(placements) > 1:
            audit_of(device).duplicated.append((boot, seq))
    for device, audit in by_device.items():
        wanted = expected[device] - unstored[device]
        audit.produced = len(wanted)
        audit.stored = len(holds[device])
        missing = wanted - holds[device]
        audit.lost_in_backend = sorted(missing & seen[device])
        audit.lost_before_broker = sorted(missing - seen[device])
        audit.unexpected = sorted(holds[device] - wanted) if produced is not None or seen[device] else []
        audit.duplicated.sort()
        audit.late = sorted(
            k for k, (ts, at) in first_arrival[device].items() if at - ts / 1000 > late_after_s
        )
        audit.accounted_drops = sum(dropped[device].values())
    return AuditResult(by_device)


def _boot_of(seq: int, expected: set[Key]) -> str:
    # `result` points carry no boot_id: place one in the only boot that produced its seq.
    boots = {boot for boot, s in expected if s == seq}
    return boots.pop() if len(boots) == 1 else ""


def _captured_accounts(
    captured: Iterable[CapturedMessage],
) -> tuple[
    dict[str, set[Key]],
    dict[str, set[Key]],
    dict[str, dict[Key, tuple[int, float]]],
    dict[str, dict[str, int]],
]:
    seen: dict[str, set[Key]] = defaultdict(set)
    unstored: dict[str, set[Key]] = defaultdict(set)
    first: dict[str, dict[Key, tuple[int, float]]] = defaultdict(dict)
    dropped: dict[str, dict[str, int]] = defaultdict(dict)
    for m in captured:
        if m.seq is None or m.boot_id is None:
            continue
        key = (m.boot_id, m.seq)
        if m.kind in UNSTORED_KINDS:
            unstored[m.device].add(key)
            continue
        seen[m.device].add(key)
        if m.clock_ok and m.ts is not None:
            earlier = first[m.device].get(key)
            if earlier is None or m.received_at < earlier[1]:
                first[m.device][key] = (m.ts, m.received_at)
        if m.kind == "heartbeat" and isinstance(m.body.get("queue_dropped"), int):
            boots = dropped[m.device]
            boots[m.boot_id] = max(boots.get(m.boot_id, 0), m.body["queue_dropped"])
    return seen, unstored, first, dropped


def audit(
    influx_url: str,
    database: str,
    *,
    produced: Mapping[str, Mapping[str, Iterable[int]]] | None = None,
    capture: MqttCapture | None = None,
    devices: Iterable[str] | None = None,
    late_after_s: float = 60.0,
    echo: bool = True,
) -> AuditResult:
    """Query InfluxDB, compare with the agent's and the broker's accounts, print the table.

    Args:
        influx_url: InfluxDB base URL.
        database: the database the backend writes.
        produced: device -> boot_id -> seqs the agents allocated (see :func:`read_agent_queue`).
        capture: the scenario's broker capture, if one ran.
        devices: restrict to these devices (default: every device in any account).
        late_after_s: see :func:`compare`.
        echo: print the per-device table.
    """
    names = list(devices) if devices is not None else None
    if names is None and produced is not None:
        names = sorted(produced)
    stored = query_stored(influx_url, database, devices=names)
    captured = capture.snapshot() if capture is not None else []
    if names is not None:
        wanted = set(names)
        captured = [m for m in captured if m.device in wanted]
    result = compare(stored, produced=produced, captured=captured, late_after_s=late_after_s)
    if echo:
        print(result)
    return result
