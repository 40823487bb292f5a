"""The monitor sends the weekly digest itself: each ``[monitor] digest_weekday`` (0 = Monday)
at ``digest_at`` (Vietnam time), for the seven days before, to the district contacts.

Which week went out last is kept in the monitor's state directory (``digest.json``), so a
monitor down at the hour sends that week's digest once when it is back, and a restart does
not send it twice; a first start only begins the schedule (no digest of a week gone by).
``digest_weekday = -1`` turns it off (``tincoso digest --send`` by hand).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path

from backend.alerts.dispatcher import Dispatcher
from backend.health.compute import device_health
from backend.health.digest import digest_notice, last_week
from backend.health.fetch import fetch_crash_free, fetch_outages
from backend.influx import InfluxClient, InfluxError
from backend.kpi.model import Period
from backend.registry import LOCAL_TZ, Registry

__all__ = ["DIGEST_FILE", "WeeklyDigest", "due_week"]

log = logging.getLogger(__name__)

DIGEST_FILE = "digest.json"
CHECK_S = 300.0


def due_week(now: datetime, weekday: int, at: time, last_sent: date | None) -> Period | None:
    """The week whose digest is due at local time ``now`` (None: nothing due).

    Args:
        now: Vietnam local time.
        weekday: The sending day (0 = Monday), -1 for never.
        at: The sending time on that day.
        last_sent: The last day of the last week sent.
    """
    if weekday < 0:
        return None
    back = (now.weekday() - weekday) % 7
    if back == 0 and now.time() < at:
        back = 7  # the day, not yet the hour: the last sending moment is a week ago
    week = last_week(now.date() - timedelta(days=back))
    return None if last_sent is not None and last_sent >= week.last_day else week


class WeeklyDigest:
    """Sends the digest when due (the monitor runs `run`).

    Args:
        registry: Devices and district contacts.
        influx: Where outages and heartbeats are read.
        dispatcher: The monitor's delivery queue.
        state_dir: Where ``digest.json`` is kept.
        weekday: Sending day (0 = Monday), -1 for never.
        at: ``HH:MM`` Vietnam time.
        now: Wall clock (epoch s).
    """

    def __init__(
        self,
        registry: Registry,
        influx: InfluxClient,
        dispatcher: Dispatcher,
        state_dir: str | os.PathLike[str],
        *,
        weekday: int,
        at: str,
        now: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.influx = influx
        self.dispatcher = dispatcher
        self.path = Path(state_dir) / DIGEST_FILE
        self.weekday = weekday
        hour, minute = (int(x) for x in at.split(":"))
        self.at = time(hour, minute)
        self.now = now

    def last_sent(self) -> date | None:
        """The last day of the last week sent (None: never, or the file is unreadable)."""
        try:
            return date.fromisoformat(json.loads(self.path.read_text(encoding="utf-8"))["last_day"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("digest record %s unreadable (%s): taken as never sent", self.path, exc)
            return None

    async def send_if_due(self) -> Period | None:
        """Send the due week's digest (if any) to the district contacts; return its week.

        Raises:
            InfluxError: the week's figures could not be read (tried again at the next check).
        """
        now = self.now()
        last = self.last_sent()
        week = due_week(datetime.fromtimestamp(now, LOCAL_TZ), self.weekday, self.at, last)
        if week is None:
            return None
        if last is None and not self.path.exists():
            # First start: the schedule begins here, not with a digest of a week gone by.
            self._record(week)
            return None
        contacts = self.registry.district_contacts
        if not contacts:
            log.warning("no district_contacts in the registry: weekly digest not sent")
        else:
            outages = await fetch_outages(self.influx, week)
            crash_free = await fetch_crash_free(self.influx, self.registry, week)
            health = device_health(self.registry, week, outages, crash_free)
            for language in sorted({c.language for c in contacts}):
                notice = digest_notice(self.registry, week, health, now, language)
                self.dispatcher.submit(notice, [c for c in contacts if c.language == language])
            log.info("weekly digest %s..%s sent to %d contacts", week.first_day, week.last_day, len(contacts))
        self._record(week)
        return week

    def _record(self, week: Period) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"last_day": week.last_day.isoformat()}), encoding="utf-8")
        except OSError as exc:
            log.warning("digest record %s not written: %s", self.path, exc)

    async def run(self) -> None:
        """Check every few minutes, forever (cancel to stop)."""
        while True:
            try:
                await self.send_if_due()
            except InfluxError as exc:
                log.warning("weekly digest not sent yet: %s", exc)
            await asyncio.sleep(CHECK_S)
