"""systemd's service notification protocol (sd_notify), for ``Type=notify`` units.

A datagram to ``$NOTIFY_SOCKET``: ``READY=1`` once the service runs, ``WATCHDOG=1`` at
least every ``$WATCHDOG_USEC``/2 so systemd restarts a process whose event loop hung,
``STOPPING=1`` on the way out. Without ``$NOTIFY_SOCKET`` (not under systemd) every call
is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

__all__ = ["notify", "watchdog_interval", "watchdog_pings"]


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of systemd's ``WatchdogSec``), or None if off."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


async def watchdog_pings(stop: asyncio.Event) -> None:
    """Ping the watchdog from the event loop until ``stop`` is set (returns at once if off)."""
    interval = watchdog_interval()
    if interval is None:
        return
    while not stop.is_set():
        notify("WATCHDOG=1")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
