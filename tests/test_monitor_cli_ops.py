"""``tincoso status``, ``tincoso alerts`` and ``tincoso maintenance`` against a real InfluxDB."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import date
from pathlib import Path

import pytest

from backend.cli import main
from backend.cli.common import CliError
from backend.cli.context import find_place, parse_day
from backend.cli.ops import parse_duration, parse_local_time
from backend.influx import InfluxClient, line
from backend.maintenance import MaintenanceStore
from backend.registry import LOCAL_TZ, load_registry
from tests.services_fixtures import InfluxDatabase
from tests.test_registry import EXAMPLE


def _config(tmp_path: Path, influx_url: str = "http://127.0.0.1:9", database: str = "tincoso") -> str:
    path = tmp_path / "backend.toml"
    path.write_text(
        f'[influx]\nurl = "{influx_url}"\ndatabase = "{database}"\n'
        f'[registry]\npath = "{EXAMPLE}"\n'
        '[monitor]\nstate_dir = "state"\n',
        encoding="utf-8",
    )
    return str(path)


def test_maintenance_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    args = [
        "maintenance",
        "add",
        "--config",
        config,
        "--commune",
        "trang-xa",
        "--for",
        "2h",
        "--reason",
        "thay loa",
    ]
    assert main(args) == 0
    [window] = json.loads((tmp_path / "state" / "maintenance.json").read_text(encoding="utf-8"))
    assert (window["target"], window["name"], window["end"] - window["start"]) == (
        "commune",
        "trang-xa",
        7200,
    )
    assert main(["maintenance", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert window["id"] in out
    assert "đang áp dụng" in out
    assert main(["maintenance", "list", "--config", config, "--lang", "en"]) == 0
    assert "active" in capsys.readouterr().out
    assert main(["maintenance", "remove", "--config", config, window["id"]]) == 0
    assert json.loads((tmp_path / "state" / "maintenance.json").read_text(encoding="utf-8")) == []


def test_maintenance_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    assert (
        main(["maintenance", "add", "--config", config, "--device", "vn-nowhere-loa-09", "--for", "1h"]) == 1
    )
    assert "no device 'vn-nowhere-loa-09' in the registry" in capsys.readouterr().err
    assert main(["maintenance", "remove", "--config", config, "m-000000"]) == 1
    assert "no maintenance window 'm-000000'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="1"):
        main(["maintenance", "add", "--config", config, "--commune", "trang-xa", "--for", "soon"])
    assert "duration must look like" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="1"):
        main(["maintenance", "add", "--config", config, "--commune", "trang-xa", "--to", "31/02/2025"])
    assert "time must look like 27/11/2025 17:00" in capsys.readouterr().err


def test_time_parsing_is_vietnam_local() -> None:
    assert parse_duration("90m") == 5400
    moment = parse_local_time("2025-11-27 17:00")
    assert moment == parse_local_time("2025-11-27T10:00:00+00:00")
    assert LOCAL_TZ.utcoffset(None).total_seconds() == 7 * 3600


async def _seed(influx_db: InfluxDatabase) -> None:
    now_ms = int(time.time() * 1000)
    tags = {"commune": "trang-xa", "hamlet": "Xóm Trung Thành", "kind": "speaker_cluster"}
    points = [
        line(
            "state",
            {**tags, "device": "vn-trangxa-loa-01"},
            {"online": True, "reason": "birth"},
            now_ms - 9000,
        ),
        line(
            "state",
            {**tags, "device": "vn-trangxa-loa-01"},
            {"online": False, "reason": "lwt"},
            now_ms - 5000,
        ),
        line(
            "state",
            {**tags, "device": "vn-trangxa-loa-02"},
            {"online": True, "reason": "birth"},
            now_ms - 5000,
        ),
        line(
            "alert",
            {**tags, "device": "vn-trangxa-loa-01", "fault": "offline", "status": "open"},
            {"message": "m", "since_ms": now_ms - 5000, "detail": "reason: lwt", "muted": False},
            now_ms - 4000,
        ),
        # Dead air until the bulletin ended: unconfirmed, the alert stays open.
        line(
            "alert",
            {**tags, "device": "vn-trangxa-loa-01", "fault": "dead_air", "status": "open"},
            {"message": "m", "since_ms": now_ms - 50000, "detail": "", "muted": False, "alert_id": "DA7X2"},
            now_ms - 50000,
        ),
        line(
            "alert",
            {**tags, "device": "vn-trangxa-loa-01", "fault": "dead_air", "status": "unconfirmed"},
            {"message": "m", "since_ms": now_ms - 50000, "detail": "", "muted": False, "alert_id": "DA7X2"},
            now_ms - 20000,
        ),
        line(
            "alert",
            {**tags, "device": "vn-trangxa-loa-02", "fault": "amp_idle", "status": "open"},
            {"message": "m", "since_ms": now_ms - 60000, "detail": "1.2 W", "muted": False},
            now_ms - 60000,
        ),
        line(
            "alert",
            {**tags, "device": "vn-trangxa-loa-02", "fault": "amp_idle", "status": "closed"},
            {"message": "m", "since_ms": now_ms - 60000, "detail": "", "muted": False},
            now_ms - 30000,
        ),
    ]
    async with InfluxClient(influx_db.base_url, influx_db.name) as client:
        await client.write(points)


async def test_status_and_alerts_read_the_monitors_points(
    influx_db: InfluxDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(influx_db)
    config = _config(tmp_path, influx_db.base_url, influx_db.name)
    # main() runs its own event loop: call it outside this test's loop.
    MaintenanceStore(tmp_path / "state" / "maintenance.json").add(
        "device", "vn-trangxa-loa-02", time.time() - 60, time.time() + 3600, "thay loa"
    )
    code = await asyncio.to_thread(main, ["status", "--config", config, "--commune", "Tràng Xá"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Tràng Xá" in out
    loa2 = next(line for line in out.splitlines() if "vn-trangxa-loa-02" in line)
    assert "Trực tuyến · Đang bảo trì đến" in loa2
    assert "Thiết bị" in out
    loa1 = next(line for line in out.splitlines() if "vn-trangxa-loa-01" in line)
    assert "cụm loa" in loa1
    assert loa1.count("Mất kết nối") == 2  # its state and its open fault
    assert "Mất tiếng trong giờ phát bản tin #DA7X2 (Chưa xác nhận" in loa1  # unconfirmed is still open
    loa3 = next(line for line in out.splitlines() if "vn-trangxa-loa-03" in line)
    assert "Chưa từng kết nối" in loa3

    code = await asyncio.to_thread(
        main, ["status", "--config", config, "--offline", "--kind", "speaker_cluster", "--lang", "en"]
    )
    out = capsys.readouterr().out
    assert "vn-trangxa-loa-02" not in out
    loa1 = next(line for line in out.splitlines() if "vn-trangxa-loa-01" in line)
    assert "Offline" in loa1
    assert "speaker cluster" in loa1

    code = await asyncio.to_thread(main, ["alerts", "--config", config])
    out = capsys.readouterr().out
    assert code == 0
    open_part, recent_part = out.split("Cảnh báo gần đây")
    assert "Mất kết nối" in open_part
    assert "mất điện hoặc mất mạng đột ngột" in open_part  # the evidence in words, not "reason: lwt"
    assert "lwt" not in out
    assert "không hoạt động" not in open_part  # amp_idle closed since
    dead_air = next(line for line in open_part.splitlines() if "#DA7X2" in line)
    assert "Chưa xác nhận" in dead_air
    recent_dead_air = next(line for line in recent_part.splitlines() if "#DA7X2" in line)
    assert "Đã khắc phục" not in recent_dead_air
    amp = next(line for line in recent_part.splitlines() if "vn-trangxa-loa-02" in line)
    assert "Đã khắc phục" in amp
    assert "30 giây" in amp  # opened 60 s ago, closed 30 s ago
    assert "chưa đóng" in recent_part

    code = await asyncio.to_thread(
        main, ["alerts", "--config", config, "--commune", "la hien", "--lang", "en"]
    )
    out = capsys.readouterr().out
    assert "vn-trangxa" not in out
    assert "No alerts." in out


def test_names_and_vietnamese_dates_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    args = ["maintenance", "add", "--config", config, "--commune", "Tràng Xá"]
    assert main([*args, "--from", "27/11/2025 17:00", "--to", "2025-11-27 18:30"]) == 0
    [window] = json.loads((tmp_path / "state" / "maintenance.json").read_text(encoding="utf-8"))
    assert (window["name"], window["start"], window["end"] - window["start"]) == (
        "trang-xa",
        parse_local_time("2025-11-27T10:00:00+00:00"),
        5400,
    )
    assert parse_local_time("27/11/2025") == parse_local_time("2025-11-27 00:00")
    assert main(["maintenance", "add", "--config", config, "--commune", "Xã Không Có", "--for", "1h"]) == 1
    err = capsys.readouterr().err
    assert "no commune 'Xã Không Có' in the registry; communes: " in err
    assert "Tràng Xá (trang-xa)" in err


def test_places_by_id_name_or_hamlet_with_or_without_accents() -> None:
    registry = load_registry(EXAMPLE)
    for text in ("trang-xa", "Tràng Xá", "trang xa", "TRÀNG XÁ"):
        assert find_place(registry, text).commune.id == "trang-xa"
    hamlet = find_place(registry, "xom trung thanh")
    assert (hamlet.commune.id, hamlet.hamlet) == ("trang-xa", "Xóm Trung Thành")
    with pytest.raises(CliError, match="no commune 'Xóm Trung Thành'"):
        find_place(registry, "Xóm Trung Thành", hamlets=False)
    assert parse_day("05/12/2025") == parse_day("2025-12-05") == date(2025, 12, 5)
    with pytest.raises(argparse.ArgumentTypeError, match="dd/mm/yyyy"):
        parse_day("32/12/2025")
