"""Retention policies and continuous queries that roll readings up for long dashboards.

Raw points live in the default policy ``raw`` (400 days: a reporting year plus margin, so
the annual KPI report reads raw data). Continuous queries summarise them every minute into
``rollup_1m`` (3 years), those minutes every hour into ``rollup_1h`` (kept forever) and
those hours every day into ``rollup_1d`` (kept forever), so 30- and 365-day panels read
thousands of points, not millions. Days are Vietnam days (00:00-24:00 UTC+7, the days of
the KPI report and of the dashboards' per-day panels): a daily point is stamped at 00:00
local time (17:00 UTC the day before). Created idempotently by
`ensure_retention_and_rollups` at backend start.

What a rolled-up point holds, per measurement (tags are kept by ``GROUP BY *``):

- each numeric field under its own name, aggregated as `ROLLUP_FIELDS` says (``mean``
  for levels, ``max`` for peaks, ages and counters), so a panel's ``mean("temp_c")`` or
  ``max("peak_dbfs")`` reads the same on ``raw`` and every rollup (a level's ``mean`` is
  the mean of the level below's means, so it equals the raw mean when readings are evenly
  spread);
- for ``mean`` fields also ``<field>_max`` and ``<field>_min``;
- ``samples``: how many raw readings the point summarises;
- on ``rollup_1d`` only, ``hours``: how many hours of the day had at least one reading
  (the count of ``rollup_1h`` points), for availability per day;
- conditional sums (`CONDITIONAL_FIELDS`), because InfluxQL cannot aggregate booleans:
  seconds of audio that played / really sounded / were silent while playing, and counts of
  display readings that were dark, blank, frozen or unlit.

A continuous query only summarises the interval that just ended (plus its RESAMPLE
window), so readings that arrive later (a batch replayed after an outage) need
`backfill`, which runs the same SELECT ... INTO over a past range. The daily level runs
every hour over the current and the previous day, so today's point grows during the day
and yesterday's takes in the last hour's summary after midnight. A changed
``[definitions] sound_threshold_dbfs`` replaces the audio continuous queries
(`ensure_retention_and_rollups` names them) and the ingest recomputes the rollups of all
``raw`` data with it (`backend.ingest.late_data`), so no panel mixes two thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from backend.influx import InfluxClient, InfluxError
from protocols import stored_data
from protocols.stored_data import RAW_RP, ROLLUP_1D_RP, ROLLUP_1H_RP, ROLLUP_1M_RP

__all__ = [
    "CONDITIONAL_FIELDS",
    "LEVELS",
    "RAW_RP",
    "RECOMPUTE_WINDOW_MS",
    "ROLLUP_1D_RP",
    "ROLLUP_1H_RP",
    "ROLLUP_1M_RP",
    "ROLLUP_FIELDS",
    "SOUNDED_WHERE",
    "SOUND_THRESHOLD_DBFS",
    "VN_DAY_OFFSET",
    "Level",
    "RetentionConfig",
    "Rollup",
    "backfill",
    "conditional_fields",
    "ensure_retention_and_rollups",
    "rollups",
]

log = logging.getLogger(__name__)

CQ_PREFIX = "tincoso_"
# GROUP BY time(1d, VN_DAY_OFFSET) starts days at 00:00 UTC+7 (Vietnam has no daylight saving).
VN_DAY_OFFSET = stored_data.INFLUX_DAY_OFFSET
# Daily points are sparse (365 a year per series), so rollup_1d keeps a year per shard
# group instead of InfluxDB's week: a 30-day query over 10,000 devices opens 10,000 series
# in one or two shards, not five (1.5-2 times faster: docs/benchmarks.md section 5).
# A shard group is dropped when all of it has expired, so points may outlive a finite
# retention by up to this long; a retention shorter than this uses InfluxDB's default.
DAILY_SHARD = "52w"
_DAILY_SHARD_SHOWN = "8736h0m0s"
_DAILY_SHARD_MIN_DAYS = 52 * 7

# Audio counts as really sounding above this RMS (protocols/stored_data.py, the default
# of backend.toml's [definitions] sound_threshold_dbfs). These module constants are the
# default's conditions; `rollups` builds them for the configured threshold.
SOUND_THRESHOLD_DBFS = stored_data.SOUND_THRESHOLD_DBFS
SOUNDED_WHERE = stored_data.sounded_where(SOUND_THRESHOLD_DBFS)
SILENT_WHERE = stored_data.silent_where(SOUND_THRESHOLD_DBFS)

ROLLUP_FIELDS: dict[str, dict[str, str]] = stored_data.ROLLUP_FIELDS

# The field counted as ``samples``: one that every reading of the measurement carries.
SAMPLE_FIELD = stored_data.SAMPLE_FIELD


def conditional_fields(
    sound_threshold_dbfs: float = SOUND_THRESHOLD_DBFS,
) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """measurement -> (rolled-up field, raw aggregate, raw condition), for a threshold."""
    return {
        "audio": (
            (stored_data.PLAYED_S, 'sum("window_s")', '"playing" = true'),
            (stored_data.SOUNDED_S, 'sum("window_s")', stored_data.sounded_where(sound_threshold_dbfs)),
            (stored_data.SILENT_S, 'sum("window_s")', stored_data.silent_where(sound_threshold_dbfs)),
        ),
        "display": (
            ("dark_samples", 'count("power")', '"power" = false'),
            ("blank_samples", 'count("blank")', '"blank" = true'),
            ("frozen_samples", 'count("frozen")', '"frozen" = true'),
            ("unlit_samples", 'count("power")', stored_data.BOARD_UNLIT_WHERE),
        ),
    }


# measurement -> (rolled-up field, raw aggregate, raw condition), at the default threshold
CONDITIONAL_FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = conditional_fields()

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _ms(duration: str) -> int:
    """An InfluxQL duration of one unit (``1m``, ``2h``, ``-7h``) in milliseconds."""
    return int(duration[:-1]) * _UNIT_MS[duration[-1]]


@dataclass(frozen=True)
class Level:
    """One rollup level: which policy it summarises into which, and how often.

    Args:
        source: Policy read.
        target: Policy written.
        interval: ``GROUP BY time()`` interval.
        offset: ``GROUP BY time()`` offset ("" for none): where intervals start.
        resample_for: ``RESAMPLE FOR``: how far back each run recomputes.
        resample_every: ``RESAMPLE EVERY`` (None: once per interval, when it ends).
    """

    source: str
    target: str
    interval: str
    offset: str
    resample_for: str
    resample_every: str | None = None

    @property
    def group_by_time(self) -> str:
        """The ``time(...)`` of the GROUP BY clause."""
        return f"time({self.interval}, {self.offset})" if self.offset else f"time({self.interval})"

    def align(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """``[start_ms, end_ms)`` widened to whole intervals of this level."""
        step, offset = _ms(self.interval), _ms(self.offset) if self.offset else 0
        start = (start_ms - offset) // step * step + offset
        end = -((offset - end_ms) // step) * step + offset
        return start, end


LEVELS: dict[str, Level] = {
    "1m": Level(RAW_RP, ROLLUP_1M_RP, "1m", "", "10m"),
    "1h": Level(ROLLUP_1M_RP, ROLLUP_1H_RP, "1h", "", "2h"),
    # Every hour over today and yesterday: today's point is at most a couple of hours
    # behind, and yesterday's last hour (rolled up just after midnight) is not missed.
    "1d": Level(ROLLUP_1H_RP, ROLLUP_1D_RP, "1d", VN_DAY_OFFSET, "2d", "1h"),
}


# Readings older than this miss the 1-minute continuous query (its RESAMPLE FOR): late data.
RECOMPUTE_WINDOW_MS = _ms(LEVELS["1m"].resample_for)


@dataclass(frozen=True)
class RetentionConfig:
    """How long each policy keeps points, in days; None keeps them forever.

    Args:
        raw_days: The default policy ``raw`` that ingest writes into.
        rollup_1m_days: One-minute summaries.
        rollup_1h_days: One-hour summaries.
        rollup_1d_days: Daily summaries (Vietnam days).
        sound_threshold_dbfs: The "sounded"/"silent" threshold of the audio rollups
            (``[definitions]`` in backend.toml); a change re-creates their continuous queries.
    """

    raw_days: int | None = 400
    rollup_1m_days: int | None = 1100
    rollup_1h_days: int | None = None
    rollup_1d_days: int | None = None
    sound_threshold_dbfs: float = SOUND_THRESHOLD_DBFS

    def __post_init__(self) -> None:
        stored_data.check_sound_threshold(self.sound_threshold_dbfs, "retention sound_threshold_dbfs")
        for name in ("raw_days", "rollup_1m_days", "rollup_1h_days", "rollup_1d_days"):
            days = getattr(self, name)
            # InfluxDB refuses policies shorter than one hour; a day is the useful floor.
            if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
                raise ValueError(
                    f"retention {name} must be a whole number of days >= 1 or None, got {days!r}"
                )

    def policies(self) -> dict[str, int | None]:
        """Policy name -> days, the default (raw) first."""
        return {
            RAW_RP: self.raw_days,
            ROLLUP_1M_RP: self.rollup_1m_days,
            ROLLUP_1H_RP: self.rollup_1h_days,
            ROLLUP_1D_RP: self.rollup_1d_days,
        }


@dataclass(frozen=True)
class Rollup:
    """One continuous query: a SELECT ... INTO from one policy into the next."""

    name: str
    level: str
    measurement: str
    select_list: str
    condition: str | None

    def select(self, database: str, time_range: str | None = None) -> str:
        """The SELECT ... INTO statement, optionally limited to a time range (for backfill)."""
        level = LEVELS[self.level]
        where = [f"({self.condition})"] if self.condition else []
        if time_range:
            where.append(time_range)
        where_clause = f" WHERE {' AND '.join(where)}" if where else ""
        return (
            f'SELECT {self.select_list} INTO "{database}"."{level.target}"."{self.measurement}" '
            f'FROM "{database}"."{level.source}"."{self.measurement}"{where_clause} '
            f"GROUP BY {level.group_by_time}, *"
        )

    def zero_select(self, database: str, time_range: str) -> str | None:
        """For a conditional 1-minute rollup: write 0 into every interval of the range first.

        A SELECT ... INTO writes nothing for an interval where no reading matches, so a
        recomputation (a changed threshold) would leave the old value standing; the zeros
        make the recomputed sums complete. None for the other rollups.
        """
        if self.level != "1m" or self.condition is None:
            return None
        level = LEVELS[self.level]
        aggregate = self.select_list.rsplit(" AS ", 1)
        return (
            f"SELECT {aggregate[0]} * 0 AS {aggregate[1]} "
            f'INTO "{database}"."{level.target}"."{self.measurement}" '
            f'FROM "{database}"."{level.source}"."{self.measurement}" WHERE {time_range} '
            f"GROUP BY {level.group_by_time}, *"
        )

    def create_statement(self, database: str) -> str:
        """The ``CREATE CONTINUOUS QUERY`` statement."""
        level = LEVELS[self.level]
        every = f"EVERY {level.resample_every} " if level.resample_every else ""
        return (
            f'CREATE CONTINUOUS QUERY "{self.name}" ON "{database}" RESAMPLE {every}FOR {level.resample_for} '
            f"BEGIN {self.select(database)} END"
        )


def _main_select(measurement: str, level: str) -> str:
    parts = []
    for field, agg in ROLLUP_FIELDS[measurement].items():
        if level == "1m":
            parts.append(f'{agg}("{field}") AS "{field}"')
            if agg == "mean":
                parts.append(f'max("{field}") AS "{field}_max"')
                parts.append(f'min("{field}") AS "{field}_min"')
        else:
            parts.append(f'{agg}("{field}") AS "{field}"')
            if agg == "mean":
                parts.append(f'max("{field}_max") AS "{field}_max"')
                parts.append(f'min("{field}_min") AS "{field}_min"')
    if level == "1m":
        parts.append(f'count("{SAMPLE_FIELD[measurement]}") AS "samples"')
    else:
        parts.append('sum("samples") AS "samples"')
    if level == "1d":
        parts.append('count("samples") AS "hours"')
    return ", ".join(parts)


def rollups(sound_threshold_dbfs: float = SOUND_THRESHOLD_DBFS) -> Iterator[Rollup]:
    """Every continuous query tincoso wants, level by level (1-minute ones first)."""
    conditional = conditional_fields(sound_threshold_dbfs)
    for level in LEVELS:
        for measurement in ROLLUP_FIELDS:
            yield Rollup(
                f"{CQ_PREFIX}{level}_{measurement}",
                level,
                measurement,
                _main_select(measurement, level),
                None,
            )
            for field, aggregate, condition in conditional.get(measurement, ()):
                if level == "1m":
                    yield Rollup(
                        f"{CQ_PREFIX}{level}_{measurement}_{field}",
                        level,
                        measurement,
                        f'{aggregate} AS "{field}"',
                        condition,
                    )
                else:
                    yield Rollup(
                        f"{CQ_PREFIX}{level}_{measurement}_{field}",
                        level,
                        measurement,
                        f'sum("{field}") AS "{field}"',
                        None,
                    )


def _duration(days: int | None) -> str:
    return "INF" if days is None else f"{days}d"


def _shown_duration(days: int | None) -> str:
    """The duration as SHOW RETENTION POLICIES prints it."""
    return "0s" if days is None else f"{days * 24}h0m0s"


def _shard_duration(rp: str, days: int | None) -> str | None:
    """The SHARD DURATION tincoso sets on ``rp`` ("0s": InfluxDB's default), None to leave it."""
    if rp != ROLLUP_1D_RP:
        return None
    return DAILY_SHARD if days is None or days > _DAILY_SHARD_MIN_DAYS else "0s"


def _shard_differs(wanted: str | None, shown: str) -> bool:
    if wanted is None:
        return False
    return (shown == _DAILY_SHARD_SHOWN) != (wanted == DAILY_SHARD)


async def _has_points(influx: InfluxClient) -> bool:
    return bool(await influx.query("SHOW MEASUREMENTS LIMIT 1"))


async def _ensure_policies(influx: InfluxClient, config: RetentionConfig) -> None:
    db = influx.database
    shown = await influx.query(f'SHOW RETENTION POLICIES ON "{db}"')
    existing: dict[str, tuple[str, bool]] = {}
    shards: dict[str, str] = {}
    for series in shown:
        columns = series["columns"]
        for values in series.get("values", []):
            row = dict(zip(columns, values, strict=True))
            existing[row["name"]] = (row["duration"], bool(row["default"]))
            shards[row["name"]] = row["shardGroupDuration"]
    for rp, days in config.policies().items():
        default = rp == RAW_RP
        shard = _shard_duration(rp, days)
        suffix = (f" SHARD DURATION {shard}" if shard else "") + (" DEFAULT" if default else "")
        if rp not in existing:
            if default and await _has_points(influx):
                log.warning(
                    "making %r the default retention policy of %r: points written before stay in the "
                    "old default policy and are no longer shown by queries without a policy",
                    rp,
                    db,
                )
            await influx.query(
                f'CREATE RETENTION POLICY "{rp}" ON "{db}" DURATION {_duration(days)} REPLICATION 1{suffix}'
            )
        elif existing[rp] != (_shown_duration(days), default or existing[rp][1]) or _shard_differs(
            shard, shards[rp]
        ):
            # A changed shard duration applies to shard groups created from now on.
            await influx.query(f'ALTER RETENTION POLICY "{rp}" ON "{db}" DURATION {_duration(days)}{suffix}')


async def _ensure_continuous_queries(influx: InfluxClient, sound_threshold_dbfs: float) -> list[str]:
    db = influx.database
    replaced: list[str] = []
    wanted = {rollup.name: rollup for rollup in rollups(sound_threshold_dbfs)}
    shown = await influx.query("SHOW CONTINUOUS QUERIES")
    existing = {
        values[0] for series in shown if series.get("name") == db for values in series.get("values", [])
    }
    for name in sorted(existing - wanted.keys()):
        if name.startswith(CQ_PREFIX):
            await influx.query(f'DROP CONTINUOUS QUERY "{name}" ON "{db}"')
    for rollup in wanted.values():
        statement = rollup.create_statement(db)
        try:
            # InfluxDB accepts an identical CREATE silently and refuses a changed one.
            await influx.query(statement)
        except InfluxError as error:
            if "already exists" not in str(error):
                raise
            await influx.query(f'DROP CONTINUOUS QUERY "{rollup.name}" ON "{db}"')
            await influx.query(statement)
            replaced.append(rollup.name)
    return replaced


async def ensure_retention_and_rollups(
    influx: InfluxClient, config: RetentionConfig | None = None
) -> list[str]:
    """Create the database, retention policies and continuous queries, or bring them up to date.

    Safe to run at every start and from several processes: unchanged objects are left
    alone, a changed duration is altered, a changed continuous query is replaced, and
    tincoso's continuous queries that are no longer wanted are dropped.

    Args:
        influx: Client of the tincoso database.
        config: Retention per policy; None uses `RetentionConfig`'s defaults.

    Returns:
        The continuous queries replaced because their statement changed (a new
        ``sound_threshold_dbfs``): the rollups they made before say what the old one did,
        so the caller should recompute them (the ingest does, see `backend.ingest.late_data`).

    Raises:
        InfluxError: InfluxDB refused a statement (its message names it).
        InfluxUnavailable: InfluxDB did not answer.
    """
    config = config or RetentionConfig()
    await influx.create_database()
    await _ensure_policies(influx, config)
    return await _ensure_continuous_queries(influx, config.sound_threshold_dbfs)


async def backfill(
    influx: InfluxClient,
    start_ms: int,
    end_ms: int,
    *,
    levels: tuple[str, ...] = tuple(LEVELS),
    sound_threshold_dbfs: float = SOUND_THRESHOLD_DBFS,
) -> int:
    """Run the continuous queries' SELECT ... INTO over ``[start_ms, end_ms)``.

    Use it after readings arrived late (a batch replayed after an outage) or to fill the
    rollups of an existing database. Levels run in order, so ``1h`` sees the fresh ``1m``
    points and ``1d`` the fresh ``1h`` ones. Each level widens the range to its whole
    intervals (minutes, hours, Vietnam days), so a point at the range's edges summarises
    its whole interval instead of overwriting it with a part.

    Args:
        influx: Client of the tincoso database.
        start_ms: Range start, epoch milliseconds, included.
        end_ms: Range end, epoch milliseconds, excluded.
        levels: Which levels to fill.
        sound_threshold_dbfs: The threshold the continuous queries use (``RetentionConfig``).

    Returns:
        How many rolled-up points InfluxDB wrote.

    Raises:
        ValueError: The range is empty or a level is unknown.
    """
    if end_ms <= start_ms:
        raise ValueError(f"backfill range is empty: start {start_ms} >= end {end_ms}")
    unknown = [level for level in levels if level not in LEVELS]
    if unknown:
        raise ValueError(f"unknown rollup level(s) {unknown}; known: {list(LEVELS)}")
    written = 0
    for level in levels:
        start, end = LEVELS[level].align(start_ms, end_ms)
        # Integer time literals are nanoseconds; "ms" durations overflow for epoch values.
        time_range = f"time >= {start * 1_000_000} AND time < {end * 1_000_000}"
        for rollup in rollups(sound_threshold_dbfs):
            if rollup.level != level:
                continue
            zero = rollup.zero_select(influx.database, time_range)
            if zero is not None:
                await influx.query(zero)
            for series in await influx.query(rollup.select(influx.database, time_range)):
                for values in series.get("values", []):
                    written += int(values[1])
    return written
