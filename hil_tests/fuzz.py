"""Generated traffic, valid and hostile, from several devices, with the outcome each message
must have: ``stored`` (a reading InfluxDB must hold) or quarantined with a reason.

`generate` is deterministic for a seed. Valid messages carry strings a device controls
(event codes, programme names, result commands and values) with separators, quotes,
backslashes and control characters in them; hostile ones cover every way a payload or
topic can be wrong. Each valid reading has its own (device, kind, timestamp), so none may
overwrite another.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.config import config_from_dict
from backend.influx import InfluxClient, rows
from backend.ingest import IngestService
from backend.localservices import LocalMosquitto
from backend.registry import parse_registry
from protocols import payloads, topics
from protocols.examples import EXAMPLES

STORED = "stored"
HOSTILE_STRINGS = (
    "dead_air",
    "a b",
    "a,b=c",
    'quote"d',
    "back\\slash\\",
    "new\nline,device=x value=1",
    "tab\tcr\r",
    "tiếng Việt",
    "\u2028sep",
    "x" * 60,
)


class Generated(NamedTuple):
    """One message to publish and what must become of it."""

    topic: str
    payload: bytes
    outcome: str
    """``stored``, or the quarantine reason."""
    device: str
    kind: str
    seq: int | None


class _Device:
    def __init__(self, device: str, base_ts: int) -> None:
        self.device = device
        self.seq = 0
        self.base_ts = base_ts

    def envelope(self, kind: str) -> dict[str, Any]:
        self.seq += 1
        return {
            "v": 1,
            "kind": kind,
            "device": self.device,
            "ts": self.base_ts + self.seq * 1000,
            "clock_ok": True,
            "mono_ms": 1_000_000 + self.seq * 1000,
            "boot_id": "fuzz-boot",
            "seq": self.seq,
        }


def _valid(dev: _Device, rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(("heartbeat", "audio", "display", "event", "result"))
    msg = {k: v for k, v in EXAMPLES[kind].items() if k not in ("device", "ts", "mono_ms", "seq", "boot_id")}
    msg.update(dev.envelope(kind))
    if kind == "event":
        msg["code"] = rng.choice(HOSTILE_STRINGS)
        msg["programme"] = rng.choice(HOSTILE_STRINGS)
        msg["detail"] = rng.choice(HOSTILE_STRINGS)
    elif kind == "result":
        msg["cmd"] = rng.choice(HOSTILE_STRINGS)[:32]
        msg["measured"] = {
            rng.choice(("level", "freq_hz", "note", "flag")): rng.choice(
                (rng.uniform(-60, 0), rng.randint(-(2**53) + 1, 2**53 - 1), rng.choice(HOSTILE_STRINGS), True)
            )
        }
    elif kind == "heartbeat":
        msg["queue_depth"] = rng.choice((0, 1, 2**53 - 1))
    return payloads.validate(msg)


def _hostile(dev: _Device, rng: random.Random, root: str) -> Generated:
    """A message the backend must quarantine, and the reason it must give."""
    case = rng.randrange(12)
    base = dict(EXAMPLES["heartbeat"], device=dev.device, seq=0, boot_id="fuzz-boot")
    topic = topics.telemetry_topic(dev.device, "heartbeat", root)
    device = dev.device
    if case == 0:
        return Generated(topic, b"{not json", "bad_payload", device, "heartbeat", None)
    if case == 1:
        return Generated(
            topic, bytes(rng.randrange(256) for _ in range(40)) + b"\xff", "bad_payload", device, "-", None
        )
    if case == 2:
        return Generated(
            topic, json.dumps(dict(base, kind=["heartbeat"])).encode(), "bad_payload", device, "-", None
        )
    if case == 3:
        return Generated(
            topic, json.dumps(dict(base, queue_depth=2**70)).encode(), "bad_payload", device, "-", None
        )
    if case == 4:
        big = json.dumps(dict(base, platform="x" * 10_000)).encode()
        return Generated(topic, big, "bad_payload", device, "-", None)
    if case == 5:
        result = dict(EXAMPLES["result"], device=device, seq=0, boot_id="fuzz-boot", measured={"bad key": 1})
        return Generated(
            topics.result_topic(device, root), json.dumps(result).encode(), "bad_payload", device, "-", None
        )
    if case == 6:
        other = dict(base, device="vn-someone-else")
        return Generated(topic, json.dumps(other).encode(), "device_mismatch", device, "-", None)
    if case == 7:
        return Generated(
            topics.event_topic(device, root), json.dumps(base).encode(), "kind_mismatch", device, "-", None
        )
    if case == 8:
        ghost = f"vn-ghost-{rng.randrange(1000)}"
        msg = dict(base, device=ghost)
        return Generated(
            topics.telemetry_topic(ghost, "heartbeat", root),
            json.dumps(msg).encode(),
            "unknown_device",
            ghost,
            "-",
            None,
        )
    if case == 9:
        bad_topic = f"{root}/{device}/telemetry/bogus"
        return Generated(bad_topic, json.dumps(base).encode(), "bad_topic", device, "-", None)
    if case == 10 and dev.seq > 0:  # after a valid reading: the boot has an anchor
        wild = dict(base, mono_ms=2**53 - 1, clock_ok=False)
        return Generated(topic, json.dumps(wild).encode(), "bad_time", device, "-", None)
    return Generated(topic, b"", "bad_payload", device, "-", None)


def generate(
    count: int, devices: list[str], base_ts: int, *, root: str = topics.ROOT, seed: int = 12
) -> list[Generated]:
    """``count`` messages, about one in four hostile, spread over ``devices``."""
    rng = random.Random(seed)
    sims = [_Device(d, base_ts) for d in devices]
    out = []
    for _ in range(count):
        dev = rng.choice(sims)
        if rng.random() < 0.25:
            out.append(_hostile(dev, rng, root))
            continue
        msg = _valid(dev, rng)
        out.append(
            Generated(
                topics.topic_for(msg, root), payloads.encode(msg), STORED, dev.device, msg["kind"], msg["seq"]
            )
        )
    return out


def expected_outcomes(messages: list[Generated]) -> Counter[str]:
    """How many messages must end in each outcome."""
    return Counter(m.outcome for m in messages)


MEASUREMENTS = '"heartbeat","audio","display","event","result"'


def registry_yaml(devices: list[str]) -> str:
    """A one-commune registry holding ``devices``."""
    text = "district: Võ Nhai\ncommunes:\n"
    text += "  - {id: trang-xa, name: Tràng Xá, type: commune, radio_system: ip}\ndevices:\n"
    return text + "".join(
        f"  - {{id: {d}, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm {i}}}\n"
        for i, d in enumerate(devices)
    )


def publish_all(broker: LocalMosquitto, messages: list[Generated]) -> None:
    """Publish every message at QoS 1, in order, and wait for the broker's PUBACKs."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-{uuid.uuid4().hex[:8]}")
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for start in range(0, len(messages), 1000):
            infos = [client.publish(m.topic, m.payload, qos=1) for m in messages[start : start + 1000]]
            for info in infos:
                info.wait_for_publish(120)
    finally:
        client.disconnect()
        client.loop_stop()


async def account(influx: InfluxClient) -> tuple[Counter[tuple[str, int]], Counter[str]]:
    """Stored readings by (device, seq) and quarantined messages by reason."""
    stored: Counter[tuple[str, int]] = Counter()
    for row in rows(await influx.query(f'SELECT "seq", "device" FROM {MEASUREMENTS}')):
        stored[(row["device"], int(row["seq"]))] += 1
    quarantined: Counter[str] = Counter()
    series = await influx.query('SELECT count("payload_bytes") FROM "quarantine" GROUP BY "reason"')
    for one in series:
        reason = one.get("tags", {}).get("reason", "?")
        quarantined[reason] += sum(int(r["count"]) for r in rows([one]))
    return stored, quarantined


def _write_registry(workdir: Path, names: list[str]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "registry.yaml").write_text(registry_yaml(names), encoding="utf-8")


async def run_fuzz(
    workdir: Path,
    broker: LocalMosquitto,
    influx_url: str,
    database: str,
    *,
    count: int,
    devices: int = 5,
    limit_s: float = 60.0,
) -> dict[str, Any]:
    """Generate, publish and account; the accounts, what was wanted, and the ingest's state."""
    names = [f"vn-fuzz-loa-{i}" for i in range(devices)]
    root = f"f{uuid.uuid4().hex[:8]}/v1"
    base_ts = (int(time.time()) // 60 - 60) * 60_000
    messages = generate(count, names, base_ts, root=root)
    _write_registry(workdir, names)
    config = config_from_dict(
        {
            "mqtt": {
                "url": broker.url,
                "topic_root": root,
                "client_id": f"fuzz-ingest-{uuid.uuid4().hex[:6]}",
            },
            "influx": {"url": influx_url, "database": database, "timeout_s": 10.0},
            "ingest": {"stats_interval_s": 1.0, "process_name": "fuzz-ingest"},
            "spool": {"dir": str(workdir / "spool")},
            "registry": {"path": str(workdir / "registry.yaml")},
        }
    )
    want_stored = Counter((m.device, m.seq) for m in messages if m.outcome == STORED)
    want_quarantined = +Counter({k: v for k, v in expected_outcomes(messages).items() if k != STORED})
    service = IngestService(config, parse_registry(registry_yaml(names)))
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        await asyncio.wait_for(service.connected.wait(), 15)
        async with InfluxClient(influx_url, database) as influx:
            await asyncio.to_thread(publish_all, broker, messages)
            deadline = time.monotonic() + limit_s
            while True:
                stored, quarantined = await account(influx)
                total = sum(quarantined.values())
                if len(stored) >= len(want_stored) and total >= sum(want_quarantined.values()):
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return {
        "messages": count,
        "messages_in": service.stats.messages_in,
        "stored": stored,
        "quarantined": quarantined,
        "want_stored": want_stored,
        "want_quarantined": want_quarantined,
        "anchors": len(service.placer._anchors),
        "anchor_cap": service.placer.max_boots,
        "quarantine_keys": len(service._last_quarantine_ts),
        "receipts_sent": service.receipts.sent,
        "seconds": time.monotonic() - started,
        "max_rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
    }
