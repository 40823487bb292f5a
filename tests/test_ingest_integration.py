"""Ingest end to end with a real Mosquitto and a real InfluxDB: nothing lost, nothing doubled.

Each test uses its own topic root and client ids, so tests sharing the session broker never
see each other's messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.config import config_from_dict
from backend.influx import InfluxClient, rows
from backend.ingest import IngestService
from backend.localservices import LocalInflux, LocalMosquitto
from backend.registry import parse_registry
from backend.spool import SpoolError
from protocols import payloads, topics
from protocols.examples import EXAMPLES
from tests.integrity_support import running_ingest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DEVICES = [f"vn-trangxa-loa-0{i}" for i in range(1, 6)]
REGISTRY_YAML = (
    "district: Võ Nhai\ncommunes:\n  - {id: trang-xa, name: Tràng Xá, type: commune, radio_system: ip}\n"
)
REGISTRY_YAML += "devices:\n" + "".join(
    f"  - {{id: {d}, kind: speaker_cluster, commune: trang-xa, hamlet: Xóm {i}}}\n"
    for i, d in enumerate(DEVICES)
)
# Recent enough to lie inside the raw retention policy the backend creates.
BASE_TS = (int(time.time()) // 60 - 60) * 60_000


def _audio(device: str, seq: int, **changes: Any) -> dict[str, Any]:
    msg = dict(
        EXAMPLES["audio"], device=device, seq=seq, ts=BASE_TS + seq * 1000, mono_ms=1_000_000 + seq * 1000
    )
    msg.update(changes)
    return payloads.validate(msg)


class Publisher:
    """A device-side QoS-1 publisher (paho, its own network thread)."""

    def __init__(self, broker: LocalMosquitto, root: str) -> None:
        self.root = root
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.max_queued_messages_set(0)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def raw(self, topic: str, payload: bytes) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1))

    def send(self, msg: dict[str, Any]) -> None:
        self.raw(topics.topic_for(msg, self.root), payloads.encode(msg))

    def flush(self, timeout: float = 20.0) -> None:
        for info in self.infos:
            info.wait_for_publish(timeout)
        self.infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


def _config(
    tmp_path: Path, broker: LocalMosquitto, influx_url: str, database: str, root: str, **ingest: Any
) -> dict[str, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "registry.yaml").write_text(REGISTRY_YAML, encoding="utf-8")
    return {
        "mqtt": {
            "url": broker.url,
            "client_id": f"ingest-{uuid.uuid4().hex[:8]}",
            "topic_root": root,
            "session_expiry_s": 300,
            "receive_maximum": 200,
        },
        "influx": {"url": influx_url, "database": database, "timeout_s": 2.0},
        "ingest": {"batch_ms": 50, "stats_interval_s": 0.5, "process_name": "test-ingest", **ingest},
        "spool": {"dir": str(tmp_path / "spool"), "drain_records": 5},
        "registry": {"path": str(tmp_path / "registry.yaml")},
    }


async def _wait_for(check: Callable[[], Any], limit_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last result {result!r}")
        await asyncio.sleep(0.2)


async def _seqs(influx: InfluxClient, measurement: str = "audio") -> dict[str, list[int]]:
    try:
        series = await influx.query(f'SELECT "seq", "device" FROM "{measurement}"')
    except Exception:
        return {}
    out: dict[str, list[int]] = {}
    for row in rows(series):
        out.setdefault(row["device"], []).append(row["seq"])
    return {d: sorted(s) for d, s in out.items()}


def _complete(seqs: dict[str, list[int]], expected: Mapping[str, Iterable[int]]) -> bool:
    return all(len(seqs.get(d, [])) >= len(list(s)) for d, s in expected.items())


def _assert_exactly_once(seqs: dict[str, list[int]], expected: Mapping[str, Iterable[int]]) -> None:
    for device, wanted in expected.items():
        assert seqs.get(device) == sorted(wanted), f"{device}: points do not match the published seqs"


# -- durability --------------------------------------------------------------------------


async def test_influx_outage_under_load_loses_nothing(
    tmp_path: Path, mosquitto: LocalMosquitto, fresh_influx: Callable[..., LocalInflux]
) -> None:
    influxd = fresh_influx()
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(_config(tmp_path, mosquitto, influxd.url, "tincoso", root))
    publisher = Publisher(mosquitto, root)
    # The "stop InfluxDB for a minute under load": readings keep coming (5 a
    # second per device) from before the outage until after InfluxDB is back.
    outage_s = 60.0
    per_device = int((outage_s + 4) / 0.2)
    expected = {d: range(per_device) for d in DEVICES}

    def publish_slowly() -> None:
        for seq in range(per_device):
            for device in DEVICES:
                publisher.send(_audio(device, seq))
            time.sleep(0.2)
        publisher.flush()

    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)) as service,
        InfluxClient(influxd.url, "tincoso") as influx,
    ):
        load = asyncio.create_task(asyncio.to_thread(publish_slowly))
        await asyncio.sleep(0.8)
        await asyncio.to_thread(influxd.stop)
        await asyncio.sleep(outage_s)
        spooled_during_outage = service.stats.spooled
        await asyncio.to_thread(influxd.start)
        await load
        seqs = await _wait_for(
            lambda: _complete_async(influx, expected), what="every reading after the outage"
        )
        assert service.spool_depth() == 0
    publisher.close()
    _assert_exactly_once(seqs, expected)
    assert spooled_during_outage > 0
    assert service.stats.drained >= spooled_during_outage


async def _complete_async(
    influx: InfluxClient, expected: Mapping[str, Iterable[int]]
) -> dict[str, list[int]] | None:
    seqs = await _seqs(influx)
    return seqs if _complete(seqs, expected) else None


async def test_disk_refusing_the_spool_leaves_messages_unacknowledged_for_redelivery(
    tmp_path: Path, mosquitto: LocalMosquitto, fresh_influx: Callable[..., LocalInflux]
) -> None:
    influxd = fresh_influx()
    await asyncio.to_thread(influxd.stop)
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(_config(tmp_path, mosquitto, influxd.url, "tincoso", root))
    publisher = Publisher(mosquitto, root)
    expected = {DEVICES[0]: range(30)}
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)) as service,
        InfluxClient(influxd.url, "tincoso") as influx,
    ):
        spool = service._spool
        assert spool is not None
        real_append = spool.append
        refusals: list[bytes] = []

        def disk_full(payload: bytes) -> None:
            if len(refusals) < 3:
                refusals.append(payload)
                raise SpoolError("[Errno 28] No space left on device")
            real_append(payload)

        spool.append = disk_full  # type: ignore[method-assign]
        for seq in range(30):
            publisher.send(_audio(DEVICES[0], seq))
        await asyncio.to_thread(publisher.flush)
        await _wait_for(lambda: _true(len(refusals) == 3 and spool.depth > 0), what="refusals, then spooling")
        await asyncio.to_thread(influxd.start)
        seqs = await _wait_for(lambda: _complete_async(influx, expected), what="every reading")
    publisher.close()
    _assert_exactly_once(seqs, expected)
    assert service.stats.spool_errors == 3
    assert service.stats.messages_in > 30, "refused batches came again from the broker"


async def test_a_full_spool_leaves_the_rest_at_the_broker_and_loses_nothing(
    tmp_path: Path, mosquitto: LocalMosquitto, fresh_influx: Callable[..., LocalInflux]
) -> None:
    """InfluxDB is away and the spool reaches its cap (`spool.max_mb`): the disk does not
    fill, the batches past the cap stay unacknowledged at the broker, and when InfluxDB is
    back every reading lands exactly once."""
    influxd = fresh_influx()
    await asyncio.to_thread(influxd.stop)
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    settings = _config(tmp_path, mosquitto, influxd.url, "tincoso", root)
    cap = 4096
    settings["spool"]["max_mb"] = cap / 2**20
    settings["mqtt"]["reconnect_max_s"] = 1.0
    config = config_from_dict(settings)
    publisher = Publisher(mosquitto, root)
    expected = {DEVICES[0]: range(60)}  # about 23 KB of points, more than five times the cap
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)) as service,
        InfluxClient(influxd.url, "tincoso") as influx,
    ):
        spool = service._spool
        assert spool is not None
        for seq in range(12):  # about 4.6 KB, spooled: the last batch passes the cap
            publisher.send(_audio(DEVICES[0], seq))
        await asyncio.to_thread(publisher.flush)
        await _wait_for(lambda: _true(spool.depth_bytes >= cap), what="the spool reaching its cap")
        for seq in range(12, 60):  # refused: they wait at the broker
            publisher.send(_audio(DEVICES[0], seq))
        await asyncio.to_thread(publisher.flush)
        await _wait_for(lambda: _true(service.stats.messages_in >= 90), what="refused batches coming again")
        held = spool.depth_bytes
        await asyncio.to_thread(influxd.start)
        seqs = await _wait_for(lambda: _complete_async(influx, expected), what="every reading")
    publisher.close()
    assert held < 2 * cap, f"{held} bytes spooled against a cap of {cap}: it went on spooling"
    assert service.stats.spool_errors >= 2
    _assert_exactly_once(seqs, expected)


async def _true(value: bool) -> bool:
    return value


def _start_backend(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend.cli",
                "backend",
                "--config",
                str(config_path),
                "--role",
                "ingest",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _write_toml(path: Path, config: dict[str, Any]) -> None:
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("protocol", [5, 4], ids=["mqtt5", "mqtt311"])
async def test_kill_9_of_the_backend_while_influx_is_down_loses_nothing(
    tmp_path: Path, mosquitto: LocalMosquitto, fresh_influx: Callable[..., LocalInflux], protocol: int
) -> None:
    influxd = fresh_influx()
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config_path = tmp_path / "backend.toml"
    config = _config(tmp_path, mosquitto, influxd.url, "tincoso", root)
    config["mqtt"]["protocol"] = protocol
    # Neither service checks credentials here; they are set to show they never reach the log.
    config["mqtt"].update(username="ingest", password="s3cret-mqtt-pw")
    config["influx"].update(username="ingest", password="s3cret-influx-pw")
    _write_toml(config_path, config)
    log_path = tmp_path / "backend.log"
    publisher = Publisher(mosquitto, root)
    per_device, expected = 60, {d: range(60) for d in DEVICES}
    backend = _start_backend(config_path, log_path)
    try:
        async with InfluxClient(influxd.url, "tincoso") as influx:
            await _wait_for(lambda: _log_has(log_path, "event=mqtt_connected"), what="backend connected")
            for seq in range(per_device):
                if seq == 20:  # InfluxDB goes away: the backend spools
                    await asyncio.to_thread(influxd.stop)
                if seq == 40:  # the backend dies mid-stream with a spool to drain
                    await _wait_for(lambda: _spool_has_data(tmp_path / "spool"), what="spooled data")
                    backend.send_signal(signal.SIGKILL)
                    backend.wait(10)
                for device in DEVICES:
                    publisher.send(_audio(device, seq))
                await asyncio.sleep(0.03)
            await asyncio.to_thread(publisher.flush)
            await asyncio.to_thread(influxd.start)
            backend = _start_backend(config_path, log_path)
            seqs = await _wait_for(
                lambda: _complete_async(influx, expected), what="every reading after kill -9"
            )
            await asyncio.sleep(0.5)  # late duplicates would show up now
            _assert_exactly_once(await _seqs(influx), expected)
        assert seqs
    finally:
        backend.send_signal(signal.SIGTERM)
        try:
            assert backend.wait(15) == 0, log_path.read_text()
        finally:
            if backend.poll() is None:
                backend.kill()
            publisher.close()
    log_text = log_path.read_text()
    assert "Traceback" not in log_text
    assert "s3cret" not in log_text
    assert "event=spool_drained" in log_text


async def _log_has(path: Path, text: str) -> bool:
    return await asyncio.to_thread(lambda: path.exists() and text in path.read_text(errors="replace"))


async def _spool_has_data(directory: Path) -> bool:
    return await asyncio.to_thread(lambda: any(p.stat().st_size > 0 for p in directory.glob("spool-*.log")))


# -- bad input, duplicates, clocks -------------------------------------------------------


async def test_malformed_storm_from_one_device_does_not_stop_the_others(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(_config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root))
    publisher = Publisher(mosquitto, root)
    storm_device, healthy = DEVICES[0], DEVICES[1:3]
    bad_payloads = [b"{not json", b"\xff\xfe\x00", json.dumps({"v": 1, "kind": "audio"}).encode()]
    caplog.set_level(logging.WARNING, logger="backend.ingest")
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)) as service,
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        for i in range(300):
            publisher.raw(f"{root}/{storm_device}/telemetry/audio", bad_payloads[i % 3])
            if i % 6 == 0:
                for device in healthy:
                    publisher.send(_audio(device, i // 6))
        await asyncio.to_thread(publisher.flush)
        expected = {d: range(50) for d in healthy}
        seqs = await _wait_for(lambda: _complete_async(influx, expected), what="healthy devices' readings")
        _assert_exactly_once(seqs, expected)
        counted = await _wait_for(
            lambda: _quarantined(influx, storm_device, 300), what="300 quarantine points"
        )
    publisher.close()
    assert counted == 300
    assert service.stats.invalid == 300
    assert service.stats.invalid_by[(storm_device, "bad_payload")] == 300
    storm_logs = [r for r in caplog.records if "message_quarantined" in r.getMessage()]
    assert len(storm_logs) == 1, "a storm is logged once per device per minute"


async def _quarantined(influx: InfluxClient, device: str, expected: int) -> int | None:
    series = await influx.query(f"SELECT count(payload_bytes) FROM quarantine WHERE device = '{device}'")
    found = rows(series)[0]["count"] if series else 0
    return found if found >= expected else None


async def test_qos1_duplicate_lands_as_one_point(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(_config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root))
    publisher = Publisher(mosquitto, root)
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)) as service,
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        publisher.send(_audio(DEVICES[0], 7))
        publisher.send(_audio(DEVICES[0], 7))  # the agent resends after a lost PUBACK
        publisher.send(_audio(DEVICES[0], 8))
        await asyncio.to_thread(publisher.flush)
        await _wait_for(lambda: _messages_in(service, 3), what="three deliveries")
        seqs = await _wait_for(lambda: _complete_async(influx, {DEVICES[0]: [7, 8]}), what="points")
    publisher.close()
    assert seqs[DEVICES[0]] == [7, 8]


async def test_the_tail_of_a_burst_is_written_when_the_stream_pauses_not_after_batch_ms(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    """Once messages stop coming while some wait for their acknowledgement, ingest writes
    them (`ingest.idle_flush_ms`) instead of holding them for ``batch_ms``: the last readings
    of a burst reach InfluxDB at once, and a broker whose own in-flight window is smaller
    than the ingest's (EMQX keeps 32 whatever the client asks) is not held up for
    ``batch_ms`` at every window. Here ``batch_ms`` is a minute, longer than the wait."""
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    settings = _config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root, batch_ms=60_000)
    config = config_from_dict(settings)
    publisher = Publisher(mosquitto, root)
    sent = 250  # not a multiple of the flush-at-half-window size (receive_maximum 200 / 2)
    want = {d: [s for s in range(sent) if s % len(DEVICES) == i] for i, d in enumerate(DEVICES)}
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)),
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        for seq in range(sent):
            publisher.send(_audio(DEVICES[seq % len(DEVICES)], seq))
        await asyncio.to_thread(publisher.flush)
        seqs = await _wait_for(lambda: _complete_async(influx, want), limit_s=30, what="every reading")
    publisher.close()
    assert seqs == want


async def _messages_in(service: IngestService, n: int) -> bool:
    await asyncio.sleep(0.3)  # let the batch holding them flush
    return service.stats.messages_in >= n


async def test_reading_from_a_device_with_a_wrong_clock_is_placed_at_receive_time(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(_config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root))
    publisher = Publisher(mosquitto, root)
    wrong_ts = 946_684_800_000  # the board booted without NTP and believes it is 2000-01-01
    msg = payloads.build(
        "heartbeat",
        payloads.envelope(DEVICES[0], wrong_ts, False, 3_600_000, "b00t", 1),
        {
            k: v
            for k, v in EXAMPLES["heartbeat"].items()
            if k not in payloads.envelope("x", 0, True, 0, "b", 0)
        },
    )
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)),
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        sent_ms = time.time() * 1000
        publisher.send(msg)
        await asyncio.to_thread(publisher.flush)
        found = await _wait_for(lambda: _heartbeats(influx), what="the heartbeat")
    publisher.close()
    [point] = found
    assert point["placed"] == "received"
    assert point["clock_ok"] is False
    assert abs(point["time"] - sent_ms) < 5_000, "placed near receive time, not at the device's 2000-01-01"


async def _heartbeats(influx: InfluxClient) -> list[dict[str, Any]]:
    return rows(await influx.query("SELECT * FROM heartbeat"))


async def test_unknown_device_is_quarantined_and_counted(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    config = config_from_dict(_config(tmp_path, mosquitto, influx_db.base_url, influx_db.name, root))
    publisher = Publisher(mosquitto, root)
    stranger = "vn-lahien-loa-99"
    async with (
        running_ingest(config, parse_registry(REGISTRY_YAML)) as service,
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        for seq in range(3):
            publisher.send(_audio(stranger, seq))
        publisher.send(_audio(DEVICES[0], 1))
        await asyncio.to_thread(publisher.flush)
        await _wait_for(lambda: _complete_async(influx, {DEVICES[0]: [1]}), what="the known device")
        quarantined = await _wait_for(lambda: _quarantined(influx, stranger, 3), what="quarantine")
        stats = await _wait_for(lambda: _stats_row(influx), what="backend_stats")
    publisher.close()
    assert quarantined == 3
    assert stranger not in await _seqs_after(influx_db)
    assert service.stats.unknown_devices == 3
    assert stats["unknown_devices"] == 3
    assert stats["process"] == "test-ingest"


async def _stats_row(influx: InfluxClient) -> dict[str, Any] | None:
    found = rows(await influx.query("SELECT * FROM backend_stats ORDER BY time DESC LIMIT 1"))
    return found[0] if found and found[0]["unknown_devices"] else None


async def _seqs_after(influx_db: Any) -> dict[str, list[int]]:
    async with InfluxClient(influx_db.base_url, influx_db.name) as influx:
        return await _seqs(influx)


async def test_shared_subscription_splits_the_load_without_duplicates(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: Any
) -> None:
    root = f"t{uuid.uuid4().hex[:8]}/v1"
    group = f"g{uuid.uuid4().hex[:6]}"
    registry = parse_registry(REGISTRY_YAML)
    first = _config(tmp_path / "a", mosquitto, influx_db.base_url, influx_db.name, root, process_name="a")
    second = _config(tmp_path / "b", mosquitto, influx_db.base_url, influx_db.name, root, process_name="b")
    first["mqtt"]["shared_group"] = second["mqtt"]["shared_group"] = group
    publisher = Publisher(mosquitto, root)
    expected = {d: range(40) for d in DEVICES}
    async with (
        running_ingest(config_from_dict(first), registry) as a,
        running_ingest(config_from_dict(second), registry) as b,
        InfluxClient(influx_db.base_url, influx_db.name) as influx,
    ):
        for seq in range(40):
            for device in DEVICES:
                publisher.send(_audio(device, seq))
        await asyncio.to_thread(publisher.flush)
        seqs = await _wait_for(lambda: _complete_async(influx, expected), what="all readings")
    publisher.close()
    _assert_exactly_once(seqs, expected)
    assert a.stats.messages_in > 0
    assert b.stats.messages_in > 0
    assert a.stats.messages_in + b.stats.messages_in == 200


def test_influx_reachable_check_helper_is_not_vacuous() -> None:
    # _complete must say "not yet" for a missing device, or the waits above prove nothing.
    assert not _complete({}, {"x": [1]})
    assert _complete({"x": [1]}, {"x": [1]})
    with pytest.raises(AssertionError):
        _assert_exactly_once({"x": [1, 1]}, {"x": [1]})
