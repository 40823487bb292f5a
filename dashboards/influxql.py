"""InfluxQL targets for Grafana's InfluxDB data source, as grafana-foundation-sdk variants.

The SDK ships no InfluxDB query builder, so this module adds one: a raw InfluxQL target
``{"refId", "datasource", "query", "rawQuery": true, "resultFormat"}`` as Grafana stores it.
Registering the variant lets ``Dashboard.from_json`` read our targets back as
`InfluxQLQuery` (the round-trip check in the tests relies on it).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

DATASOURCE_TYPE = "influxdb"
DATASOURCE_UID = "tincoso-influxdb"
DATASOURCE = dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

ResultFormat = Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel."""

    def __init__(
        self, query: str = "", ref_id: str = "A", result_format: ResultFormat = "time_series"
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it in a dashboard."""
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Read a target back; raises ValueError if it is not a raw InfluxQL target."""
        if data.get("rawQuery") is not True or not isinstance(data.get("query"), str):
            raise ValueError(f"target {data.get('refId')!r} is not a raw InfluxQL query: {data!r}")
        fmt = data.get("resultFormat", "time_series")
        if fmt not in ("time_series", "table"):
            raise ValueError(f"target {data.get('refId')!r} has resultFormat {fmt!r}")
        return cls(data["query"], str(data.get("refId", "A")), fmt)


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder for `InfluxQLQuery`, in the SDK's fluent style.

    Args:
        query: InfluxQL with Grafana macros (``$timeFilter``, ``$__interval``, ``$commune``).
    """

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(" ".join(query.split()))

    def build(self) -> InfluxQLQuery:
        """The target."""
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        """Set the target's ``refId`` (A, B, ...)."""
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        """Return rows (``resultFormat: table``) instead of time series."""
        self._internal.result_format = "table"
        return self


cogruntime.register_dataquery_variant(
    cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json)
)
