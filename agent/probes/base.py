"""The probe interface every probe kind implements, and the one error a probe raises.

A probe measures one piece of equipment (the board itself, the audio line, the amplifier's
power meter, the display controller, the 4G modem). The runtime calls ``read()`` on a
schedule; a failing probe raises :class:`ProbeError`, which the runtime turns into a
``fault_start`` event with code ``probe.<name>`` while it keeps retrying. Nothing else may
escape a probe: a bad device must never take the agent down.
"""

from __future__ import annotations

import asyncio
from typing import Any


class ProbeError(Exception):
    """A probe could not read its device; the message names the device and the problem."""


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a probe's background task (sampling, measuring) and wait until it has ended.

    The task is cancelled again while it runs on: a cancel that lands as an awaited read
    completes can be lost inside a library (``asyncio.wait_for`` on 3.11 loses it), and a
    measuring loop that lost it would otherwise run, and be waited for, for ever.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled():
        task.exception()  # retrieved: the task's own failure was already recorded by it


class Probe:
    """Base of every probe kind.

    Attributes:
        name: the probe's name in the config (``"system"``, ``"audio"``, ...).
        errors: how many times ``read()`` (or a command) failed since the probe was made.
    """

    name: str = "probe"

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.errors = 0
        self._events: list[dict[str, Any]] = []

    async def start(self) -> None:
        """Open the device; never raises for a missing device (``read()`` will)."""

    async def start_check(self) -> None:
        """Open the device for a one-off check (``check-config``): like ``start()``, but it
        must leave nothing behind that a later ``start()`` would read (markers, files)."""
        await self.start()

    async def read(self) -> dict[str, Any]:
        """Latest values, named as protocol v1 fields.

        Raises:
            ProbeError: the device did not answer or answered garbage.
        """
        raise NotImplementedError

    def drain_events(self) -> list[dict[str, Any]]:
        """Events since the last call: ``{"event", "code", "programme", "detail", "duration_s"}``."""
        events, self._events = self._events, []
        return events

    async def close(self) -> None:
        """Release the device; safe to call twice."""

    def _fail(self, problem: str) -> ProbeError:
        """Count a failure and build the error to raise (``raise self._fail(...)``)."""
        self.errors += 1
        return ProbeError(problem)

    def _emit(
        self,
        event: str,
        code: str,
        *,
        programme: str | None = None,
        detail: str | None = None,
        duration_s: float | None = None,
    ) -> None:
        self._events.append(
            {"event": event, "code": code, "programme": programme, "detail": detail, "duration_s": duration_s}
        )
