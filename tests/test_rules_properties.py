"""Property tests of the rule state machines: random device histories on an injected clock.

Whatever a device sends and however time moves: every (device, fault) alternates
open/clear starting with open, the alert store and the rule engine agree on what is open,
and once the device is measured healthy again (in a bulletin and the board's hours, where
faults can be seen gone) and time has passed, every open alert closes.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.config import MqttSettings
from backend.monitor.clock import ManualClock
from backend.monitor.config import AlertSettings, MonitorConfig, MonitorSettings
from backend.monitor.rules import RulesConfig, Transition
from backend.monitor.service import Monitor
from backend.registry import load_registry
from tests.monitor_support import ScriptedDevice, local_ts, wire
from tests.test_registry import EXAMPLE

REGISTRY = load_registry(EXAMPLE)
RULES = {
    "amp_idle": {"for_s": 20},
    "board_dark": {"for_s": 30},
    "weak_signal": {"for_s": 60},
    "reboot_loop": {"count": 2, "window_s": 600},
    "data_loss": {"count": 5, "window_s": 600},
    "playing_off_schedule": {"for_s": 60},
}

_audio = st.fixed_dictionaries(
    {
        "playing": st.booleans(),
        "dead_air": st.booleans(),
        "amp_power_w": st.one_of(st.none(), st.floats(0, 100)),
    }
)
_heartbeat = st.fixed_dictionaries(
    {
        "signal_dbm": st.one_of(st.none(), st.integers(-130, -50)),
        "disk_ro": st.booleans(),
        "temp_c": st.floats(20, 95),
    }
)
_display = st.fixed_dictionaries(
    {
        "power": st.booleans(),
        "blank": st.booleans(),
        "frozen": st.booleans(),
        "source_sync_age_s": st.one_of(st.none(), st.floats(0, 10000)),
    }
)
_action = st.one_of(
    st.tuples(st.just("birth"), st.integers(0, 1)),
    st.tuples(st.just("death"), st.integers(0, 1)),
    st.tuples(st.just("reboot"), st.integers(0, 1)),
    st.tuples(st.just("heartbeat"), st.integers(0, 1), _heartbeat),
    st.tuples(st.just("audio"), st.just(0), _audio),
    st.tuples(st.just("display"), st.just(1), _display),
    st.tuples(
        st.just("event"),
        st.just(0),
        st.sampled_from(["fault_start", "fault_end"]),
        st.sampled_from(["amp_idle", "dead_air"]),
    ),
    st.tuples(st.just("skip_seq"), st.integers(0, 1), st.integers(1, 20)),
    st.tuples(st.just("advance"), st.floats(0.5, 900)),
)


def _next_evidence_window(now: float, speaker: str, board: str) -> float:
    """The first minute from ``now`` at least 60 s into a bulletin, within the board's hours."""
    for minute in range(1, 3 * 24 * 60):
        ts = now + 60 * minute
        bulletin = REGISTRY.bulletin_at(speaker, ts) is not None and REGISTRY.bulletin_at(speaker, ts - 60)
        if bulletin and REGISTRY.operating_at(board, ts) is not False:
            return ts
    raise AssertionError("the example registry has no bulletin within the board's hours")


def _run(actions: list[tuple[Any, ...]], state_dir: Path, start: float) -> None:
    clock = ManualClock(start)
    config = MonitorConfig(
        mqtt=MqttSettings(client_id="prop"),
        monitor=MonitorSettings(client_id="prop-monitor", state_dir=str(state_dir), gap_grace_s=30),
        rules=RulesConfig.from_dict(RULES),
        alerts=AlertSettings(),
    )
    monitor = Monitor(config, REGISTRY, None, clock=clock, channels={})
    devices = [
        ScriptedDevice("vn-trangxa-loa-01", clock, heartbeat_s=60),
        ScriptedDevice("vn-huyen-led-01", clock, heartbeat_s=60, kind="district_led"),
    ]
    history: list[Transition] = []
    original = monitor.alerts.handle

    def record(transition: Transition) -> None:
        history.append(transition)
        original(transition)

    monitor.alerts.handle = record  # type: ignore[method-assign]

    def send(msg: dict[str, Any]) -> None:
        topic, payload = wire(msg)
        monitor.handle(topic, payload)

    for action in actions:
        name = action[0]
        if name == "advance":
            clock.advance(action[1])
            monitor.tick()
            continue
        dev = devices[action[1]]
        if name == "birth":
            dev.bdseq += 1
            send(dev.birth())
        elif name == "death":
            send(dev.death())
        elif name == "reboot":
            dev.reboot()
            send(dev.birth())
        elif name == "heartbeat":
            send(dev.heartbeat(**action[2]))
        elif name == "audio":
            send(dev.audio(**action[2]))
        elif name == "display":
            send(dev.display(**action[2]))
        elif name == "event":
            send(dev.event(action[2], action[3]))
        elif name == "skip_seq":
            dev.seq += action[2]
        assert set(monitor.store.open) == monitor.rules.open_faults()

    # Healthy again: a fresh session, good readings, agent faults ended, time moves on.
    clock.advance(3600)
    for dev in devices:
        dev.bdseq += 1
        send(dev.birth())
        send(dev.heartbeat())
        send(dev.event("fault_end", "amp_idle"))
        send(dev.event("fault_end", "dead_air"))
    # A fault closes only on a measurement that shows it gone: move into a bulletin inside
    # the board's hours, where sound and a lit board are evidence.
    clock.set(_next_evidence_window(clock.now(), devices[0].device, devices[1].device))
    for dev in devices:
        dev.bdseq += 1
        send(dev.birth())
        send(dev.heartbeat())
    send(devices[0].audio(playing=True, dead_air=False, amp_power_w=60.0))
    send(devices[0].audio(playing=False, amp_power_w=0.0))
    send(devices[1].display())
    for _ in range(12):  # past the data-loss and reboot-loop windows, heard all along
        clock.advance(60)
        for dev in devices:
            send(dev.heartbeat())
        monitor.tick()
    assert monitor.store.open == {}
    assert monitor.rules.open_faults() == set()

    per_fault: dict[tuple[str, str], list[bool]] = {}
    for t in history:
        if t.unconfirmed:  # evidence ended: neither an open nor a close
            continue
        per_fault.setdefault((t.device, t.fault), []).append(t.opened)
    for key, states in per_fault.items():
        assert states[0] is True, key
        assert all(a != b for a, b in itertools.pairwise(states)), (key, states)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(_action, max_size=40),
    start=st.sampled_from([local_ts(5, 20), local_ts(12, 0), local_ts(16, 55), local_ts(21, 50)]),
)
def test_rule_state_machines_never_duplicate_and_always_close(
    actions: list[tuple[Any, ...]], start: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _run(actions, Path(tmp), start)
