"""The weekly device-health digest: computed from the real InfluxDB, sent by ``tincoso digest
--send`` to the district contact through the real SMTP receiver, and its figures checked
against InfluxQL of the same points.

The week (24/11–30/11/2025, Vietnam time) holds what the monitor and ingest would have
written: ``outage`` points (one refined after the device came back), ``down_interval``
points (one a short drop inside the grace, not an outage), a device still down at the end,
and hourly heartbeats with one crash reboot.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.alerts.dispatcher import Dispatcher
from backend.cli import main
from backend.config import ConfigError
from backend.health.weekly import WeeklyDigest, due_week
from backend.influx import InfluxClient, line
from backend.kpi.model import Period
from backend.monitor.clock import ManualClock
from backend.monitor.config import MonitorSettings
from backend.registry import LOCAL_TZ, load_registry
from tests.alert_receivers import SmtpInbox
from tests.monitor_support import RecordingChannel
from tests.services_fixtures import InfluxDatabase
from tests.test_registry import EXAMPLE

REGISTRY = load_registry(EXAMPLE)
START_MS = int(datetime(2025, 11, 24, tzinfo=LOCAL_TZ).timestamp() * 1000)
END_MS = int(datetime(2025, 12, 1, tzinfo=LOCAL_TZ).timestamp() * 1000)
HOUR = 3_600_000
LOA1, LOA2, LAHIEN = "vn-trangxa-loa-01", "vn-trangxa-loa-02", "vn-lahien-loa-01"
DISTRICT = "vhtt.vonhai@example.invalid"


def _tags(device: str, **more: str) -> dict[str, str]:
    return {**REGISTRY.tags(device), **more}


def _outage(device: str, at_ms: int, cause: str, *, refined: bool = False) -> str:
    tags = _tags(device, cause=cause, evidence="test")
    return line("outage", tags, {"text": f"{cause} outage", "refined": refined}, at_ms)


def _down(device: str, at_ms: int, hours: float) -> str:
    end = at_ms + int(hours * HOUR)
    fields = {"start_ms": at_ms, "end_ms": end, "duration_s": round(hours * 3600, 3)}
    return line("down_interval", _tags(device), fields, at_ms)


def _week() -> list[str]:
    day = 24 * HOUR
    points = [
        # Tràng Xá loa-01: the grid twice (the first only known once it came back), the 4G once.
        _outage(LOA1, START_MS + 10 * HOUR, "unknown"),
        _outage(LOA1, START_MS + 10 * HOUR, "mains", refined=True),
        _down(LOA1, START_MS + 10 * HOUR, 2.0),
        _outage(LOA1, START_MS + day + 17 * HOUR, "mains"),
        _down(LOA1, START_MS + day + 17 * HOUR, 1.0),
        _outage(LOA1, START_MS + 3 * day + 8 * HOUR, "cellular"),
        _down(LOA1, START_MS + 3 * day + 8 * HOUR, 0.5),
        _down(LOA1, START_MS + 4 * day, 0.02),  # a drop inside the grace: not an outage
        # Tràng Xá loa-02: its controller failed once, 4 h, and crash-rebooted once.
        _outage(LOA2, START_MS + 2 * day + 9 * HOUR, "device"),
        _down(LOA2, START_MS + 2 * day + 9 * HOUR, 4.0),
        # La Hiên loa-01: dark since Sunday 20:00, still down at the end of the week.
        _outage(LAHIEN, START_MS + 6 * day + 20 * HOUR, "unknown"),
    ]
    for hour in range(7 * 24):
        at = START_MS + hour * HOUR + 60_000
        crash = hour == 2 * 24 + 13
        fields: dict[str, Any] = {
            "uptime_s": 120 if crash else 86_400 + hour * 3600,
            "reboot_reason": "watchdog" if crash else "clean",
            "boot_id": "boot-2" if crash else "boot-1",
        }
        points.append(line("heartbeat", _tags(LOA2), fields, at))
    return points


@pytest.fixture
def inbox() -> Iterator[SmtpInbox]:
    server = SmtpInbox()
    server.start()
    yield server
    server.stop()


def _config(tmp_path: Path, influx_db: InfluxDatabase, smtp_port: int) -> str:
    path = tmp_path / "backend.toml"
    path.write_text(
        f'[influx]\nurl = "{influx_db.base_url}"\ndatabase = "{influx_db.name}"\n'
        f'[registry]\npath = "{EXAMPLE}"\n'
        '[monitor]\nstate_dir = "state"\n'
        f'[alerts]\nsmtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\nsmtp_starttls = false\n',
        encoding="utf-8",
    )
    return str(path)


def _influxql(influx_db: InfluxDatabase, q: str) -> list[dict[str, Any]]:
    response = httpx.post(
        influx_db.base_url + "/query", data={"db": influx_db.name, "q": q, "epoch": "ms"}, timeout=10
    )
    response.raise_for_status()
    out: list[dict[str, Any]] = []
    for series in response.json()["results"][0].get("series", []):
        tags = series.get("tags", {})
        out.extend({**tags, **dict(zip(series["columns"], v, strict=True))} for v in series["values"])
    return out


def _vi(value: float) -> str:
    return f"{value:.1f}".replace(".", ",")


def test_weekly_digest_reaches_the_district_contact_with_figures_from_influxdb(
    tmp_path: Path, influx_db: InfluxDatabase, inbox: SmtpInbox, capsys: pytest.CaptureFixture[str]
) -> None:
    async def seed() -> None:
        async with InfluxClient(influx_db.base_url, influx_db.name) as client:
            await client.write(_week())

    asyncio.run(seed())
    config = _config(tmp_path, influx_db, inbox.port)
    assert main(["digest", "--config", config, "--to", "30/11/2025", "--send"]) == 0
    assert "Đã gửi bản tin tuần tới 1 người nhận." in capsys.readouterr().out
    [mail] = inbox.messages
    assert mail["To"] == DISTRICT
    assert str(mail["Subject"]) == (
        "[tincoso] Tình trạng thiết bị hằng tuần — huyện Võ Nhai (24/11/2025 – 30/11/2025)"
    )
    body = mail.get_content()
    where = f"time >= {START_MS}ms AND time < {END_MS}ms"

    # Outages per device: the monitor's first guesses, one per episode.
    counted = _influxql(
        influx_db, f'SELECT count("text") FROM "outage" WHERE {where} AND "refined" = false GROUP BY "device"'
    )
    outages = {r["device"]: r["count"] for r in counted}
    assert outages == {LOA1: 3, LOA2: 1, LAHIEN: 1}
    # Their lengths: down intervals past the grace (5 min); La Hiên's is still open at the end.
    lengths = _influxql(
        influx_db,
        f'SELECT sum("duration_s") FROM "down_interval" WHERE {where} AND "duration_s" > 300 '
        'GROUP BY "device"',
    )
    down_h = {r["device"]: r["sum"] / 3600 for r in lengths}
    down_h[LAHIEN] = (END_MS - (START_MS + 6 * 24 * HOUR + 20 * HOUR)) / HOUR
    # Crash-free hours: hours with a heartbeat, less the hour of the watchdog reboot.
    hours = _influxql(
        influx_db,
        f'SELECT count("uptime_s") FROM "heartbeat" WHERE {where} AND "device" = \'{LOA2}\' '
        "GROUP BY time(1h) fill(none)",
    )
    crashes = _influxql(
        influx_db,
        f'SELECT count("uptime_s") FROM "heartbeat" WHERE {where} AND "reboot_reason" = \'watchdog\'',
    )
    operating, crashed = len(hours), crashes[0]["count"]

    worst = [line for line in body.splitlines() if re.match(r"^\d\. ", line)]
    assert [re.search(r"\((vn-[a-z0-9-]+)\)", w).group(1) for w in worst] == [LOA2, LAHIEN, LOA1]  # type: ignore[union-attr]
    assert (
        f"({LOA2}): {outages[LOA2]} lần mất kết nối, {_vi(down_h[LOA2])} giờ "
        "(điện lưới 0, lỗi thiết bị 1, mất sóng 0, chưa rõ 0); "
        f"khởi động lại do lỗi {crashed} lần; giờ không lỗi {operating - crashed}/{operating}"
    ) in worst[0]
    assert f"({LAHIEN}): 1 lần mất kết nối, {_vi(down_h[LAHIEN])} giờ" in worst[1]
    # The refined cause wins: two grid outages and one 4G.
    assert (
        f"({LOA1}): 3 lần mất kết nối, {_vi(down_h[LOA1])} giờ "
        "(điện lưới 2, lỗi thiết bị 0, mất sóng 1, chưa rõ 0)"
    ) in worst[2]
    assert "Cần làm: Lỗi thiết bị" in body.split(worst[0])[1].splitlines()[1]
    assert "Cần làm: Mất điện lưới" in body.split(worst[2])[1].splitlines()[1]

    # Tràng Xá pooled: MTTR = time down / outages, MTBF = time up / outages.
    trang_xa = len(REGISTRY.devices_in("trang-xa"))
    tx_outages = outages[LOA1] + outages[LOA2]
    tx_down = down_h[LOA1] + down_h[LOA2]
    week_h = (END_MS - START_MS) / HOUR
    mttr, mtbf = tx_down / tx_outages, (trang_xa * week_h - tx_down) / tx_outages
    commune = next(x for x in body.splitlines() if x.startswith("- Tràng Xá:"))
    assert f"{trang_xa} thiết bị, {tx_outages} lần" in commune
    assert f"MTBF {_vi(mtbf)} giờ; MTTR {_vi(mttr)} giờ" in commune
    district = next(x for x in body.splitlines() if x.startswith("Toàn huyện:"))
    assert f"{len(REGISTRY.devices)} thiết bị, 5 lần mất kết nối" in district
    assert "không có sự cố" in next(x for x in body.splitlines() if x.startswith("- Bình Long:"))


def test_digest_preview_prints_without_sending_and_in_english(
    tmp_path: Path, influx_db: InfluxDatabase, inbox: SmtpInbox, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, influx_db, inbox.port)
    assert main(["digest", "--config", config, "--to", "30/11/2025", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "Weekly device health — Võ Nhai district" in out
    assert "No device went offline or crashed this week." in out
    assert inbox.messages == []


def test_due_week_is_the_last_sending_moments_week() -> None:
    monday_7 = time(7, 0)
    at = datetime(2025, 12, 1, 7, 5, tzinfo=LOCAL_TZ)  # Monday 07:05
    assert due_week(at, 0, monday_7, None) == Period(date(2025, 11, 24), date(2025, 11, 30))
    assert due_week(at, 0, monday_7, date(2025, 11, 30)) is None
    early = datetime(2025, 12, 1, 6, 59, tzinfo=LOCAL_TZ)  # the day, not yet the hour
    assert due_week(early, 0, monday_7, None) == Period(date(2025, 11, 17), date(2025, 11, 23))
    assert due_week(early, 0, monday_7, date(2025, 11, 23)) is None
    thursday = datetime(2025, 12, 4, 12, 0, tzinfo=LOCAL_TZ)  # down on Monday: sent when back
    assert due_week(thursday, 0, monday_7, date(2025, 11, 23)) == Period(
        date(2025, 11, 24), date(2025, 11, 30)
    )
    assert due_week(at, -1, monday_7, None) is None


async def test_monitor_sends_the_weekly_digest_once_when_due(
    tmp_path: Path, influx_db: InfluxDatabase
) -> None:
    async with InfluxClient(influx_db.base_url, influx_db.name) as client:
        await client.write(_week())
        channel = RecordingChannel()
        dispatcher = Dispatcher({"email": channel}, attempts=1)
        clock = ManualClock(datetime(2025, 11, 28, 9, 0, tzinfo=LOCAL_TZ).timestamp())  # a Friday
        weekly = WeeklyDigest(
            REGISTRY, client, dispatcher, tmp_path / "state", weekday=0, at="07:00", now=clock.now
        )
        assert await weekly.send_if_due() is None  # a first start only begins the schedule
        clock.set(datetime(2025, 12, 1, 6, 0, tzinfo=LOCAL_TZ).timestamp())
        assert await weekly.send_if_due() is None
        clock.set(datetime(2025, 12, 1, 7, 0, tzinfo=LOCAL_TZ).timestamp())
        assert await weekly.send_if_due() == Period(date(2025, 11, 24), date(2025, 11, 30))
        clock.advance(600)
        assert await weekly.send_if_due() is None  # once
        dispatcher.start()
        async with asyncio.timeout(5):
            await dispatcher.wait_idle()
        await dispatcher.aclose()
    [(contact, notice)] = channel.sent
    assert contact.email == DISTRICT
    assert notice.subject.endswith("(24/11/2025 – 30/11/2025)")
    assert f"({LOA2}): 1 lần mất kết nối, 4,0 giờ" in notice.text


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [("digest_weekday", 7, "0 \\(Monday\\) to 6, or -1"), ("digest_at", "7h", "HH:MM")],
)
def test_digest_settings_are_checked(key: str, value: object, words: str) -> None:
    settings: dict[str, Any] = {key: value}
    with pytest.raises(ConfigError, match=words):
        MonitorSettings(**settings)
