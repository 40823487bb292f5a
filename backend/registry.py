"""The fleet registry: the district's inventory of communes, devices and technicians (YAML).

The file is composed with PyYAML's node API rather than loaded, so every error names the
file, the line and the field: ``registry.yaml line 42: devices[3].kind must be one of
speaker_cluster, eboard, district_led, got 'loa'``. Clock times are read from the raw
text, so an unquoted ``05:30`` is not turned into YAML 1.1's sexagesimal 330.

Times in the registry (bulletin schedules, board operating hours) are Vietnam local time,
UTC+7 all year (no daylight saving).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from protocols.errors import InvalidTopic
from protocols.payloads import DEVICE_KINDS
from protocols.stored_data import LOCAL_TZ_ABBREV, LOCAL_UTC_OFFSET_S, device_tags
from protocols.topics import check_device_id

__all__ = [
    "DEVICE_KINDS",
    "LOCAL_TZ",
    "RADIO_SYSTEMS",
    "Commune",
    "DailyWindow",
    "Device",
    "Registry",
    "RegistryError",
    "Technician",
    "load_registry",
    "local_time",
    "parse_registry",
]

LOCAL_TZ = timezone(timedelta(seconds=LOCAL_UTC_OFFSET_S), LOCAL_TZ_ABBREV)
RADIO_SYSTEMS = ("ip", "fm_wired", "fm_wireless")
UNIT_TYPES = ("commune", "town")
LANGUAGES = ("vi", "en")


class RegistryError(ValueError):
    """The registry file is invalid; ``problems`` lists every error found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class DailyWindow:
    """A daily local-time window, e.g. the evening bulletin 17:00–18:00.

    ``end`` before ``start`` means the window runs past midnight.
    """

    start: time
    end: time
    name: str = ""

    def contains(self, local: datetime) -> bool:
        """Whether the local wall-clock time of ``local`` falls inside the window."""
        t = local.timetz().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def label(self) -> str:
        """``Bản tin chiều 17:00–18:00`` (name first when there is one)."""
        span = f"{self.start:%H:%M}–{self.end:%H:%M}"
        return f"{self.name} {span}" if self.name else span


@dataclass(frozen=True)
class Technician:
    """A person alerted about a commune's equipment, and how to reach them."""

    name: str
    email: str | None = None
    phone: str | None = None
    telegram_chat_id: str | None = None
    webhook: str | None = None
    language: str = "vi"


@dataclass(frozen=True)
class Commune:
    """A commune or town (thị trấn) of the district."""

    id: str
    name: str
    type: str
    radio_system: str
    website: str | None
    schedule: tuple[DailyWindow, ...]
    board_hours: tuple[DailyWindow, ...]
    technicians: tuple[Technician, ...]


@dataclass(frozen=True)
class Device:
    """One monitored device: a hamlet speaker cluster, a commune e-board or the district LED."""

    id: str
    kind: str
    commune: str
    hamlet: str
    lat: float | None = None
    lon: float | None = None
    vendor: str | None = None
    model: str | None = None
    installed: date | None = None
    operating_hours: tuple[DailyWindow, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Registry:
    """The loaded, validated registry."""

    district: str
    communes: Mapping[str, Commune]
    devices: Mapping[str, Device]
    path: str = ""
    # Who hears about the district as a whole (server health, district-wide outages).
    district_contacts: tuple[Technician, ...] = ()
    _by_commune: dict[str, tuple[Device, ...]] = field(default_factory=dict, repr=False, compare=False)

    def device(self, device_id: str) -> Device | None:
        """The device with this id, or None if it is not registered."""
        return self.devices.get(device_id)

    def commune(self, commune_id: str) -> Commune | None:
        """The commune with this id, or None."""
        return self.communes.get(commune_id)

    def devices_in(self, commune_id: str) -> tuple[Device, ...]:
        """Devices of one commune, in file order."""
        if not self._by_commune:
            for d in self.devices.values():
                self._by_commune.setdefault(d.commune, ())
                self._by_commune[d.commune] += (d,)
        return self._by_commune.get(commune_id, ())

    def technicians_for(self, device_id: str) -> tuple[Technician, ...]:
        """Technicians of the device's commune (empty for an unknown device)."""
        device = self.device(device_id)
        commune = self.commune(device.commune) if device else None
        return commune.technicians if commune else ()

    def bulletin_at(self, device_id: str, ts: float) -> DailyWindow | None:
        """The scheduled bulletin of the device's commune running at ``ts`` (epoch s), if any."""
        device = self.device(device_id)
        commune = self.commune(device.commune) if device else None
        if commune is None:
            return None
        return _window_at(commune.schedule, ts)

    def operating_at(self, device_id: str, ts: float) -> bool | None:
        """Whether a board should be on at ``ts`` (epoch s); None for an unknown device.

        A device's own ``operating_hours`` win over its commune's ``board_hours``; with
        neither, a board operates around the clock.
        """
        device = self.device(device_id)
        if device is None:
            return None
        hours = device.operating_hours
        if not hours:
            commune = self.commune(device.commune)
            hours = commune.board_hours if commune else ()
        return True if not hours else _window_at(hours, ts) is not None

    def tags(self, device_id: str) -> dict[str, str]:
        """InfluxDB tags for a device: ``device`` plus ``commune``, ``hamlet``, ``kind`` if known."""
        device = self.device(device_id)
        if device is None:
            return {"device": device_id}
        tags = device_tags(device_id, device.commune, device.hamlet, device.kind)
        return {name: value for name, value in tags.items() if value is not None}


def local_time(ts: float) -> datetime:
    """Epoch seconds as Vietnam local time (UTC+7)."""
    return datetime.fromtimestamp(ts, LOCAL_TZ)


def _window_at(windows: tuple[DailyWindow, ...], ts: float) -> DailyWindow | None:
    local = local_time(ts)
    return next((w for w in windows if w.contains(local)), None)


def load_registry(path: str | os.PathLike[str]) -> Registry:
    """Read and validate a registry file.

    Raises:
        RegistryError: the file is missing, not YAML, or has invalid entries; the message
            lists every problem with its line and field.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise RegistryError([f"{source}: cannot read the registry: {exc}"]) from exc
    return parse_registry(text, source)


def parse_registry(text: str, source: str = "registry.yaml") -> Registry:
    """Validate registry YAML text; ``source`` names it in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RegistryError([f"{source}{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if root is None:
        raise RegistryError([f"{source}: the registry is empty"])
    return _Reader(source).registry(_Field(root, "", source))


class _Invalid(Exception):
    pass


@dataclass(frozen=True)
class _Field:
    node: Node
    path: str
    source: str

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def fail(self, problem: str) -> _Invalid:
        return _Invalid(f"{self.source} line {self.line}: {self.path or 'the registry'} {problem}")

    def at(self, node: Node, suffix: str) -> _Field:
        path = self.path + suffix if self.path or suffix.startswith("[") else suffix[1:]
        return _Field(node, path, self.source)


_constructor = SafeConstructor()


def _scalar(f: _Field) -> Any:
    if not isinstance(f.node, ScalarNode):
        raise f.fail("must be a single value, not a list or mapping")
    return _constructor.construct_object(f.node, deep=True)


def _mapping(f: _Field, known: tuple[str, ...]) -> dict[str, _Field]:
    if not isinstance(f.node, MappingNode):
        raise f.fail("must be a mapping of field: value")
    out: dict[str, _Field] = {}
    for key_node, value_node in f.node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else None
        sub = f.at(key_node, f".{key}")
        if key not in known:
            raise sub.fail(f"is not a known field (known: {', '.join(known)})")
        if key in out:
            raise sub.fail("appears twice")
        out[key] = f.at(value_node, f".{key}")
    return out


def _sequence(f: _Field) -> Iterator[_Field]:
    if isinstance(f.node, ScalarNode) and f.node.tag.endswith(":null"):
        return
    if not isinstance(f.node, SequenceNode):
        raise f.fail("must be a list")
    for i, item in enumerate(f.node.value):
        yield f.at(item, f"[{i}]")


def _required(parent: _Field, fields: dict[str, _Field], key: str) -> _Field:
    if key not in fields:
        raise parent.fail(f"needs '{key}'")
    return fields[key]


def _text(f: _Field, *, max_len: int = 200) -> str:
    value = _scalar(f)
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        raise f.fail(f"must be text, got {value!r}")
    text = str(value).strip() if not isinstance(value, str) else value.strip()
    if not text:
        raise f.fail("must not be empty")
    if len(text) > max_len:
        raise f.fail(f"is {len(text)} characters, limit {max_len}")
    return text


def _optional_text(fields: dict[str, _Field], key: str) -> str | None:
    f = fields.get(key)
    if f is None or _scalar(f) is None:
        return None
    return _text(f)


def _choice(f: _Field, choices: tuple[str, ...]) -> str:
    value = _scalar(f)
    if value not in choices:
        raise f.fail(f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _number(f: _Field, lo: float, hi: float) -> float:
    value = _scalar(f)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise f.fail(f"must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise f.fail(f"must be between {lo} and {hi}, got {value!r}")
    return float(value)


def _clock(f: _Field) -> time:
    # The raw text, not the constructed value: YAML 1.1 reads an unquoted 05:30 as 330.
    raw = f.node.value if isinstance(f.node, ScalarNode) else None
    try:
        hours, minutes = str(raw).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise f.fail(f"must be a local time HH:MM, got {raw!r}") from None


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        # Ids of communes in the file, valid or not: a device of a broken commune is not
        # reported again as "unknown commune".
        self.commune_ids: set[str] = set()

    def collect(self, action: Any, *args: Any) -> Any:
        """Run one entry's validation; record its first problem and go on with the next entry."""
        try:
            return action(*args)
        except _Invalid as exc:
            if str(exc):
                self.problems.append(str(exc))
            return None

    def registry(self, root: _Field) -> Registry:
        top = self.collect(_mapping, root, ("district", "communes", "devices", "district_contacts"))
        if top is None:
            raise RegistryError(self.problems)
        district = self.collect(lambda: _text(_required(root, top, "district"))) or ""
        communes: dict[str, Commune] = {}
        for item in self.collect(lambda: list(_sequence(_required(root, top, "communes")))) or []:
            commune = self.collect(self.commune, item, communes)
            if commune is not None:
                communes[commune.id] = commune
        devices: dict[str, Device] = {}
        device_items = self.collect(lambda: list(_sequence(_required(root, top, "devices")))) or []
        device_count = len(device_items)
        for item in device_items:
            device = self.collect(self.device, item, devices, communes)
            if device is not None:
                devices[device.id] = device
        contacts: tuple[Technician, ...] = ()
        if "district_contacts" in top:
            items = self.collect(lambda: list(_sequence(top["district_contacts"]))) or []
            contacts = tuple(c for c in (self.collect(self.technician, t) for t in items) if c is not None)
        if self.problems or len(devices) < device_count:
            raise RegistryError(self.problems)
        return Registry(district, communes, devices, path=self.source, district_contacts=contacts)

    def commune(self, f: _Field, seen: dict[str, Commune]) -> Commune:
        known = ("id", "name", "type", "radio_system", "website", "schedule", "board_hours", "technicians")
        m = _mapping(f, known)
        commune_id = _text(_required(f, m, "id"), max_len=64)
        self.commune_ids.add(commune_id)
        if commune_id in seen:
            raise m["id"].fail(f"{commune_id!r} is already used by another commune")
        type_field = m.get("type")
        return Commune(
            id=commune_id,
            name=_text(_required(f, m, "name")),
            type=_choice(type_field, UNIT_TYPES) if type_field else "commune",
            radio_system=_choice(_required(f, m, "radio_system"), RADIO_SYSTEMS),
            website=_optional_text(m, "website"),
            schedule=self.windows(m.get("schedule")),
            board_hours=self.windows(m.get("board_hours")),
            technicians=tuple(self.technician(t) for t in _sequence(m["technicians"]))
            if "technicians" in m
            else (),
        )

    def windows(self, f: _Field | None) -> tuple[DailyWindow, ...]:
        if f is None:
            return ()
        out = []
        for item in _sequence(f):
            m = _mapping(item, ("name", "start", "end"))
            start, end = _clock(_required(item, m, "start")), _clock(_required(item, m, "end"))
            if start == end:
                raise m["end"].fail("must differ from start")
            out.append(DailyWindow(start, end, _optional_text(m, "name") or ""))
        return tuple(out)

    def technician(self, f: _Field) -> Technician:
        m = _mapping(f, ("name", "email", "phone", "telegram_chat_id", "webhook", "language"))
        email = _optional_text(m, "email")
        if email is not None and "@" not in email:
            raise m["email"].fail(f"must be an e-mail address, got {email!r}")
        webhook = _optional_text(m, "webhook")
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise m["webhook"].fail(f"must be an http(s) URL, got {webhook!r}")
        technician = Technician(
            name=_text(_required(f, m, "name")),
            email=email,
            phone=_optional_text(m, "phone"),
            telegram_chat_id=_optional_text(m, "telegram_chat_id"),
            webhook=webhook,
            language=_choice(m["language"], LANGUAGES) if "language" in m else "vi",
        )
        if not (technician.email or technician.telegram_chat_id or technician.webhook):
            raise f.fail("needs at least one of email, telegram_chat_id, webhook")
        return technician

    def device(self, f: _Field, seen: dict[str, Device], communes: dict[str, Commune]) -> Device:
        known = (
            "id", "kind", "commune", "hamlet", "lat", "lon", "vendor", "model", "installed",
            "operating_hours",
        )  # fmt: skip
        m = _mapping(f, known)
        id_field = _required(f, m, "id")
        device_id = _text(id_field, max_len=64)
        try:
            check_device_id(device_id)
        except InvalidTopic as exc:
            raise id_field.fail(f"is not a valid device id: {exc}") from None
        if device_id in seen:
            raise id_field.fail(f"{device_id!r} is already used on line {seen[device_id].line}")
        commune_field = _required(f, m, "commune")
        commune = _text(commune_field, max_len=64)
        if commune not in communes:
            if commune in self.commune_ids:
                raise _Invalid("")  # its commune's own error is already reported
            raise commune_field.fail(f"{commune!r} is not a commune id of this registry")
        installed = None
        if "installed" in m:
            installed = _scalar(m["installed"])
            if not isinstance(installed, date):
                raise m["installed"].fail(f"must be a date YYYY-MM-DD, got {installed!r}")
        return Device(
            id=device_id,
            kind=_choice(_required(f, m, "kind"), DEVICE_KINDS),
            commune=commune,
            hamlet=_text(_required(f, m, "hamlet")),
            lat=_number(m["lat"], -90, 90) if "lat" in m else None,
            lon=_number(m["lon"], -180, 180) if "lon" in m else None,
            vendor=_optional_text(m, "vendor"),
            model=_optional_text(m, "model"),
            installed=installed,
            operating_hours=self.windows(m.get("operating_hours")),
            line=f.line,
        )
