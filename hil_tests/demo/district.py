"""The simulated Võ Nhai district: which devices stand where, and the registry the backend reads.

Communes, technicians, hamlets and coordinates come from ``backend/examples/registry.yaml``
(the 15 units of the plan). The demo follows the plan's **2025** targets rather than that
file's inventory: every unit runs IP radio (indicator 1.2: 100 %), the town has an e-board
(1.4: 100 %) and at least 70 % of the communes have one (1.5), preferring the communes the
example equips. ``fleet_size`` hamlet speaker clusters stand in every unit; hamlets beyond
the example's are named ``Xóm 1``, ``Xóm 2``... in that commune.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import backend
from backend.registry import Commune, DailyWindow, Device, Registry, load_registry

EXAMPLE_REGISTRY = Path(backend.__file__).resolve().parent / "examples" / "registry.yaml"
COMMUNE_EBOARD_TARGET_PCT = 70.0  # plan indicator 1.5, 2025
LED_ID = "vn-huyen-led-01"


@dataclass(frozen=True)
class District:
    """The demo's communes (in the example's order, the town first) and devices."""

    name: str
    communes: tuple[Commune, ...]
    devices: tuple[Device, ...]

    def commune_name(self, commune_id: str) -> str:
        """The name people read (``Tràng Xá``) for a commune id."""
        return next((c.name for c in self.communes if c.id == commune_id), commune_id)

    def of_kind(self, kind: str) -> list[Device]:
        """Devices of one kind, in fleet order."""
        return [d for d in self.devices if d.kind == kind]

    def eboard_coverage(self) -> tuple[int, int, int, int]:
        """``(towns with a board, towns, communes with a board, communes)``."""
        boarded = {d.commune for d in self.devices if d.kind == "eboard"}
        towns = [c for c in self.communes if c.type == "town"]
        rural = [c for c in self.communes if c.type != "town"]
        return (
            sum(c.id in boarded for c in towns),
            len(towns),
            sum(c.id in boarded for c in rural),
            len(rural),
        )


def build_district(fleet_size: int, communes: int, example: Path = EXAMPLE_REGISTRY) -> District:
    """Lay out the district.

    Args:
        fleet_size: hamlet speaker clusters per commune (at least 1).
        communes: how many of the 15 units take part, in the example's order (town first).
        example: the example registry to take names and places from.

    Raises:
        ValueError: a count is out of range (the message says which).
    """
    if fleet_size < 1:
        raise ValueError(f"--fleet-size must be at least 1 speaker cluster per commune, got {fleet_size}")
    source = load_registry(example)
    units = list(source.communes.values())
    if not 1 <= communes <= len(units):
        raise ValueError(f"--communes must be between 1 and {len(units)}, got {communes}")
    chosen = sorted(units[:communes], key=lambda c: c.type != "town")
    boarded = _eboard_communes(chosen, source)
    devices: list[Device] = []
    for commune in chosen:
        devices += _speakers(commune, source, fleet_size)
        if commune.id in boarded:
            devices.append(_eboard(commune, source))
    led = source.device(LED_ID)
    led_commune = led.commune if led is not None else chosen[0].id
    if led is not None and led_commune in {c.id for c in chosen}:
        devices.append(led)
    else:
        devices.append(Device(LED_ID, "district_led", chosen[0].id, "Quảng trường trung tâm huyện"))
    return District(source.district, tuple(chosen), tuple(devices))


def _eboard_communes(chosen: Sequence[Commune], source: Registry) -> set[str]:
    """Every town, and the 2025 share of communes (the example's equipped communes first)."""
    towns = {c.id for c in chosen if c.type == "town"}
    rural = [c for c in chosen if c.type != "town"]
    wanted = math.ceil(len(rural) * COMMUNE_EBOARD_TARGET_PCT / 100)
    equipped = {d.commune for d in source.devices.values() if d.kind == "eboard"}
    ordered = [c for c in rural if c.id in equipped] + [c for c in rural if c.id not in equipped]
    return towns | {c.id for c in ordered[:wanted]}


def _speakers(commune: Commune, source: Registry, count: int) -> list[Device]:
    known = [d for d in source.devices_in(commune.id) if d.kind == "speaker_cluster"]
    out = list(known[:count])
    slug = commune.id.replace("-", "")
    number = len(out)
    while len(out) < count:
        number += 1
        device_id = f"vn-{slug}-loa-{number:02d}"
        out.append(Device(device_id, "speaker_cluster", commune.id, f"Xóm {number}"))
    return out


def _eboard(commune: Commune, source: Registry) -> Device:
    known = next((d for d in source.devices_in(commune.id) if d.kind == "eboard"), None)
    if known is not None:
        return known
    office = "thị trấn" if commune.type == "town" else "xã"
    slug = commune.id.replace("-", "")
    return Device(f"vn-{slug}-bangtin-01", "eboard", commune.id, f"Trụ sở UBND {office} {commune.name}")


def _window(window: DailyWindow) -> dict[str, str]:
    entry = {"start": f"{window.start:%H:%M}", "end": f"{window.end:%H:%M}"}
    return {"name": window.name, **entry} if window.name else entry


def write_demo_registry(
    path: Path,
    district: District,
    *,
    schedule: Sequence[DailyWindow],
    board_hours: Sequence[DailyWindow],
    receiver_url: str,
) -> Path:
    """Write the registry the demo's backend reads.

    Bulletin windows and board hours are the real local times at which the demo plays
    them. Every technician keeps the example's name, e-mail, phone, Telegram chat and
    language, and gets a webhook on the demo's local receiver; commune websites point at
    that receiver too. SMS and Telegram go to the demo's gateway and Bot API stand-ins, so
    alerts and website checks never leave 127.0.0.1.

    Args:
        path: the file to write.
        district: the demo fleet.
        schedule: the bulletins (named), in real local time.
        board_hours: when boards must be on, in real local time.
        receiver_url: base URL of the demo's HTTP receiver.
    """
    communes = []
    for commune in district.communes:
        people = []
        for person in commune.technicians:
            entry: dict[str, Any] = {"name": person.name}
            if person.email:
                entry["email"] = person.email
            if person.phone:
                entry["phone"] = person.phone
            if person.telegram_chat_id:
                entry["telegram_chat_id"] = person.telegram_chat_id
            entry["webhook"] = f"{receiver_url}/hook/{commune.id}"
            if person.language != "vi":
                entry["language"] = person.language
            people.append(entry)
        communes.append(
            {
                "id": commune.id,
                "name": commune.name,
                "type": commune.type,
                "radio_system": "ip",
                "website": f"{receiver_url}/web/{commune.id}",
                "schedule": [_window(w) for w in schedule],
                "board_hours": [_window(w) for w in board_hours],
                "technicians": people,
            }
        )
    devices = []
    for device in district.devices:
        entry = {"id": device.id, "kind": device.kind, "commune": device.commune, "hamlet": device.hamlet}
        for key in ("lat", "lon", "vendor", "model"):
            value = getattr(device, key)
            if value is not None:
                entry[key] = value
        if device.kind == "district_led":
            entry["operating_hours"] = [_window(w) for w in board_hours]
        devices.append(entry)
    document = {"district": district.name, "communes": communes, "devices": devices}
    header = (
        "# Generated by the tincoso demo (hil_tests/demo): the simulated Võ Nhai district.\n"
        "# Bulletin windows and board hours are the real local times (UTC+7) at which the demo\n"
        "# plays the simulated day; webhooks and websites point at the demo's local receiver.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
