"""Serial line faults on the simulated devices: noise, corruption, a pulled cable, a slow device.

Every simulator (``hil_tests.simulators``) has the knobs; these context managers turn one on
for a block and restore the previous setting, so a scenario reads as what happens on site.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from hil_tests.simulators.transport import SimulatedDevice


@contextlib.contextmanager
def line_noise(device: SimulatedDevice, rate: float = 0.3, *, corrupt: bool = False) -> Iterator[None]:
    """A fraction ``rate`` of replies is garbage (random bytes), or, with ``corrupt``, the
    real reply with a bit flipped where the checksum catches it."""
    if not 0 <= rate <= 1:
        raise ValueError(f"noise rate must be 0..1, got {rate!r}")
    before = (device.garbage_rate, device.garbage_kind)
    device.garbage_rate, device.garbage_kind = rate, "corrupt" if corrupt else "random"
    try:
        yield
    finally:
        device.garbage_rate, device.garbage_kind = before


@contextlib.contextmanager
def unplugged(device: SimulatedDevice) -> Iterator[None]:
    """The cable is pulled: the device takes bytes and never answers."""
    before = device.unplugged
    device.unplugged = True
    try:
        yield
    finally:
        device.unplugged = before


@contextlib.contextmanager
def slow_device(device: SimulatedDevice, delay_s: float) -> Iterator[None]:
    """The device answers ``delay_s`` late (past the agent's timeout, it looks dead)."""
    before = device.response_delay_s
    device.response_delay_s = delay_s
    try:
        yield
    finally:
        device.response_delay_s = before
