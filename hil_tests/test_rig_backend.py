"""BackendProcess with the rig: readings reach InfluxDB, the audit accounts for every seq."""

from __future__ import annotations

import time

from hil_tests.audit import AuditResult, MqttCapture
from hil_tests.rig import Rig
from tests.services_fixtures import InfluxDatabase


def _settled_audit(rig: Rig, db: InfluxDatabase, capture: MqttCapture, timeout: float = 20.0) -> AuditResult:
    """Audit until nothing is missing any more (ingest batches) or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        result = rig.audit(db.base_url, db.name, capture=capture, echo=False)
        if result.totals().get("lost", 0) == 0 or time.monotonic() > deadline:
            print(result)
            return result
        time.sleep(0.5)


def test_every_reading_of_a_clean_run_is_stored_once(
    rig: Rig, influx_db: InfluxDatabase, mqtt_capture: MqttCapture
) -> None:
    loa = rig.add_speaker_cluster(commune="trang-xa", hamlet="Nà Hốc")
    backend = rig.backend(influx_db.base_url, influx_db.name, role="ingest").start()
    rig.start()
    loa.speaker.start_bulletin("ban-tin-chieu")
    time.sleep(3)
    loa.agent.stop()
    result = _settled_audit(rig, influx_db, mqtt_capture)
    assert result.clean, f"{result}\n{backend.log_tail()}"
    assert result.devices[loa.id].produced > 3


def test_backend_crash_and_restart_keeps_ingesting(
    rig: Rig, influx_db: InfluxDatabase, mqtt_capture: MqttCapture
) -> None:
    loa = rig.add_speaker_cluster()
    backend = rig.backend(influx_db.base_url, influx_db.name, role="ingest").start()
    rig.start()
    time.sleep(1.5)
    backend.crash()
    assert not backend.running
    time.sleep(1.5)
    backend.start()
    time.sleep(1.5)
    loa.agent.stop()
    result = _settled_audit(rig, influx_db, mqtt_capture)
    assert result.devices[loa.id].lost == [], f"{result}\n{backend.log_tail()}"
