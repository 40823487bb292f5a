"""Fault injection for the HIL rig: what goes wrong in a commune, made to happen on demand.

* :class:`AgentProcess`: the real agent; ``power_cut()``/``restore()`` (new boot id),
  ``crash()``/``restart()``, ``stop()``; clock skew through ``clock_offset_s``;
* :class:`TcpProxy`: the 4G link between agent and broker; ``cut()``, ``restore()``,
  ``delay(ms)``, ``throttle(bytes_per_s)``, ``flap(n, period_s)``;
* :class:`BackendProcess`, :func:`broker_down`, :func:`influx_down` (and their timed
  forms): the district server's failures;
* :func:`line_noise`, :func:`unplugged`, :func:`slow_device`: serial lines;
* :func:`tiny_filesystem`, :func:`fill`: disk full on the device.
"""

from __future__ import annotations

from hil_tests.faults.agent import AgentProcess, AgentUnavailable, agent_command, new_boot_id
from hil_tests.faults.backend import (
    BackendProcess,
    FleetDevice,
    broker_down,
    broker_restart,
    bulletin_window_now,
    influx_down,
    influx_outage,
    write_registry,
)
from hil_tests.faults.disk import DiskFaultUnavailable, fill, free_space, tiny_filesystem
from hil_tests.faults.proxy import TcpProxy
from hil_tests.faults.serial import line_noise, slow_device, unplugged

__all__ = [
    "AgentProcess",
    "AgentUnavailable",
    "BackendProcess",
    "DiskFaultUnavailable",
    "FleetDevice",
    "TcpProxy",
    "agent_command",
    "broker_down",
    "broker_restart",
    "bulletin_window_now",
    "fill",
    "free_space",
    "influx_down",
    "influx_outage",
    "line_noise",
    "new_boot_id",
    "slow_device",
    "tiny_filesystem",
    "unplugged",
    "write_registry",
]
