"""Fuzz at scale: 100,000 generated messages (a quarter hostile) from 20 devices through a
real Mosquitto into the real ingest and InfluxDB (hil_tests/fuzz.py); every one accounted
for, and how much the ingest's process grew while it took them."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.common import say, services, table, workdir, write_result
from hil_tests.fuzz import run_fuzz


def run(quick: bool) -> dict[str, Any]:
    """Run the fuzz; print the accounts; write bench/results/fuzz.json."""
    count = 10_000 if quick else 100_000
    with workdir("fuzz") as root, services(root) as (broker, influx):
        influx.create_database("fuzz")
        say(f"fuzz: {count:,} messages")
        run_ = asyncio.run(
            run_fuzz(root / "ingest", broker, influx.url, "fuzz", count=count, devices=20, limit_s=600)
        )
    lost = len(set(run_["want_stored"]) - set(run_["stored"]))
    doubled = sum(1 for n in run_["stored"].values() if n > 1)
    result = {
        "messages": count,
        "messages_in": run_["messages_in"],
        "valid": len(run_["want_stored"]),
        "stored": len(run_["stored"]),
        "lost": lost,
        "stored_twice": doubled,
        "quarantined": dict(run_["quarantined"]),
        "quarantine_as_wanted": run_["quarantined"] == run_["want_quarantined"],
        "seconds": round(run_["seconds"], 1),
        "max_rss_growth_mb": round(run_["max_rss_growth_mb"], 1),
        "receipts_sent": run_["receipts_sent"],
    }
    table(
        "Fuzz: every message accounted for",
        [
            "messages",
            "valid",
            "stored",
            "lost",
            "stored twice",
            "quarantined",
            "as wanted",
            "RSS growth (MB)",
        ],
        [
            [
                count,
                result["valid"],
                result["stored"],
                lost,
                doubled,
                sum(result["quarantined"].values()),
                result["quarantine_as_wanted"],
                result["max_rss_growth_mb"],
            ]
        ],
    )
    write_result("fuzz", quick, result)
    return result
