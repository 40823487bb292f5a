"""The agent's probes: one module per kind of equipment, all implementing :class:`Probe`.

``create(name, section)`` builds a probe from its config section ``[probes.<name>]``;
the kind is the section's ``kind`` key, or the name itself (``[probes.audio]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.probes.base import Probe, ProbeError

__all__ = ["KINDS", "Probe", "ProbeError", "create"]

KINDS = ("system", "audio", "power_meter", "display", "screen", "modem")


def create(name: str, section: Mapping[str, Any]) -> Probe:
    """Build the probe ``name`` from its config section.

    Raises:
        ValueError: unknown kind, or an option of the wrong type or out of range; the
            message names the key (``probes.power_meter.url is required``).
    """
    if not isinstance(section, Mapping):
        raise ValueError(f"probes.{name} must be a table, got {type(section).__name__}")
    kind = section.get("kind", name)
    if kind == "system":
        from agent.probes.system import SystemProbe

        return SystemProbe(name, section)
    if kind == "audio":
        from agent.probes.audio import AudioProbe

        return AudioProbe(name, section)
    if kind == "power_meter":
        from agent.probes.power_meter import PowerMeterProbe

        return PowerMeterProbe(name, section)
    if kind == "display":
        from agent.probes.display import DisplayProbe

        return DisplayProbe(name, section)
    if kind == "screen":
        from agent.probes.screen import ScreenProbe

        return ScreenProbe(name, section)
    if kind == "modem":
        from agent.probes.modem import ModemProbe

        return ModemProbe(name, section)
    raise ValueError(f"probes.{name}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
