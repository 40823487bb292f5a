"""Fleet state: birth/death with bdseq, heartbeat timeout, down intervals; and sequence gaps."""

from __future__ import annotations

from backend.monitor.clock import ManualClock
from backend.monitor.gaps import GapDetector
from backend.monitor.state import FleetState
from tests.monitor_support import ScriptedDevice, local_ts


def _fleet() -> tuple[ManualClock, FleetState, ScriptedDevice]:
    clock = ManualClock(local_ts(9, 0))
    return (
        clock,
        FleetState(clock, missed_heartbeats=3),
        ScriptedDevice("vn-trangxa-loa-01", clock, heartbeat_s=10),
    )


def test_birth_then_lwt_death_then_new_birth_gives_one_down_interval() -> None:
    clock, fleet, dev = _fleet()
    assert [c.reason for c in fleet.apply(dev.birth())] == ["birth"]
    clock.advance(5)
    fleet.apply(dev.heartbeat())
    clock.advance(20)
    [down] = fleet.apply(dev.death())
    assert (down.online, down.reason, down.at) == (False, "lwt", local_ts(9, 0, 5))
    clock.advance(60)
    dev.bdseq += 1
    [up] = fleet.apply(dev.birth())
    assert up.online
    assert up.down_since == local_ts(9, 0, 5)


def test_stale_death_of_an_earlier_session_is_ignored() -> None:
    clock, fleet, dev = _fleet()
    dev.bdseq = 5
    fleet.apply(dev.birth())
    clock.advance(1)
    assert fleet.apply(dev.death(bdseq=4)) == []
    assert fleet.get(dev.device).online is True
    assert fleet.get(dev.device).stale_deaths == 1


def test_heartbeat_timeout_uses_the_births_interval_and_a_heartbeat_resumes() -> None:
    clock, fleet, dev = _fleet()
    fleet.apply(dev.birth())
    clock.advance(29)
    assert fleet.check_timeouts() == []
    clock.advance(2)  # 31 s > 3 x 10 s
    [down] = fleet.check_timeouts()
    assert (down.online, down.reason, down.at) == (False, "timeout", local_ts(9, 0))
    assert fleet.check_timeouts() == []  # once
    clock.advance(100)
    [up] = fleet.apply(dev.heartbeat())
    assert (up.reason, up.down_since) == ("resumed", local_ts(9, 0))


def test_after_a_death_only_a_birth_brings_the_device_back() -> None:
    _clock, fleet, dev = _fleet()
    fleet.apply(dev.birth())
    fleet.apply(dev.death())
    assert fleet.apply(dev.heartbeat()) == []
    assert fleet.get(dev.device).online is False


def test_reboots_counted_only_for_a_new_boot_id() -> None:
    _clock, fleet, dev = _fleet()
    fleet.apply(dev.birth())
    dev.bdseq += 1
    fleet.apply(dev.birth())  # reconnect, same boot
    dev.reboot()
    fleet.apply(dev.birth())
    assert len(fleet.get(dev.device).boots) == 1


def test_gap_reported_after_grace_unless_replayed_messages_fill_it() -> None:
    gaps = GapDetector(grace_s=10)
    for seq in (1, 2, 3, 10):
        gaps.observe("d", "b1", seq, now=0)
    for seq in (4, 5, 7, 8):  # the backlog arrives late, 6 and 9 never do
        gaps.observe("d", "b1", seq, now=2)
    assert gaps.expire(now=5) == []
    assert gaps.pending("d") == 2
    found = gaps.expire(now=10)
    assert [(g.from_seq, g.to_seq, g.missing) for g in found] == [(6, 6, 1), (9, 9, 1)]
    assert gaps.expire(now=20) == []


def test_new_boot_starts_a_new_sequence_and_duplicates_are_harmless() -> None:
    gaps = GapDetector(grace_s=0)
    for seq in (1, 2, 2, 3):
        gaps.observe("d", "b1", seq, now=0)
    gaps.observe("d", "b2", 1, now=0)
    gaps.observe("d", "b2", 2, now=0)
    gaps.observe("d", "b1", 4, now=0)  # late message of the previous boot
    assert gaps.expire(now=1) == []
    gaps.observe("d", "b2", 50, now=1)
    [gap] = gaps.expire(now=1)
    assert (gap.boot_id, gap.from_seq, gap.to_seq) == ("b2", 3, 49)


def test_old_sessions_last_will_arriving_after_the_new_boots_birth_keeps_the_device_online() -> None:
    """An ESP32 reset by its watchdog reconnects before the broker gave up on the old session
    (keepalive x 1.5): the old Last Will arrives after the new birth. The MCU agent keeps
    ``bdseq`` in flash across boots, so that will is older and ignored."""
    clock, fleet, dev = _fleet()
    dev.bdseq = 7
    fleet.apply(dev.birth())
    old_will = dev.death()  # bdseq 7, set at the old session's CONNECT
    clock.advance(3)
    dev.reboot()  # new boot_id, bdseq 8 (boot-persistent)
    assert fleet.apply(dev.birth()) == []  # still online: nothing to announce
    clock.advance(20)
    assert fleet.apply(old_will) == []
    assert fleet.get(dev.device).online is True
    assert fleet.get(dev.device).stale_deaths == 1


def test_a_bdseq_restarting_at_one_after_a_reboot_lets_the_old_last_will_through() -> None:
    """Why bdseq must survive a reboot: with a counter that restarts, the stale will wins."""
    clock, fleet, dev = _fleet()
    dev.bdseq = 7
    fleet.apply(dev.birth())
    old_will = dev.death()
    dev.reboot()
    dev.bdseq = 1  # what the old MicroPython agent did
    fleet.apply(dev.birth())
    clock.advance(20)
    [down] = fleet.apply(old_will)
    assert down.online is False
