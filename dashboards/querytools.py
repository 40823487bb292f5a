"""Panel queries of the generated dashboards, with Grafana's macros replaced as it would.

Used by the dashboard query tests and by the query benchmark (bench/queries.py), so both
run exactly the InfluxQL a Grafana panel sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from protocols.stored_data import SOUND_THRESHOLD_DBFS, SOUND_THRESHOLD_VARIABLE

HOUR_MS = 3_600_000


def regex_escape(value: str) -> str:
    """Escape a variable value as Grafana does for an InfluxDB regex."""
    return re.sub(r"([\\^$.|?*+()\[\]{}/-])", r"\\\1", value)


def substitute(
    query: str,
    values: Mapping[str, Sequence[str]],
    *,
    start_ms: int,
    end_ms: int,
    interval_ms: int = 60_000,
    rp: str = "raw",
    constants: Mapping[str, str] | None = None,
) -> str:
    """Replace ``$timeFilter``, ``${__from}``, ``${__to}``, ``$__interval[_ms]``, ``$rp`` and the variables.

    Args:
        query: A panel or variable query.
        values: Variable name -> the values it takes (all selected, as "All" does).
        start_ms: Start of the dashboard's time range.
        end_ms: Its end.
        interval_ms: What Grafana's ``$__interval`` is for this range and panel width.
        rp: The retention policy ``$rp`` names.
        constants: The dashboard's constant variables (`dashboards.build.constants_of`),
            substituted as they are; None: ``$sound_threshold`` at its default.

    Raises:
        ValueError: A macro or variable is left over.
    """
    query = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    query = query.replace("${__from}", str(start_ms)).replace("${__to}", str(end_ms))
    query = query.replace("$__interval_ms", str(interval_ms)).replace("$__interval", f"{interval_ms}ms")
    for name, options in values.items():
        query = query.replace(f"${name}", "(" + "|".join(regex_escape(v) for v in options) + ")")
    query = query.replace("$rp", rp)
    if constants is None:
        constants = {SOUND_THRESHOLD_VARIABLE: f"{SOUND_THRESHOLD_DBFS:g}"}
    for name, value in constants.items():
        query = query.replace(f"${name}", value)
    if "$" in re.sub(r"\$/", "", query):
        raise ValueError(f"unsubstituted macro in {query}")
    return query


def panel_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, InfluxQL) of every target of every panel."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["refId"], target["query"]
