"""``tincoso dashboards push``: put the dashboards into a running Grafana through its HTTP API.

Uses grafana-client (the maintained successor of grafana-api) and Grafana's classic HTTP
API, which Grafana 10.1 and later serve:

- folder: ``GET /api/folders/:uid``; when 404, ``POST /api/folders`` ``{"uid", "title"}``;
- data source: ``GET /api/datasources/uid/:uid``; when 404, ``POST /api/datasources``,
  else ``PUT /api/datasources/uid/:uid`` with the same document (settings follow the code);
- each dashboard: ``POST /api/dashboards/db`` ``{"dashboard" (id null), "folderUid",
  "overwrite": true, "message"}``.

So a second push changes nothing it does not own and creates nothing twice. Unlike the
provisioning files, pushed dashboards can be edited in the UI; the next push overwrites them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dashboards.build import render
from dashboards.influxql import DATASOURCE_TYPE, DATASOURCE_UID
from dashboards.provisioning import ProvisioningOptions, datasource

__all__ = ["FOLDER_UID", "PushError", "PushResult", "push"]

FOLDER_UID = "tincoso"


class PushError(RuntimeError):
    """Grafana refused a request or cannot be reached; the message names the request."""


@dataclass
class PushResult:
    """What a push did: ``created``/``updated`` per object, and each dashboard's URL path."""

    folder: str = ""
    datasource: str = ""
    dashboards: dict[str, str] = field(default_factory=dict)


def datasource_document(options: ProvisioningOptions, password: str | None) -> dict[str, Any]:
    """The data source as ``POST /api/datasources`` takes it (the password sent, never stored here)."""
    source = dict(datasource(options)["datasources"][0])
    source.pop("editable", None)
    source["type"] = DATASOURCE_TYPE
    if options.username is not None:
        source["basicAuth"] = False
        source["secureJsonData"] = {"password": password or ""}
    return source


def _missing(error: Exception) -> bool:
    return getattr(error, "status_code", None) == 404


def push(api: Any, options: ProvisioningOptions, *, password: str | None = None) -> PushResult:
    """Create or update the folder, the data source and every dashboard.

    Args:
        api: a ``grafana_client.GrafanaApi``.
        options: data source and language settings (as for ``dashboards build``).
        password: InfluxDB password for ``options.username``.

    Raises:
        PushError: a request failed (anything but the 404 that means "not there yet").
    """
    from grafana_client.client import GrafanaException

    result = PushResult()
    step = f"GET /api/folders/{FOLDER_UID}"
    try:
        try:
            api.folder.get_folder(FOLDER_UID)
            result.folder = "unchanged"
        except GrafanaException as error:
            if not _missing(error):
                raise
            step = "POST /api/folders"
            api.folder.create_folder(options.folder, uid=FOLDER_UID)
            result.folder = "created"
        document = datasource_document(options, password)
        step = f"GET /api/datasources/uid/{DATASOURCE_UID}"
        try:
            api.datasource.get_datasource_by_uid(DATASOURCE_UID)
            step = f"PUT /api/datasources/uid/{DATASOURCE_UID}"
            api.datasource.update_datasource_by_uid(DATASOURCE_UID, document)
            result.datasource = "updated"
        except GrafanaException as error:
            if not _missing(error):
                raise
            step = "POST /api/datasources"
            api.datasource.create_datasource(document)
            result.datasource = "created"
        for name, dashboard in render(
            options.lang, options.sound_threshold_dbfs, communes=options.communes
        ).items():
            step = f"POST /api/dashboards/db ({name})"
            answer = api.dashboard.update_dashboard(
                {
                    "dashboard": {**dashboard, "id": None},
                    "folderUid": FOLDER_UID,
                    "overwrite": True,
                    "message": "tincoso dashboards push",
                }
            )
            result.dashboards[dashboard["uid"]] = str((answer or {}).get("url", ""))
    except GrafanaException as error:
        raise PushError(f"Grafana refused {step}: HTTP {error.status_code} {error.message}") from None
    except Exception as error:  # connection refused, DNS, TLS: niquests' errors
        raise PushError(f"cannot reach Grafana for {step}: {error}") from None
    return result
