"""A commune e-board or the district LED board: display controller plus 4G modem.

The board composite mirrors :class:`~hil_tests.simulators.speaker_cluster.SpeakerCluster`
so the rig treats every device kind alike: ``start``/``stop``, ``probe_urls()`` for the
agent config, and fault methods named for what a technician would find on site.
"""

from __future__ import annotations

from typing import Any, Self

from hil_tests.simulators.display_board import DisplayBoardSimulator
from hil_tests.simulators.modem import ModemSimulator

BOARD_KINDS = ("eboard", "district_led")


class Board:
    """Simulated hardware of one e-board or LED board, for one agent.

    Args:
        kind: ``"eboard"`` or ``"district_led"``.
        transport: ``"pty"`` or ``"tcp"`` for the serial devices.
        modules_total: LED modules (an LCD e-board has one).
        rotate_s: seconds each content item stays on screen.
        seed: seed of the random generators, for reproducible runs.
    """

    def __init__(
        self,
        kind: str = "eboard",
        *,
        transport: str = "pty",
        modules_total: int | None = None,
        rotate_s: float = 10.0,
        seed: int | None = 0,
    ) -> None:
        if kind not in BOARD_KINDS:
            raise ValueError("board kind must be one of {}, got {!r}".format(", ".join(BOARD_KINDS), kind))
        self.kind = kind
        if modules_total is None:
            modules_total = 48 if kind == "district_led" else 1
        self.display = DisplayBoardSimulator(
            transport=transport, modules_total=modules_total, rotate_s=rotate_s, seed=seed
        )
        self.modem = ModemSimulator(transport=transport, seed=seed)

    def probe_urls(self) -> dict[str, dict[str, Any]]:
        """Where the agent's probes find each part: probe name to its settings."""
        return {"display": {"url": self.display.url}, "modem": {"url": self.modem.url}}

    def start(self) -> Self:
        """Start every part."""
        self.display.start()
        self.modem.start()
        return self

    def stop(self) -> None:
        """Stop every part."""
        self.display.stop()
        self.modem.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def goes_dark(self) -> None:
        """The screen loses power (the controller still answers)."""
        self.display.set_power(False)

    def goes_blank(self) -> None:
        """Powered, but the output is black (player crashed, HDMI lost)."""
        self.display.set_blank(True)

    def freezes(self) -> None:
        """The picture is stuck on one frame."""
        self.display.freeze()

    def modules_fail(self, count: int) -> None:
        """``count`` LED modules go dark."""
        self.display.fail_modules(count)

    def source_sync_stale(self, age_s: float) -> None:
        """The board stopped syncing with the provincial source ``age_s`` seconds ago."""
        self.display.make_sync_stale(age_s)

    def controller_unplugged(self, unplugged: bool = True) -> None:
        """The display controller stops (or resumes) answering on its serial line."""
        self.display.unplugged = unplugged

    def signal_lost(self) -> None:
        """The 4G signal vanishes."""
        self.modem.lose_signal()

    def signal_restored(self, rssi: int = 20) -> None:
        """The 4G signal is back at ``rssi``."""
        self.modem.set_signal(rssi)

    def repair(self) -> None:
        """Every display fault cleared: powered, moving picture, modules fine, syncing."""
        self.display.set_power(True)
        self.display.set_blank(False)
        self.display.unfreeze()
        self.display.fail_modules(0)
        self.display.make_sync_fresh()
        self.display.unplugged = False
