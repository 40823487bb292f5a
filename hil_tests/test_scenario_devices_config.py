"""The vendor's ``devices.toml`` (``TINCOSO_HIL_DEVICES``): parsing, errors, and how the
scenarios' rig and district take it. No hardware and no agent process needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backend.localservices import LocalMosquitto
from hil_tests.rig import Rig
from hil_tests.scenarios import (
    DEVICES_ENV,
    DevicesConfigError,
    load_hil_devices,
    open_district,
    parse_hil_devices,
)
from tests.services_fixtures import InfluxDatabase

EXAMPLE = """\
[broker]
host = "127.0.0.1"
port = {port}

[devices."vn-trangxa-loa-01".power_meter]
url = "/dev/ttyUSB0"
baudrate = 9600

[devices."vn-trangxa-loa-01".modem]
url = "rfc2217://192.168.10.30:4001"
"""


def test_devices_file_names_broker_and_real_serial_urls(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(EXAMPLE.format(port=1884), encoding="utf-8")
    devices = load_hil_devices(path)
    assert devices.broker == ("127.0.0.1", 1884)
    assert devices.probes["vn-trangxa-loa-01"]["power_meter"] == {"url": "/dev/ttyUSB0", "baudrate": 9600}
    assert devices.real_parts("vn-trangxa-loa-01") == {"power_meter", "modem"}
    assert devices.real_parts("vn-trangxa-loa-02") == set()


def test_no_devices_file_means_everything_simulated() -> None:
    assert load_hil_devices(None).broker is None
    assert load_hil_devices("").probes == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"brokers": {}}, r"\[brokers\] is not a known table"),
        ({"broker": {"host": ""}}, r"\[broker\] host must be a non-empty string"),
        (
            {"broker": {"host": "10.0.0.2", "port": 70000}},
            r"\[broker\] port must be an integer 1-65535, got 70000",
        ),
        ({"broker": {"host": "10.0.0.2", "user": "x"}}, r"\[broker\] user is not a known key"),
        ({"devices": {"Loa 1": {"modem": {"url": "/dev/ttyUSB1"}}}}, r"\[devices.Loa 1\]"),
        ({"devices": {"vn-x-loa-01": {"amplifier": {"url": "/dev/ttyUSB1"}}}}, r"'amplifier' is not a probe"),
        ({"devices": {"vn-x-loa-01": {"modem": {}}}}, r"\[devices.vn-x-loa-01.modem\] must be a table"),
        ({"devices": {"vn-x-loa-01": {"modem": {"url": ""}}}}, r"url must be a non-empty scalar"),
        ({"devices": {"vn-x-loa-01": {}}}, r"must hold \[devices.vn-x-loa-01.<probe>\] tables"),
    ],
)
def test_wrong_devices_file_names_the_table_and_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(DevicesConfigError, match=message):
        parse_hil_devices(raw)


def test_missing_or_broken_devices_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(DevicesConfigError, match=f"does not exist \\({DEVICES_ENV} names it\\)"):
        load_hil_devices(tmp_path / "nowhere.toml")
    broken = tmp_path / "devices.toml"
    broken.write_text("[broker\nhost = 1", encoding="utf-8")
    with pytest.raises(DevicesConfigError, match="is not valid TOML"):
        load_hil_devices(broken)


def test_rig_replaces_only_the_named_device_parts(tmp_path: Path) -> None:
    real = {"vn-trangxa-loa-01": {"power_meter": {"url": "/dev/ttyUSB0"}}}
    with Rig(tmp_path, broker_port=1883, proxied=False, device_probes=real) as rig:
        named = rig.add_speaker_cluster("vn-trangxa-loa-01")
        other = rig.add_speaker_cluster("vn-trangxa-loa-02")
        assert named.agent.config()["probes"]["power_meter"]["url"] == "/dev/ttyUSB0"
        assert named.agent.config()["probes"]["audio"]["source"] == named.speaker.audio.url
        assert other.agent.config()["probes"]["power_meter"]["url"] == other.speaker.power_meter.url


def test_district_reads_the_env_var_and_skips_faults_on_real_parts(
    tmp_path: Path,
    influx_db: InfluxDatabase,
    mosquitto: LocalMosquitto,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(EXAMPLE.format(port=mosquitto.port), encoding="utf-8")
    monkeypatch.setenv(DEVICES_ENV, str(path))

    def no_private_broker() -> LocalMosquitto:
        raise AssertionError("devices.toml names the broker: no private one may start")

    fresh: Callable[..., LocalMosquitto] = no_private_broker
    with open_district(tmp_path / "scenario", influx_db, fresh) as district:
        assert (district.rig.broker_host, district.rig.broker_port) == ("127.0.0.1", mosquitto.port)
        loa = district.rig.add_speaker_cluster("vn-trangxa-loa-01")
        assert loa.proxy is not None
        assert loa.proxy.target_port == mosquitto.port
        assert loa.agent.config()["probes"]["modem"]["url"] == "rfc2217://192.168.10.30:4001"
        district.simulated(loa, "audio")  # still a simulator: no skip
        with pytest.raises(pytest.skip.Exception, match="power_meter is real hardware"):
            district.simulated(loa, "power_meter")
