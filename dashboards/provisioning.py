"""Grafana provisioning files: the InfluxDB data source, a dashboard provider, the dashboards.

Layout written under ``out`` (point Grafana's ``paths.provisioning`` at it)::

    datasources/tincoso.yaml      InfluxDB in InfluxQL mode, uid tincoso-influxdb
    dashboards/tincoso.yaml       a file provider reading dashboards/json/
    dashboards/json/*.json        the dashboards
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dashboards.build import write_dashboards
from dashboards.influxql import DATASOURCE_TYPE, DATASOURCE_UID
from protocols.stored_data import SOUND_THRESHOLD_DBFS

PASSWORD_ENV = "TINCOSO_INFLUX_PASSWORD"


@dataclass(frozen=True)
class ProvisioningOptions:
    """What the provisioning files say about InfluxDB and where Grafana finds the JSON.

    Args:
        influx_url: InfluxDB as Grafana's server reaches it.
        database: The tincoso database.
        username: InfluxDB user; None for no authentication. The password is read by
            Grafana from the environment variable ``TINCOSO_INFLUX_PASSWORD``, so no
            secret is written to disk.
        lang: Dashboard language, ``vi`` or ``en``.
        dashboards_path: Directory of the JSON as Grafana sees it (e.g. inside a
            container); None uses ``<out>/dashboards/json`` made absolute.
        folder: Grafana folder for the dashboards.
        sound_threshold_dbfs: backend.toml's ``[definitions]`` threshold for "sounded".
        communes: Commune id -> name (from the registry) for filters and columns.
    """

    influx_url: str = "http://127.0.0.1:8086"
    database: str = "tincoso"
    username: str | None = None
    lang: str = "vi"
    dashboards_path: str | None = None
    folder: str = "tincoso"
    sound_threshold_dbfs: float = SOUND_THRESHOLD_DBFS
    communes: dict[str, str] | None = None


def datasource(options: ProvisioningOptions) -> dict[str, Any]:
    """The data source provisioning document."""
    source: dict[str, Any] = {
        "name": "tincoso InfluxDB",
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": options.influx_url,
        "isDefault": True,
        "editable": False,
        # Older Grafana reads "database"; newer reads jsonData.dbName.
        "database": options.database,
        "jsonData": {
            "version": "InfluxQL",
            "dbName": options.database,
            "httpMode": "POST",
            "timeInterval": "10s",
        },
    }
    if options.username is not None:
        source["user"] = options.username
        source["secureJsonData"] = {"password": f"${{{PASSWORD_ENV}}}"}
    return {"apiVersion": 1, "datasources": [source]}


def provider(options: ProvisioningOptions, json_dir: Path) -> dict[str, Any]:
    """The dashboard provider document."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "tincoso",
                "orgId": 1,
                "folder": options.folder,
                "type": "file",
                "disableDeletion": False,
                # Dashboards are code: edits in the UI would be lost at the next build.
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": options.dashboards_path or str(json_dir.resolve())},
            }
        ],
    }


def write_provisioning(out: Path, options: ProvisioningOptions) -> list[Path]:
    """Write the data source, the provider and the dashboards under ``out``.

    Args:
        out: Provisioning directory (created if missing).
        options: Data source and provider settings.

    Returns:
        Every file written.

    Raises:
        ValueError: Unknown dashboard language.
        OSError: The directory cannot be written.
    """
    json_dir = out / "dashboards" / "json"
    dashboards = write_dashboards(
        json_dir, options.lang, options.sound_threshold_dbfs, communes=options.communes
    )
    written = []
    for path, document in (
        (out / "datasources" / "tincoso.yaml", datasource(options)),
        (out / "dashboards" / "tincoso.yaml", provider(options, json_dir)),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
        written.append(path)
    return [*written, *dashboards]
