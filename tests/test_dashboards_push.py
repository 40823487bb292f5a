"""``tincoso dashboards push`` against a Grafana-shaped HTTP server on 127.0.0.1.

The server keeps folders, data sources and dashboards the way Grafana's classic HTTP API
does (404 for what is missing, 409 for a folder or data source created twice) and
records every request, so the test checks the exact paths, methods and payload shapes
of a first push and of a re-push.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from backend.cli import main
from dashboards.build import render

TOKEN = "glsa_test_token"


class FakeGrafana(ThreadingHTTPServer):
    """Folders, data sources and dashboards by uid; every request recorded."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, Any, str | None]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("Authorization")
        self.server.requests.append((self.command, self.path, body, auth))
        if auth != f"Bearer {TOKEN}":
            self._answer(401, {"message": "Unauthorized"})
            return
        self._route(self.command, self.path, body)

    def _route(self, method: str, path: str, body: Any) -> None:
        s = self.server
        if method == "GET" and path.startswith("/api/folders/"):
            found = s.folders.get(path.removeprefix("/api/folders/"))
            self._answer(200, found) if found else self._answer(404, {"message": "folder not found"})
        elif method == "POST" and path == "/api/folders":
            if body["uid"] in s.folders:
                self._answer(409, {"message": "a folder with the same uid already exists"})
                return
            s.folders[body["uid"]] = {"id": len(s.folders) + 1, **body}
            self._answer(200, s.folders[body["uid"]])
        elif method == "GET" and path.startswith("/api/datasources/uid/"):
            found = s.datasources.get(path.removeprefix("/api/datasources/uid/"))
            self._answer(200, found) if found else self._answer(404, {"message": "Data source not found"})
        elif method == "POST" and path == "/api/datasources":
            if body["uid"] in s.datasources:
                self._answer(409, {"message": "data source with the same uid already exists"})
                return
            s.datasources[body["uid"]] = {"id": 1, **body}
            self._answer(200, {"datasource": s.datasources[body["uid"]], "message": "Datasource added"})
        elif method == "PUT" and path.startswith("/api/datasources/uid/"):
            uid = path.removeprefix("/api/datasources/uid/")
            s.datasources[uid] = {"id": 1, **body}
            self._answer(200, {"datasource": s.datasources[uid], "message": "Datasource updated"})
        elif method == "POST" and path == "/api/dashboards/db":
            dashboard = body["dashboard"]
            if body["folderUid"] not in s.folders:
                self._answer(400, {"message": "folder not found"})
                return
            s.dashboards[dashboard["uid"]] = body
            self._answer(
                200, {"status": "success", "uid": dashboard["uid"], "url": f"/d/{dashboard['uid']}/x"}
            )
        else:
            self._answer(404, {"message": "Not found"})

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _push(grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    monkeypatch.setenv("TINCOSO_GRAFANA_TOKEN", TOKEN)
    monkeypatch.setenv("TINCOSO_INFLUX_PASSWORD", "s3cret")
    return main(
        [
            "dashboards",
            "push",
            "--grafana-url",
            grafana.url,
            "--influx-url",
            "http://10.0.0.5:8086",
            "--database",
            "vo_nhai",
            "--influx-user",
            "grafana",
            *extra,
        ]
    )


def test_first_push_creates_folder_data_source_and_every_dashboard(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _push(grafana, monkeypatch) == 0
    dashboards = render("vi")
    calls = [(method, path) for method, path, _, _ in grafana.requests]
    assert calls == [
        ("GET", "/api/folders/tincoso"),
        ("POST", "/api/folders"),
        ("GET", "/api/datasources/uid/tincoso-influxdb"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * len(dashboards),
    ]
    assert all(auth == f"Bearer {TOKEN}" for *_, auth in grafana.requests)
    bodies = [body for _, _, body, _ in grafana.requests]
    assert bodies[1] == {"title": "tincoso", "uid": "tincoso"}
    source = bodies[3]
    assert (source["uid"], source["type"], source["access"], source["url"]) == (
        "tincoso-influxdb",
        "influxdb",
        "proxy",
        "http://10.0.0.5:8086",
    )
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == "vo_nhai"
    assert (source["user"], source["secureJsonData"]) == ("grafana", {"password": "s3cret"})
    for body in bodies[4:]:
        assert set(body) == {"dashboard", "folderUid", "overwrite", "message"}
        assert body["folderUid"] == "tincoso"
        assert body["overwrite"] is True
        assert body["dashboard"]["id"] is None
    pushed = {body["dashboard"]["uid"]: body["dashboard"] for body in bodies[4:]}
    assert set(pushed) == {d["uid"] for d in dashboards.values()}
    assert pushed["tincoso-fleet"]["panels"] == dashboards["tincoso-fleet.json"]["panels"]
    out = capsys.readouterr().out
    assert "folder tincoso: created" in out
    assert f"{grafana.url}/d/tincoso-kpi/x" in out


def test_re_push_creates_nothing_twice_and_updates_the_data_source(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _push(grafana, monkeypatch) == 0
    first = len(grafana.requests)
    assert _push(grafana, monkeypatch, "--database", "tincoso_2") == 0
    again = [(method, path) for method, path, _, _ in grafana.requests[first:]]
    assert again[:3] == [
        ("GET", "/api/folders/tincoso"),
        ("GET", "/api/datasources/uid/tincoso-influxdb"),
        ("PUT", "/api/datasources/uid/tincoso-influxdb"),
    ]
    assert all(call == ("POST", "/api/dashboards/db") for call in again[3:])
    assert len(grafana.folders) == 1
    assert len(grafana.datasources) == 1
    assert grafana.datasources["tincoso-influxdb"]["jsonData"]["dbName"] == "tincoso_2"
    assert "folder tincoso: unchanged" in capsys.readouterr().out.split("folder tincoso: created")[1]


def test_refused_token_is_named_with_the_request(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TINCOSO_GRAFANA_TOKEN", "wrong")
    code = main(["dashboards", "push", "--grafana-url", grafana.url])
    assert code == 1
    err = capsys.readouterr().err
    assert "GET /api/folders/tincoso" in err
    assert "401" in err


def test_grafana_user_is_sent_as_basic_auth(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        "district: Thử\ncommunes:\n  - {id: xa-mot, name: Xã Một, radio_system: ip}\ndevices: []\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("TINCOSO_GRAFANA_PASSWORD", "admin-pw")
    code = main(
        [
            "dashboards",
            "push",
            "--grafana-url",
            grafana.url,
            "--grafana-user",
            "admin",
            "--registry",
            str(registry),
        ]
    )
    assert code == 1  # the fake accepts only the token...
    _, _, _, auth = grafana.requests[0]
    assert auth == "Basic " + base64.b64encode(b"admin:admin-pw").decode()  # ...but basic auth was sent
