"""Correlated outages are one notice: a commune (or the whole district) going dark together.

When the power company cuts a commune, every speaker cluster there goes offline within
seconds, and each would alert on its own: ten notices for one cause. Here an ``offline``
alert that opens while a neighbour of its commune is dark too is held for a short window
(``area_window_heartbeats`` of the device's own heartbeat interval; a device alone in the
dark is told at once); when the window ends and at least ``area_min_devices`` and
``area_fraction`` of its commune's registered devices went offline around the same time,
the commune's technicians get one area notice ("Mất kết nối 3/4 cụm loa xã Thần Sa từ
17:02 — nghi mất điện khu vực") listing the devices, and so do the district contacts. The
device alerts are still opened (history, dashboards, KPI) but told only by the area notice.
When devices of several communes and that fraction of the whole district are down, the
district contacts get one district-wide notice instead of one per commune.

Devices on one operator (the heartbeat's ``operator``) going dark across communes, mostly
with a cellular cause, while no commune reaches its own threshold, are one operator notice
to those communes' technicians and the district contacts ("Mất kết nối 4/5 thiết bị dùng
mạng Viettel ở 4 xã/thị trấn ... nghi mất sóng di động khu vực"): the same two settings,
over the devices that last named that operator. Heartbeats do not name the cell, so a cell
site is seen as its operator's devices of the communes it serves.

Still alerted on their own: a device whose cause (`backend.monitor.causes`) is known and
differs from the area's, a device that goes dark while its commune is below the threshold,
and a member still offline once the offline grace has passed since its first neighbour came
back (its own "Mất kết nối" then, with the time it went dark). The area's recovery notice
names those stragglers.

Settings (``[monitor]``): ``area_grouping`` (on), ``area_window_heartbeats`` (2),
``area_fraction`` (0.5), ``area_min_devices`` (3).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from backend.alerts.dispatcher import Dispatcher
from backend.alerts.manager import AlertManager
from backend.alerts.messages import Notice
from backend.alerts.model import new_alert_id
from backend.catalogue import kind_name, term
from backend.monitor.causes import Cause
from backend.monitor.rules import Transition
from backend.monitor.state import FleetState
from backend.registry import LOCAL_TZ, Registry, Technician

__all__ = ["AREA_FAULT", "DISTRICT_FAULT", "AreaOutages", "AreaSettings"]

log = logging.getLogger(__name__)

AREA_FAULT = "area_offline"
DISTRICT_FAULT = "district_offline"
LISTED = 30  # devices named in one notice; the rest are counted

FieldValue = bool | int | float | str
PointSink = Callable[[str, Mapping[str, str | None], Mapping[str, FieldValue | None], float], None]


@dataclass(frozen=True)
class AreaSettings:
    """How outages are grouped (from ``[monitor]``)."""

    enabled: bool = True
    window_heartbeats: float = 2.0
    fraction: float = 0.5
    min_devices: int = 3


@dataclass
class _Held:
    transition: Transition
    cause: Cause | None
    held_at: float


@dataclass
class _Area:
    id: str
    commune: str
    cause: str
    since: float
    members: set[str] = field(default_factory=set)
    back: dict[str, float] = field(default_factory=dict)
    down: int = 0
    total: int = 0
    district: str = ""  # the district-wide outage it belongs to
    operator: str = ""  # an operator's outage across communes (``commune`` is then "")
    communes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Where `AreaOutages.areas` keeps it."""
        return f"@{self.operator}" if self.operator else self.commune


@dataclass
class _District:
    id: str
    cause: str
    since: float
    areas: set[str] = field(default_factory=set)
    down: int = 0
    communes: int = 0


class AreaOutages:
    """Holds ``offline`` openings briefly and tells correlated ones as one area notice.

    Args:
        registry: Communes, devices, technicians, district contacts.
        fleet: Who is offline now, and since when.
        alerts: Opens the device alerts (told by the area notice) and releases stragglers.
        dispatcher: Where area notices go.
        points: Where ``area_outage`` points go.
        settings: The grouping settings.
        grace_s: ``device -> seconds`` a device has to come back (the offline grace).
    """

    def __init__(
        self,
        registry: Registry,
        fleet: FleetState,
        alerts: AlertManager,
        dispatcher: Dispatcher,
        points: PointSink,
        settings: AreaSettings,
        grace_s: Callable[[str], float],
    ) -> None:
        self.registry = registry
        self.fleet = fleet
        self.alerts = alerts
        self.dispatcher = dispatcher
        self.points = points
        self.settings = settings
        self.grace_s = grace_s
        self.held: dict[str, _Held] = {}
        self.areas: dict[str, _Area] = {}  # by commune
        self.district: _District | None = None
        self.notices = 0
        self._covered: set[str] = set()
        self._member: dict[str, str] = {}  # device -> key of its area
        for alert in alerts.store.open.values():
            if alert.area:  # its area did not survive a restart: it was told, now it is on its own
                alert.area, alert.sent = "", True

    def quiet(self, device: str) -> bool:
        """``device``'s outage is told by an area notice (no per-device cause update either)."""
        return device in self._covered

    def take(self, transition: Transition, cause: Cause | None, now: float) -> bool:
        """Follow an ``offline`` transition; True when this module handles it (not the caller)."""
        if not self.settings.enabled or transition.fault != "offline" or transition.unconfirmed:
            return False
        device = self.registry.device(transition.device)
        if device is None:
            return False
        if transition.opened:
            self._covered.discard(transition.device)
            for area in (self.areas.get(device.commune), self.areas.get(f"@{self._operator(device.id)}")):
                if area is not None and not area.back and _compatible(cause, area.cause):
                    self._join(area, transition)
                    return True
            bound = transition.since - self._window_s(transition.device)
            busy = self.held or self.areas or self.district is not None
            if (
                not busy
                and len(self._down(device.commune, bound)) < 2
                and not self._operator_dark(device.id, bound)
            ):
                return False  # alone in the dark: told at once, as ever
            self.held[transition.device] = _Held(transition, cause, now)
            return True
        held = self.held.pop(transition.device, None)
        if held is not None:  # back before the window ended: told on its own, as it was
            self.alerts.handle(held.transition)
            self.alerts.handle(transition)
            return True
        area = self.areas.get(self._member.get(transition.device, ""))
        if area is not None and transition.device in area.members:
            area.back[transition.device] = now
            self.alerts.handle(transition)
            return True
        return False

    def tick(self, now: float) -> None:
        """Decide the held openings whose window ended; close areas whose devices are back."""
        due = {
            self._commune(h.transition.device)
            for h in self.held.values()
            if now - h.held_at >= self._window_s(h.transition.device)
        }
        if due:
            self._decide(sorted(due), now)
        for area in list(self.areas.values()):
            if area.back and (
                len(area.back) == len(area.members)
                or now - min(area.back.values()) >= max(self.grace_s(d) for d in area.members)
            ):
                self._close(area, now)

    # -- deciding ---------------------------------------------------------------------------

    def _decide(self, communes: list[str], now: float) -> None:
        earliest = min(h.transition.since for h in self.held.values())
        bound = earliest - max(self._window_s(d) for d in self.held)
        down = {c: self._down(c, bound) for c in communes}
        district = self.district or self._district_wide(bound)
        leftover: list[_Held] = []
        for commune in communes:
            members = [h for h in self.held.values() if self._commune(h.transition.device) == commune]
            total = len(self.registry.devices_in(commune))
            count = len(down[commune])
            enough = total > 0 and count / total >= self.settings.fraction and commune not in self.areas
            if enough and (count >= self.settings.min_devices or district is not None):
                self._open(commune, members, down[commune], total, district, now)
            else:
                leftover += [h for h in members if now - h.held_at >= self._window_s(h.transition.device)]
        if district is not None and self.district is None and district.areas:
            self.district = district  # told once its communes' areas are open
            self._send_district("open", district, self._district_lines(bound), now)
        for held in self._by_operator(leftover, bound, now):
            self._release(held)

    def _by_operator(self, held: list[_Held], bound: float, now: float) -> list[_Held]:
        """An operator's outage across communes (its cells or core network): one notice for
        the devices of the communes below their own threshold; returns the rest."""
        operators: dict[str, list[_Held]] = {}
        rest = []
        for h in held:
            operator = self._operator(h.transition.device)
            if operator and h.cause is not None and h.cause.code in ("cellular", "unknown"):
                operators.setdefault(operator, []).append(h)
            else:
                rest.append(h)
        for operator, members in operators.items():
            existing = self.areas.get(f"@{operator}")
            if existing is not None:
                if existing.back:
                    rest += members
                for h in [] if existing.back else members:
                    self._join(existing, h.transition)
                continue
            on_it = [st for st in self.fleet.devices.values() if self._operator(st.device) == operator]
            down = [st.device for st in on_it if st.online is False and (st.down_since or 0.0) >= bound]
            communes = {self._commune(d) for d in down}
            cellular = sum(1 for h in members if h.cause is not None and h.cause.code == "cellular")
            if (
                len(communes) < 2
                or len(down) < self.settings.min_devices
                or len(down) / len(on_it) < self.settings.fraction
                or 2 * cellular < len(members)
            ):
                rest += members
                continue
            since = min(h.transition.since for h in members)
            area = _Area(new_alert_id(), "", "cellular", since, down=len(down), total=len(on_it))
            area.operator, area.communes = operator, tuple(sorted(communes))
            self.areas[area.key] = area
            for h in members:
                self._join(area, h.transition)
            if area.members:
                self._send_area("open", area, sorted(down), now)
            else:  # every member in maintenance
                del self.areas[area.key]
        return rest

    def _down(self, commune: str, bound: float) -> list[str]:
        """Devices of ``commune`` offline now that went dark after ``bound``."""
        out = []
        for device in self.registry.devices_in(commune):
            state = self.fleet.devices.get(device.id)
            if state is not None and state.online is False and (state.down_since or 0.0) >= bound:
                out.append(device.id)
        return out

    def _district_wide(self, bound: float) -> _District | None:
        """A district-wide outage, if that share of the whole district went dark since ``bound``."""
        communes: Counter[str] = Counter()
        for state in self.fleet.devices.values():
            if state.online is False and (state.down_since or 0.0) >= bound:
                registered = self.registry.device(state.device)
                if registered is not None:
                    communes[registered.commune] += 1
        down = sum(communes.values())
        total = len(self.registry.devices)
        if (
            len(communes) < 2
            or down < self.settings.min_devices
            or down / max(1, total) < self.settings.fraction
        ):
            return None
        causes = Counter(h.cause.code for h in self.held.values() if h.cause and h.cause.code != "unknown")
        cause = causes.most_common(1)[0][0] if causes else "unknown"
        since = min(h.transition.since for h in self.held.values())
        return _District(new_alert_id(), cause, since, down=down, communes=len(communes))

    def _open(
        self,
        commune: str,
        members: list[_Held],
        down: list[str],
        total: int,
        district: _District | None,
        now: float,
    ) -> None:
        causes = Counter(h.cause.code for h in members if h.cause and h.cause.code != "unknown")
        cause = causes.most_common(1)[0][0] if causes else "unknown"
        since = min(h.transition.since for h in members)
        area = _Area(new_alert_id(), commune, cause, since, down=len(down), total=total)
        if district is not None:
            area.district = district.id
            district.areas.add(area.id)
        self.areas[area.key] = area
        for held in members:
            del self.held[held.transition.device]
            if _compatible(held.cause, cause):
                self._join(area, held.transition)
            else:
                self._release(held)
        if area.members:
            self._send_area("open", area, down, now)
        else:  # every member in maintenance
            del self.areas[area.key]
            if district is not None:
                district.areas.discard(area.id)

    def _join(self, area: _Area, transition: Transition) -> None:
        self.held.pop(transition.device, None)
        if self.alerts.muted(transition.device):  # in maintenance: its own (muted) alert, as ever
            self.alerts.handle(transition)
            return
        area.members.add(transition.device)
        self._member[transition.device] = area.key
        self._covered.add(transition.device)
        self.alerts.handle(transition, area=area.id)

    def _release(self, held: _Held) -> None:
        self.held.pop(held.transition.device, None)
        self.alerts.handle(held.transition)

    def _close(self, area: _Area, now: float) -> None:
        del self.areas[area.key]
        for device in area.members:
            if self._member.get(device) == area.key:
                del self._member[device]
        stragglers = sorted(area.members - set(area.back))
        for device in stragglers:
            self._covered.discard(device)
            self.alerts.release(device, "offline")
        self._send_area("recovery", area, stragglers, now)
        district = self.district
        if district is not None and area.id in district.areas:
            district.areas.discard(area.id)
            if not district.areas:
                self.district = None
                self._send_district("recovery", district, [], now)

    # -- telling ------------------------------------------------------------------------------

    def _send_area(self, event: str, area: _Area, devices: list[str], now: float) -> None:
        recipients: list[Technician] = []
        for commune_id in area.communes or (area.commune,):
            commune = self.registry.commune(commune_id)
            recipients += commune.technicians if commune else ()
        if not area.district:  # in a district-wide outage the district hears it once, as a whole
            recipients += self.registry.district_contacts
        for language in sorted({t.language for t in recipients}):
            notice = self._area_notice(event, area, devices, now, language)
            self.dispatcher.submit(notice, [t for t in recipients if t.language == language])
            self.notices += 1
        log.warning(
            "area outage %s %s: %d/%d devices (%s)", event, area.commune, area.down, area.total, area.cause
        )
        fields: dict[str, FieldValue | None] = {
            "down": area.down,
            "total": area.total,
            "members": len(area.members),
            "back": len(area.back),
            "devices": ",".join(devices)[:4000],
            "area_id": area.id,
            "district_wide": bool(area.district),
        }
        tags = {"commune": area.commune or area.key, "cause": area.cause, "status": event}
        self.points("area_outage", tags, fields, now)

    def _area_notice(self, event: str, area: _Area, devices: list[str], now: float, lang: str) -> Notice:
        commune = self.registry.commune(area.commune)
        name = commune.name if commune else area.commune
        unit = term(f"unit.{commune.type}" if commune else "unit.commune", lang)
        kinds = {d.kind for d in self.registry.devices_in(area.commune)}
        kind = kind_name(kinds.pop(), lang) if len(kinds) == 1 else term("area.devices", lang)
        title = term("area.offline", lang).format(
            down=area.down, total=area.total, kind=kind, unit=unit, name=name, since=_hhmm(area.since)
        )
        if area.operator:
            name = self.registry.district
            title = term("area.offline.operator", lang).format(
                down=area.down,
                total=area.total,
                operator=area.operator,
                communes=len(area.communes),
                since=_hhmm(area.since),
            )
        head = f"{term(f'event.{event}', lang)}: {title} — {term(f'area.cause.{area.cause}', lang)}"
        lines = [head]
        if event == "open":
            lines += [f"{term('area.list', lang)}:", *self._device_lines(devices, lang)]
            lines += [
                term("area.one_notice", lang),
                f"{term('what_to_check', lang)}: {term('area.check', lang)}",
            ]
        else:
            lines.append(term("area.back", lang).format(back=len(area.back), members=len(area.members)))
            if devices:
                lines += [f"{term('area.stragglers', lang)}:", *self._device_lines(devices, lang)]
        return Notice(
            event=event,
            device="",
            fault=AREA_FAULT,
            commune=area.commune,
            commune_name=name,
            hamlet="",
            kind="",
            since=area.since,
            at=now,
            language=lang,
            subject=f"[tincoso] {head}",
            text="\n".join(lines),
            alert_id=area.id,
            short=f"{term(f'event.{event}', lang)} {title}"[:160],
        )

    def _device_lines(self, devices: list[str], lang: str) -> list[str]:
        lines = []
        for device_id in devices[:LISTED]:
            device = self.registry.device(device_id)
            hamlet = device.hamlet if device else "?"
            lines.append(f"- {hamlet} ({device_id})")
        if len(devices) > LISTED:
            lines.append("- " + term("area.more", lang).format(n=len(devices) - LISTED))
        return lines

    def _district_lines(self, bound: float) -> list[str]:
        communes: Counter[str] = Counter()
        for state in self.fleet.devices.values():
            registered = self.registry.device(state.device)
            if registered is not None and state.online is False and (state.down_since or 0.0) >= bound:
                communes[registered.commune] += 1
        lines = []
        for commune_id, down in sorted(communes.items()):
            commune = self.registry.commune(commune_id)
            total = len(self.registry.devices_in(commune_id))
            lines.append(f"- {commune.name if commune else commune_id}: {down}/{total}")
        return lines

    def _send_district(self, event: str, district: _District, lines: list[str], now: float) -> None:
        contacts = self.registry.district_contacts
        total = len(self.registry.devices)
        for lang in sorted({c.language for c in contacts} or {"vi"}):
            title = term("area.offline.district", lang).format(
                down=district.down,
                total=total,
                communes=district.communes,
                name=self.registry.district,
                since=_hhmm(district.since),
            )
            cause = term(f"area.district_cause.{district.cause}", lang)
            head = f"{term(f'event.{event}', lang)}: {title} — {cause}"
            body = [head, *([f"{term('area.communes', lang)}:", *lines] if lines else [])]
            if event == "open":
                body.append(term("area.one_notice", lang))
            notice = Notice(
                event=event,
                device="",
                fault=DISTRICT_FAULT,
                commune="",
                commune_name=self.registry.district,
                hamlet="",
                kind="",
                since=district.since,
                at=now,
                language=lang,
                subject=f"[tincoso] {head}",
                text="\n".join(body),
                alert_id=district.id,
                short=f"{term(f'event.{event}', lang)} {title}"[:160],
            )
            self.dispatcher.submit(notice, [c for c in contacts if c.language == lang])
            self.notices += 1
        if not contacts:
            log.warning("no district_contacts in the registry: district-wide outage notice not sent")
        fields: dict[str, FieldValue | None] = {"down": district.down, "total": total, "area_id": district.id}
        tags = {"commune": "_district", "cause": district.cause, "status": event}
        self.points("area_outage", tags, fields, now)

    # -- small things -----------------------------------------------------------------------

    def _operator(self, device_id: str) -> str:
        """The operator the device's last heartbeat named ("" when none did)."""
        state = self.fleet.devices.get(device_id)
        operator = state.heartbeat.get("operator") if state is not None and state.heartbeat else None
        return str(operator) if operator else ""

    def _operator_dark(self, device_id: str, bound: float) -> bool:
        """Another device on the same operator went dark since ``bound``."""
        operator = self._operator(device_id)
        return bool(operator) and any(
            st.device != device_id
            and st.online is False
            and (st.down_since or 0.0) >= bound
            and self._operator(st.device) == operator
            for st in self.fleet.devices.values()
        )

    def _commune(self, device_id: str) -> str:
        device = self.registry.device(device_id)
        return device.commune if device else ""

    def _window_s(self, device_id: str) -> float:
        state = self.fleet.devices.get(device_id)
        beat = (state.heartbeat_s if state else None) or self.fleet.default_heartbeat_s
        return self.settings.window_heartbeats * beat


def _compatible(cause: Cause | None, area_cause: str) -> bool:
    """A device belongs to its area unless its own evidence names another cause."""
    return cause is None or cause.code == "unknown" or area_cause == "unknown" or cause.code == area_cause


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%H:%M %d/%m")
