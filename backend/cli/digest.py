"""``tincoso digest``: the weekly device-health digest, previewed or sent to the district contacts.

Without ``--send`` it prints the digest (``--lang en`` for English). With ``--send`` it goes
through the configured alert channels (``[alerts] smtp_host`` for e-mail, the webhook) to
every ``district_contacts`` entry of the registry, each in their language. The week is the
seven local days before today, or the seven ending ``--to``. The monitor sends it by itself
every week (``[monitor] digest_weekday``, ``digest_at``, `backend.health.weekly`); this
command previews it or sends one by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import date, datetime, timedelta

from backend.alerts.channels import Channel, DeliveryError
from backend.catalogue import term
from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.cli.context import CliContext, load_context, parse_day
from backend.cli.view import console
from backend.health import device_health, digest_notice, fetch_crash_free, fetch_outages, last_week
from backend.health.compute import DeviceHealth
from backend.influx import InfluxError
from backend.kpi.model import Period
from backend.monitor.service import build_channels
from backend.registry import LOCAL_TZ

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    """Add ``digest``."""
    digest = subparsers.add_parser(
        "digest",
        help="the weekly device-health digest: preview, or --send to the district contacts",
        description="Outages by cause, MTBF, MTTR and crash-free hours per device and commune over a "
        "week, with the five devices that did worst and what to do. Printed, or sent (--send) to the "
        "registry's district_contacts through the configured alert channels.",
    )
    digest.add_argument("--config", required=True, help="backend.toml")
    digest.add_argument("--to", dest="last_day", type=parse_day, help="last local day (default: yesterday)")
    digest.add_argument("--days", type=int, default=7, help="days in the digest (default 7)")
    digest.add_argument("--lang", choices=("vi", "en"), default="vi", help="preview language (default vi)")
    digest.add_argument("--send", action="store_true", help="send it to the district contacts")
    digest.set_defaults(handler=run_digest)


def run_digest(args: argparse.Namespace) -> int:
    """Print or send the digest."""
    ctx = load_context(args.config)
    if args.days < 1:
        raise CliError(f"--days must be at least 1, got {args.days}")
    today = datetime.now(LOCAL_TZ).date()
    period = _period(args.last_day, args.days, today)
    try:
        health = asyncio.run(_health(ctx, period))
    except InfluxError as exc:
        raise CliError(str(exc)) from None
    if not args.send:
        notice = digest_notice(ctx.registry, period, health, time.time(), args.lang)
        out = console()
        out.print(notice.subject, markup=False)
        out.print(notice.text, markup=False)
        return EXIT_OK
    sent = asyncio.run(_send(ctx, period, health))
    console().print(term("digest.sent", args.lang).format(n=sent), markup=False)
    return EXIT_OK


def _period(last_day: date | None, days: int, today: date) -> Period:
    if last_day is None:
        return (
            last_week(today) if days == 7 else Period(today - timedelta(days=days), today - timedelta(days=1))
        )
    return Period(last_day - timedelta(days=days - 1), last_day)


async def _health(ctx: CliContext, period: Period) -> list[DeviceHealth]:
    async with ctx.config.influx.client() as influx:
        outages = await fetch_outages(influx, period)
        crash_free = await fetch_crash_free(influx, ctx.registry, period)
    return device_health(ctx.registry, period, outages, crash_free)


async def _send(ctx: CliContext, period: Period, health: list[DeviceHealth]) -> int:
    contacts = ctx.registry.district_contacts
    if not contacts:
        raise CliError(
            f"{ctx.registry.path}: no district_contacts in the registry: nobody to send the digest to"
        )
    channels: dict[str, Channel] = build_channels(ctx.monitor.alerts)
    sent = 0
    errors = []
    for contact in contacts:
        notice = digest_notice(ctx.registry, period, health, time.time(), contact.language)
        for name, channel in channels.items():
            if not channel.reaches(contact):
                continue
            try:
                await channel.send(contact, notice)
                sent += 1
            except DeliveryError as exc:
                errors.append(f"{contact.name} by {name}: {exc}")
    for channel in channels.values():
        closer = getattr(channel, "aclose", None)
        if closer is not None:
            await closer()
    if errors:
        raise CliError("digest not delivered to " + "; ".join(errors))
    if not sent:
        raise CliError(
            "no channel reaches the district contacts: set [alerts] smtp_host, or give them a webhook"
        )
    return sent
