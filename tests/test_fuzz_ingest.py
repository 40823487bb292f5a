"""Generated valid and hostile traffic from several devices through the real broker into
the real ingest and InfluxDB: every message accounted for (stored, or quarantined with the
reason it deserves), every valid reading stored once, the ingest's per-device state bounded.
A small count here; ``python -m bench --only fuzz`` pushes 100,000."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.localservices import LocalMosquitto
from hil_tests.fuzz import run_fuzz
from tests.services_fixtures import InfluxDatabase

pytestmark = pytest.mark.slow


async def test_every_generated_message_is_stored_or_quarantined_with_its_reason(
    tmp_path: Path, mosquitto: LocalMosquitto, influx_db: InfluxDatabase
) -> None:
    run = await run_fuzz(tmp_path, mosquitto, influx_db.base_url, influx_db.name, count=3000)
    assert run["messages_in"] == 3000
    assert set(run["stored"]) == set(run["want_stored"]), "valid readings lost or invented"
    assert max(run["stored"].values()) == 1, "a reading stored twice"
    assert run["quarantined"] == run["want_quarantined"]
    assert set(run["quarantined"]) >= {
        "bad_payload",
        "bad_topic",
        "unknown_device",
        "bad_time",
        "kind_mismatch",
    }
    assert run["anchors"] <= run["anchor_cap"]
    assert run["quarantine_keys"] <= 100_000
