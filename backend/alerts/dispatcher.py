"""The delivery queue: fans notices out to channels, retries failures with backoff.

``submit`` never blocks (a full queue drops the oldest delivery and counts it), a slow or
failing channel occupies one worker at a time, and a retry waits on a timer outside the
workers, so one broken webhook cannot hold up anyone else's alerts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from backend.alerts.channels import Channel, DeliveryError
from backend.alerts.messages import Notice
from backend.registry import Technician

__all__ = ["Delivery", "Dispatcher"]

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    """One notice to one technician over one channel."""

    notice: Notice
    technician: Technician
    channel: str
    attempt: int = 0


Outcome = Callable[[Delivery, str, str | None], None]


class Dispatcher:
    """Delivers notices with bounded, backed-off retries.

    Args:
        channels: Channels by name (``email``, ``webhook``, ``telegram``).
        attempts: Tries per delivery before giving up.
        backoff_s: Delay before the first retry; doubles each time (with jitter).
        backoff_max_s: Longest delay between tries.
        send_timeout_s: Longest a single try may take.
        workers: Deliveries in flight at once.
        max_queued: Deliveries waiting at most; beyond it the oldest is dropped.
        on_outcome: Called with ``(delivery, outcome, error)`` for every try:
            ``sent``, ``retry``, ``failed`` (gave up) or ``dropped``.
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        attempts: int = 5,
        backoff_s: float = 5.0,
        backoff_max_s: float = 600.0,
        send_timeout_s: float = 30.0,
        workers: int = 4,
        max_queued: int = 10000,
        on_outcome: Outcome | None = None,
    ) -> None:
        self.channels = dict(channels)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.send_timeout_s = send_timeout_s
        self.workers = workers
        self.on_outcome = on_outcome
        self.counts: Counter[str] = Counter()
        self._queue: deque[Delivery] = deque(maxlen=max_queued)
        self._ready = asyncio.Event()
        self._waiting: set[asyncio.TimerHandle] = set()
        self._busy = 0
        self._tasks: list[asyncio.Task[None]] = []

    def submit(self, notice: Notice, technicians: Iterable[Technician]) -> int:
        """Queue ``notice`` for every channel each technician can be reached on.

        Returns:
            How many deliveries were queued.
        """
        queued = 0
        for technician in technicians:
            for name, channel in self.channels.items():
                if channel.reaches(technician):
                    self._enqueue(Delivery(notice, technician, name))
                    queued += 1
        return queued

    def start(self) -> None:
        """Start the workers (in the running event loop)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"alert-delivery-{i}") for i in range(self.workers)
            ]

    async def aclose(self) -> None:
        """Stop the workers and retry timers; what is still queued is not delivered."""
        for handle in self._waiting:
            handle.cancel()
        self._waiting.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for channel in self.channels.values():
            aclose = getattr(channel, "aclose", None)
            if aclose is not None:
                await aclose()

    def idle(self) -> bool:
        """Nothing queued, in flight or waiting for a retry."""
        return not self._queue and not self._busy and not self._waiting

    async def wait_idle(self) -> None:
        """Return once `idle` (tests, shutdown); wrap in ``asyncio.timeout`` to bound it."""
        while not self.idle():  # noqa: ASYNC110 - idleness spans queue, workers and timers
            await asyncio.sleep(0.02)

    async def wait_in_flight(self) -> None:
        """Return once nothing is queued or being sent (retries waiting on a timer aside)."""
        while self._queue or self._busy:  # noqa: ASYNC110 - idleness spans queue and workers
            await asyncio.sleep(0.02)

    def _enqueue(self, delivery: Delivery) -> None:
        if len(self._queue) == self._queue.maxlen:
            dropped = self._queue.popleft()
            self._report(dropped, "dropped", "delivery queue full")
        self._queue.append(delivery)
        self._ready.set()

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            delivery = self._queue.popleft()
            self._busy += 1
            try:
                await self._try(delivery)
            finally:
                self._busy -= 1

    async def _try(self, delivery: Delivery) -> None:
        delivery.attempt += 1
        channel = self.channels[delivery.channel]
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await channel.send(delivery.technician, delivery.notice)
        except (DeliveryError, TimeoutError) as exc:
            error = str(exc) or f"no answer within {self.send_timeout_s:g} s"
            if delivery.attempt >= self.attempts:
                log.warning("giving up on %s to %s: %s", delivery.channel, delivery.technician.name, error)
                self._report(delivery, "failed", error)
            else:
                self._report(delivery, "retry", error)
                self._retry_later(delivery)
            return
        except Exception as exc:  # a channel bug must not kill the worker
            log.exception("channel %s crashed", delivery.channel)
            self._report(delivery, "failed", f"{type(exc).__name__}: {exc}")
            return
        self._report(delivery, "sent", None)

    def _retry_later(self, delivery: Delivery) -> None:
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** (delivery.attempt - 1))
        delay *= random.uniform(0.8, 1.2)
        loop = asyncio.get_running_loop()

        def due() -> None:
            self._waiting.discard(handle)
            self._enqueue(delivery)

        handle = loop.call_later(delay, due)
        self._waiting.add(handle)

    def _report(self, delivery: Delivery, outcome: str, error: str | None) -> None:
        self.counts[outcome] += 1
        if self.on_outcome is not None:
            try:
                self.on_outcome(delivery, outcome, error)
            except Exception:
                log.exception("recording a delivery outcome failed")
