# Runs under MicroPython's unix port (tests/test_mcu_units.py): the MCU agent's pure parts.
import os
import time

from mptest import run, test

from agent.micropython.mcu_agent import FlashCounter, McuAgent, MonoClock

FLASH = SCRIPT_ARGS[1]  # noqa: F821 -- set by the runner
PERIOD = 1 << 30  # an ESP32's tick period (the unix port's is 2**62)


def esp32_ticks_diff(a, b):
    return ((a - b + PERIOD // 2) & (PERIOD - 1)) - PERIOD // 2


class FakeTicks:
    """time.ticks_ms() of an ESP32."""

    def __init__(self, start):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, ms):
        self.now = (self.now + ms) & (PERIOD - 1)


@test
def mono_clock_keeps_counting_through_the_tick_wrap():
    ticks = FakeTicks(PERIOD - 2500)
    clock = MonoClock(ticks, esp32_ticks_diff)
    seen = []
    for _ in range(6):
        ticks.advance(1000)
        seen.append(clock.ms())
    assert seen == [1000, 2000, 3000, 4000, 5000, 6000], seen
    assert clock.wraps == 1, clock.wraps


@test
def mono_clock_runs_past_the_old_six_day_limit():
    ticks = FakeTicks(0)
    clock = MonoClock(ticks, esp32_ticks_diff)
    for _ in range(24 * 20):  # 20 days in 1-hour steps: two wraps of 2**30 ms
        ticks.advance(3600 * 1000)
        clock.ms()
    assert clock.ms() == 20 * 86400 * 1000, clock.ms()
    assert clock.wraps == 1, clock.wraps


@test
def bdseq_survives_a_reboot():
    path = FLASH + "/bdseq-unit"
    first = FlashCounter(path)
    assert not first.existed
    assert first.bump() == 1 and first.bump() == 2
    again = FlashCounter(path)
    assert again.existed and again.value == 2
    assert again.bump() == 3


class FakeBoard:
    platform = "micropython-unix"
    net_type = "wifi"
    audio_rate = 8000

    def __init__(self, flash):
        self.flash_dir = flash

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def wall_ms(self):
        return int(time.time() * 1000)

    def reset_cause(self):
        return "power_loss"

    def watchdog(self, timeout_ms):
        return self

    def feed(self):
        pass

    def signal_dbm(self):
        return None


@test
def a_message_too_large_for_the_ring_is_counted_in_queue_dropped():
    flash = FLASH + "/oversize"
    os.mkdir(flash)
    agent = McuAgent({"device": "vn-test-loa-01", "record_size": 200, "ring_records": 4}, FakeBoard(flash))
    assert agent.emit("event", {"event": "fault_start", "code": "dead_air"})
    assert not agent.emit("event", {"event": "fault_start", "code": "dead_air", "detail": "x" * 300})
    assert agent.lost == 1 and agent.queue_dropped() == 1
    # The ring's own drops (full) count too.
    for _ in range(5):
        agent.emit("event", {"event": "fault_end", "code": "dead_air"})
    assert agent.ring.dropped == 2 and agent.queue_dropped() == 3, (agent.ring.dropped, agent.lost)


@test
def an_invalid_message_is_counted_not_raised():
    flash = FLASH + "/invalid"
    os.mkdir(flash)
    agent = McuAgent({"device": "vn-test-loa-01"}, FakeBoard(flash))
    assert not agent.emit("audio", {"rms_dbfs": "loud"})
    assert agent.lost == 1


run()
