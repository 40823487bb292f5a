"""The fleet registry: the Võ Nhai example loads, and every error names its line and field."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from backend.registry import LOCAL_TZ, RegistryError, load_registry, parse_registry

EXAMPLE = Path(__file__).resolve().parent.parent / "backend" / "examples" / "registry.yaml"

VALID = """\
district: Võ Nhai
communes:
  - id: trang-xa
    name: Tràng Xá
    radio_system: ip
    schedule:
      - {name: Bản tin chiều, start: 17:00, end: "18:00"}
    technicians:
      - {name: Hoàng Thị Bích, email: ktv.trangxa@example.invalid}
devices:
  - id: vn-trangxa-loa-01
    kind: speaker_cluster
    commune: trang-xa
    hamlet: Xóm Trung Thành
"""


def _ts(hour: int, minute: int) -> float:
    return datetime(2025, 11, 26, hour, minute, tzinfo=LOCAL_TZ).timestamp()


def test_voi_nhai_example_has_the_fifteen_units_and_one_district_led() -> None:
    registry = load_registry(EXAMPLE)
    names = {c.name for c in registry.communes.values()}
    assert len(names) == 15
    assert {"Đình Cả", "Tràng Xá", "Vũ Chấn", "Nghinh Tường"} <= names
    assert registry.communes["dinh-ca"].type == "town"
    kinds = [d.kind for d in registry.devices.values()]
    assert kinds.count("district_led") == 1
    assert "eboard" in kinds
    assert all(c.technicians for c in registry.communes.values())
    assert all(c.website for c in registry.communes.values())
    assert {c.radio_system for c in registry.communes.values()} == {"ip", "fm_wired", "fm_wireless"}


def test_device_lookup_and_tags() -> None:
    registry = load_registry(EXAMPLE)
    device = registry.device("vn-trangxa-loa-03")
    assert device is not None
    assert device.commune == "trang-xa"
    assert registry.device("vn-nowhere-loa-01") is None
    assert registry.tags("vn-trangxa-loa-03")["kind"] == "speaker_cluster"
    assert registry.tags("vn-nowhere-loa-01") == {"device": "vn-nowhere-loa-01"}
    assert registry.technicians_for("vn-trangxa-loa-03")[0].email == "ktv.trangxa@example.invalid"


def test_bulletin_windows_are_local_time_and_unquoted_times_are_not_sexagesimal() -> None:
    registry = parse_registry(VALID)
    assert registry.bulletin_at("vn-trangxa-loa-01", _ts(17, 30)) is not None
    assert registry.bulletin_at("vn-trangxa-loa-01", _ts(18, 0)) is None
    assert registry.bulletin_at("vn-trangxa-loa-01", _ts(10, 0)) is None


def test_board_operating_hours_device_override_wins() -> None:
    registry = load_registry(EXAMPLE)
    assert registry.operating_at("vn-huyen-led-01", _ts(5, 45)) is True  # own hours from 05:30
    assert registry.operating_at("vn-dinhca-bangtin-01", _ts(5, 45)) is False  # commune 06:00-22:00
    assert registry.operating_at("vn-dinhca-bangtin-01", _ts(12, 0)) is True


def _error(text: str) -> str:
    with pytest.raises(RegistryError) as info:
        parse_registry(text, "registry.yaml")
    return str(info.value)


def test_wrong_kind_names_line_and_field() -> None:
    text = VALID.replace("kind: speaker_cluster", "kind: loa")
    assert _error(text) == (
        "registry.yaml line 12: devices[0].kind must be one of "
        "speaker_cluster, eboard, district_led, got 'loa'"
    )


def test_unknown_commune_missing_field_and_typo_are_all_reported() -> None:
    text = VALID + (
        "  - id: vn-laхien-loa-01\n"  # a Cyrillic 'х' slipped in
        "    kind: eboard\n"
        "    commune: la-hien\n"
        "    hamlet: Xóm Cậy\n"
        "  - id: vn-trangxa-bangtin-01\n"
        "    kind: eboard\n"
        "    commune: trang-xa\n"
        "  - id: vn-trangxa-loa-02\n"
        "    kind: speaker_cluster\n"
        "    comune: trang-xa\n"
    )
    problems = _error(text).splitlines()
    assert problems[0].startswith("registry.yaml line 15: devices[1].id is not a valid device id")
    assert problems[1] == "registry.yaml line 19: devices[2] needs 'hamlet'"
    assert problems[2].startswith("registry.yaml line 24: devices[3].comune is not a known field")


def test_duplicate_device_names_the_first_line() -> None:
    text = VALID + "  - {id: vn-trangxa-loa-01, kind: eboard, commune: trang-xa, hamlet: UBND}\n"
    assert (
        _error(text) == "registry.yaml line 15: devices[1].id 'vn-trangxa-loa-01' is already used on line 11"
    )


def test_bad_time_and_technician_without_channel() -> None:
    text = VALID.replace('end: "18:00"', "end: 6pm").replace(
        "{name: Hoàng Thị Bích, email: ktv.trangxa@example.invalid}", "{name: Hoàng Thị Bích, phone: '0208'}"
    )
    assert _error(text).splitlines() == [
        "registry.yaml line 7: communes[0].schedule[0].end must be a local time HH:MM, got '6pm'"
    ]
    text = VALID.replace(
        "{name: Hoàng Thị Bích, email: ktv.trangxa@example.invalid}", "{name: Bích, phone: '0208'}"
    )
    assert _error(text).splitlines()[0] == (
        "registry.yaml line 9: communes[0].technicians[0] "
        "needs at least one of email, telegram_chat_id, webhook"
    )


def test_not_yaml_and_missing_file() -> None:
    assert _error("district: [unclosed\n").startswith("registry.yaml line 2: not valid YAML")
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry("/nonexistent/registry.yaml")
