"""What happens during the simulated day: the bulletins and the scripted faults.

Every step acts on the simulated hardware or the device's 4G link, never on the agent or
the backend: what the demo shows is what tincoso detects by itself. Targets are picked
from preferred communes so the story reads the same on every run; a smaller fleet that
lacks a device for a fault simply skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from backend.registry import Device
from hil_tests.demo.district import District
from hil_tests.demo.timeline import EVENING, MORNING, sim_minutes
from hil_tests.faults.proxy import TcpProxy
from hil_tests.rig import Rig, RigDevice
from hil_tests.simulators.speaker_cluster import SpeakerCluster

LED_STALE_S = 2 * 3600.0  # last provincial sync two hours ago (the rule's limit is one)


@dataclass(frozen=True)
class Roles:
    """Which device suffers which fault (None: the fleet has no device left for it)."""

    dead_air: str | None
    lost_4g: str | None
    amp_dies: str | None
    line_cut: str | None
    board_dark: str | None
    led: str | None

    def linked(self) -> set[str]:
        """Devices whose 4G link the demo cuts (they get a link proxy)."""
        return {self.lost_4g} if self.lost_4g else set()


@dataclass
class Step:
    """One thing that happens at a simulated time."""

    sim: float
    kind: str  # bulletin, fault, repair
    text: str
    action: Callable[[], object]
    device: str | None = None
    done: bool = field(default=False)


def choose_roles(district: District) -> Roles:
    """Pick a distinct device for every fault, preferring the same communes every run."""
    used: set[str] = set()

    def pick(pool: Iterable[Device], *communes: str) -> str | None:
        candidates = [d for d in pool if d.id not in used]
        ranked = sorted(candidates, key=lambda d: communes.index(d.commune) if d.commune in communes else 99)
        if not ranked:
            return None
        used.add(ranked[0].id)
        return ranked[0].id

    speakers = district.of_kind("speaker_cluster")
    return Roles(
        dead_air=pick(speakers, "la-hien", "lau-thuong"),
        amp_dies=pick(speakers, "trang-xa", "dan-tien"),
        line_cut=pick(speakers, "phu-thuong", "binh-long"),
        # A far mountain commune: the likeliest to lose 4G.
        lost_4g=pick(reversed(speakers), "thuong-nung", "sang-moc", "nghinh-tuong"),
        board_dark=pick(district.of_kind("eboard"), "phuong-giao", "dan-tien"),
        led=pick(district.of_kind("district_led")),
    )


def _where(district: District, device: RigDevice) -> str:
    return f"{district.commune_name(device.commune)}, {device.hamlet}"


def build_script(rig: Rig, district: District, roles: Roles) -> list[Step]:
    """The day's steps, in simulated-time order."""
    speakers = [d for d in rig if d.kind == "speaker_cluster"]
    steps: list[Step] = []

    def at(clock: str, kind: str, text: str, action: Callable[[], object], device: str | None = None) -> None:
        steps.append(Step(sim_minutes(clock), kind, text, action, device))

    def everyone(programme: str | None) -> Callable[[], None]:
        def run() -> None:
            for device in speakers:
                if programme is None:
                    device.speaker.end_bulletin()
                else:
                    device.speaker.start_bulletin(programme)

        return run

    count = f"{len(speakers)} speaker clusters"
    at("05:30", "bulletin", f"{MORNING} starts in every hamlet ({count})", everyone("ban-tin-sang"))
    at("06:30", "bulletin", f"{MORNING} ends", everyone(None))
    at("17:00", "bulletin", f"{EVENING} starts in every hamlet ({count})", everyone("ban-tin-chieu"))
    at("18:00", "bulletin", f"{EVENING} ends", everyone(None))
    if roles.dead_air:
        d = rig[roles.dead_air]
        where = _where(district, d)
        at("05:50", "fault", f"the receiver's stream stalls in {where}: dead air", d.speaker.dead_air, d.id)
        back = partial(d.speaker.start_bulletin, "ban-tin-sang")
        at("06:10", "repair", f"the stream comes back in {where}", back, d.id)
    if roles.lost_4g:
        d = rig[roles.lost_4g]
        where = _where(district, d)
        link = d.proxy
        assert link is not None, "the 4G fault needs a link proxy (Roles.linked)"
        lose = partial(_lose_4g, d.speaker, link)
        at("06:00", "fault", f"{where} loses 4G (the agent keeps measuring and queues)", lose, d.id)
        restore = partial(_restore_4g, d.speaker, link)
        at("13:00", "repair", f"4G is back in {where}: the agent's queue drains", restore, d.id)
    if roles.board_dark:
        d = rig[roles.board_dark]
        where = _where(district, d)
        at("08:00", "fault", f"the e-board at {where} goes dark (power supply)", d.board.goes_dark, d.id)
        at("17:30", "repair", f"the e-board at {where} is repaired", d.board.repair, d.id)
    if roles.led:
        d = rig[roles.led]
        stale = partial(d.board.source_sync_stale, LED_STALE_S)
        at("09:00", "fault", "the district LED board stops syncing with the provincial source", stale, d.id)
        at(
            "17:50",
            "repair",
            "the district LED board syncs with the provincial source again",
            d.board.repair,
            d.id,
        )
    if roles.amp_dies:
        d = rig[roles.amp_dies]
        where = _where(district, d)
        at(
            "17:10",
            "fault",
            f"the amplifier dies in {where} (audio present, 0 W)",
            d.speaker.amplifier_dies,
            d.id,
        )
        at(
            "17:40",
            "repair",
            f"a technician replaces the amplifier's fuse in {where}",
            d.speaker.repair,
            d.id,
        )
    if roles.line_cut:
        d = rig[roles.line_cut]
        where = _where(district, d)
        at(
            "17:20",
            "fault",
            f"the speaker line is cut in {where} (amplifier idles)",
            d.speaker.speaker_line_cut,
            d.id,
        )
    return sorted(steps, key=lambda s: s.sim)


def _lose_4g(speaker: SpeakerCluster, link: TcpProxy) -> None:
    speaker.signal_lost()
    link.cut()


def _restore_4g(speaker: SpeakerCluster, link: TcpProxy) -> None:
    speaker.signal_restored()
    link.restore()
