"""systemd's service notification protocol (``sd_notify``), without a dependency.

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a datagram socket, ``@`` for the
abstract namespace); ``WatchdogSec=`` adds ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``).
:class:`ServiceNotifier` says ``READY=1`` after the agent's first poll (probes started, the
queue open) and then ``WATCHDOG=1`` every half interval, but only while the reporting
loop makes progress: an agent whose loop hangs stops feeding the watchdog and systemd
restarts it. Outside systemd every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``); False outside systemd."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), address)
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """``WatchdogSec=`` in seconds when the watchdog is meant for this process, else None."""
    env = env if env is not None else os.environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


class ServiceNotifier:
    """Tells systemd the agent is ready, then keeps its watchdog fed while polls progress.

    Args:
        progress: a counter that grows with every completed poll (``Agent.polls``).
        env: the environment (injectable for tests).
        clock: monotonic seconds (injectable).
    """

    def __init__(
        self,
        progress: Callable[[], int],
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.progress = progress
        self.env = dict(env if env is not None else os.environ)
        self.clock = clock
        self.interval_s = watchdog_interval_s(self.env)
        self.pings = 0

    async def run(self, status: str) -> None:
        """Wait for the first poll, say READY=1, then feed the watchdog until cancelled."""
        if not self.env.get("NOTIFY_SOCKET"):
            return
        while self.progress() < 1:  # noqa: ASYNC110 (a counter owned by the agent, not an event)
            await asyncio.sleep(0.05)
        notify(f"READY=1\nSTATUS={status}", self.env)
        if self.interval_s is None:
            return
        seen, since = self.progress(), self.clock()
        while True:
            await asyncio.sleep(self.interval_s / 2)
            now, count = self.clock(), self.progress()
            if count != seen:
                seen, since = count, now
            # Keep feeding through one slow poll (probe timeouts), never through a hung loop.
            if now - since < self.interval_s and notify("WATCHDOG=1", self.env):
                self.pings += 1

    def stopping(self) -> None:
        """Tell systemd a clean stop is under way."""
        with contextlib.suppress(Exception):
            notify("STOPPING=1", self.env)
