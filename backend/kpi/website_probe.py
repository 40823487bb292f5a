"""Indicator 1.3: probe each commune website in the registry and store ``website_check`` points.

A check records the HTTP status after redirects, the latency, the days left on the TLS
certificate (https only) and, when it failed, why. ``ok`` means an answer below 400 and,
for https, a certificate that verified and has not expired. The monitor runs
`run_website_probes` on a timer; ``tincoso report kpi --probe-websites`` runs one round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from backend.influx import InfluxClient, InfluxError, line
from backend.registry import Registry

__all__ = ["MEASUREMENT", "ProbeOutcome", "probe_website", "probe_websites", "run_website_probes"]

log = logging.getLogger(__name__)

MEASUREMENT = "website_check"
_MAX_ERROR = 200


@dataclass(frozen=True)
class ProbeOutcome:
    """The result of one website check."""

    url: str
    ok: bool
    status: int | None
    latency_ms: float | None
    tls_days_left: float | None
    error: str | None


async def _tls_days_left(url: str, context: ssl.SSLContext, timeout_s: float) -> float:
    parts = urlsplit(url)
    host = parts.hostname or ""
    async with asyncio.timeout(timeout_s):
        _, writer = await asyncio.open_connection(host, parts.port or 443, ssl=context, server_hostname=host)
    try:
        cert = writer.get_extra_info("peercert") or {}
    finally:
        writer.close()
    not_after = cert.get("notAfter")
    if not not_after:
        raise ssl.SSLError("the server sent no certificate expiry")
    return (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400


async def probe_website(
    url: str, *, timeout_s: float = 10.0, ssl_context: ssl.SSLContext | None = None
) -> ProbeOutcome:
    """Check one website; never raises for a site that is down (the outcome says why).

    Args:
        url: ``http://`` or ``https://`` address.
        timeout_s: time limit per request.
        ssl_context: how to verify certificates (default: the system's CAs).
    """
    if urlsplit(url).scheme not in ("http", "https"):
        return ProbeOutcome(url, False, None, None, None, f"not an http(s) URL: {url!r}"[:_MAX_ERROR])
    context = ssl_context or ssl.create_default_context()
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=True, verify=context) as client:
            response = await client.get(url, headers={"User-Agent": "tincoso-website-check/1"})
    except httpx.HTTPError as exc:
        return ProbeOutcome(url, False, None, None, None, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR])
    latency = (time.perf_counter() - started) * 1000
    status = response.status_code
    error = None if status < 400 else f"HTTP {status}"
    days: float | None = None
    if url.startswith("https://"):
        try:
            days = await _tls_days_left(str(response.url), context, timeout_s)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            error = error or f"TLS: {exc}"[:_MAX_ERROR]
        if days is not None and days <= 0:
            error = error or "TLS certificate expired"
    return ProbeOutcome(url, error is None, status, round(latency, 1), days, error)


def _point(commune: str, outcome: ProbeOutcome, ts_ms: int) -> str:
    fields = {
        "status": outcome.status,
        "ok": outcome.ok,
        "latency_ms": outcome.latency_ms,
        "tls_days_left": None if outcome.tls_days_left is None else round(outcome.tls_days_left, 2),
        "error": outcome.error,
    }
    return line(MEASUREMENT, {"commune": commune, "url": outcome.url}, fields, ts_ms)


async def probe_websites(
    registry: Registry,
    influx: InfluxClient,
    *,
    clock: Callable[[], float] = time.time,
    timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, ProbeOutcome]:
    """Probe every commune website once, concurrently, and store the results.

    Returns:
        commune id -> outcome.

    Raises:
        InfluxError: the results could not be written.
    """
    targets = [(c.id, c.website) for c in registry.communes.values() if c.website]
    outcomes = await asyncio.gather(
        *(probe_website(url, timeout_s=timeout_s, ssl_context=ssl_context) for _, url in targets)
    )
    ts_ms = int(clock() * 1000)
    results = {commune: outcome for (commune, _), outcome in zip(targets, outcomes, strict=True)}
    await influx.write(_point(commune, outcome, ts_ms) for commune, outcome in results.items())
    return results


async def run_website_probes(
    registry: Registry,
    influx: InfluxClient,
    interval_s: float,
    stop_event: asyncio.Event,
    *,
    clock: Callable[[], float] = time.time,
    timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Probe the websites every ``interval_s`` until ``stop_event`` is set.

    A round whose results cannot be stored is logged and counted, never fatal: the next
    round tries again.

    Returns:
        How many rounds could not be stored.
    """
    failed_rounds = 0
    while not stop_event.is_set():
        try:
            await probe_websites(registry, influx, clock=clock, timeout_s=timeout_s, ssl_context=ssl_context)
        except InfluxError as exc:
            failed_rounds += 1
            log.warning("website checks not stored (%d rounds so far): %s", failed_rounds, exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await stop_event.wait()
    return failed_rounds
