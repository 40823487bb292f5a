"""What tincoso's stored readings mean: one definition shared by every room that reads them.

The agent's portable core, the ingest, the monitor, the continuous queries, the dashboards
and the KPI report all import this module, so "sounded", "dead air", "board showing",
"online", the thresholds behind them, the measurement, tag and retention-policy names and
Vietnam local time mean the same thing everywhere by construction.

Pure and portable: no I/O, no dataclasses, no typing at run time (it runs under
MicroPython in the agent's core).

Thresholds have a default here; a deployment sets them once in ``backend.toml``
(``[definitions]``), and the backend passes them to the continuous queries (re-created
when they change), the monitor, the dashboards' queries and the KPI report.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

# -- Vietnam local time: UTC+7 all year, no daylight saving ----------------------------------
LOCAL_UTC_OFFSET_S = 7 * 3600
LOCAL_TZ_ABBREV = "ICT"
LOCAL_TZ_NAME = "Asia/Ho_Chi_Minh"
# InfluxQL ``GROUP BY time(1d, ...)`` offset that starts days at 00:00 local time.
INFLUX_DAY_OFFSET = "-7h"

# -- Measurements (one per message kind, plus what the backend writes) -----------------------
HEARTBEAT = "heartbeat"
AUDIO = "audio"
DISPLAY = "display"
EVENT = "event"
STATE = "state"
TELEMETRY_MEASUREMENTS = (HEARTBEAT, AUDIO, DISPLAY)
# Every telemetry point is tagged with these, in this order (``device_tags``).
DEVICE_TAGS = ("device", "commune", "hamlet", "kind")

# -- Alerts: the monitor's ``alert`` points, tagged with a ``status`` ----------------------------
ALERT = "alert"
ALERT_OPEN = "open"
# The fault's window ended before a measurement showed it gone (bulletin over, board hours
# over, device offline): the technician is told, and the same alert stays open.
ALERT_UNCONFIRMED = "unconfirmed"
ALERT_CLOSED = "closed"
# An alert is open while its latest point has one of these; only "closed" ends it.
ALERT_OPEN_STATUSES = (ALERT_OPEN, ALERT_UNCONFIRMED)


def alert_open_where(column: str = "status") -> str:
    """The InfluxQL condition "this alert point leaves the alert open"."""
    return "(" + " OR ".join("\"%s\" = '%s'" % (column, s) for s in ALERT_OPEN_STATUSES) + ")"


# -- Retention policies ----------------------------------------------------------------------
RAW_RP = "raw"
ROLLUP_1M_RP = "rollup_1m"
ROLLUP_1H_RP = "rollup_1h"
ROLLUP_1D_RP = "rollup_1d"
RETENTION_POLICIES = (RAW_RP, ROLLUP_1M_RP, ROLLUP_1H_RP, ROLLUP_1D_RP)

# -- Rolled-up fields ------------------------------------------------------------------------
# measurement -> field -> aggregate of each rollup level (``mean`` fields also get
# ``<field>_max`` and ``<field>_min``).
ROLLUP_FIELDS = {
    HEARTBEAT: {
        "uptime_s": "max",
        "temp_c": "mean",
        "signal_dbm": "mean",
        "disk_free_mb": "min",
        "queue_depth": "max",
        "queue_dropped": "max",
    },
    AUDIO: {
        "rms_dbfs": "mean",
        "rms_power": "mean",
        "peak_dbfs": "max",
        "dead_air_s": "max",
        "volume": "mean",
        "amp_power_w": "mean",
        "amp_voltage_v": "mean",
        "amp_current_a": "mean",
        "amp_energy_wh": "max",
    },
    DISPLAY: {
        "brightness": "mean",
        "failed_modules": "max",
        "temp_c": "mean",
        "source_sync_age_s": "max",
    },
}
# Levels average by energy, as the agent does within a window: ingest stores each reading's
# ``rms_power`` (mean square relative to full scale, 10^(dBFS/10)) beside ``rms_dbfs``, and
# an average level over many readings is 10*log10(mean(rms_power)) (`ENERGY_MEAN_DBFS`),
# not the mean of dB values (which reads a loud minute and a silent one as -55 dBFS).
RMS_POWER = "rms_power"
ENERGY_MEAN_DBFS = '10 * log10(mean("rms_power"))'

# The field counted as ``samples``: one that every reading of the measurement carries.
SAMPLE_FIELD = {HEARTBEAT: "uptime_s", AUDIO: "rms_dbfs", DISPLAY: "power"}
# Seconds of audio in each class, summed from ``window_s`` (rollup fields).
PLAYED_S = "played_s"
SOUNDED_S = "sounded_s"
SILENT_S = "silent_s"

# -- Thresholds ------------------------------------------------------------------------------
# Audio above this RMS (dBFS) is audible; at or below it is silence. AWS MediaLive's
# default; the agent's dead-air detector and every backend reader use the same value.
SOUND_THRESHOLD_DBFS = -50.0
SOUND_THRESHOLD_MIN_DBFS = -120.0
# The Grafana constant variable that carries the threshold into dashboard queries.
SOUND_THRESHOLD_VARIABLE = "sound_threshold"

# -- Device health -------------------------------------------------------------------------
# Reboot reasons that count as a crash for "crash-free hours" (Memfault's device-health
# figure): the watchdog fired, the agent crashed, or nobody knows why. A clean restart,
# a first boot and a power cut are not software crashes.
CRASH_REBOOT_REASONS = ("watchdog", "agent_crash", "unknown")

# -- Three-valued results --------------------------------------------------------------------
MET = "met"
NOT_MET = "not_met"
NO_DATA = "no_data"
RESULTS = (MET, NOT_MET, NO_DATA)


def check_sound_threshold(value: "Any", where: str = "sound_threshold_dbfs") -> float:
    """The threshold as a float, or ValueError naming ``where`` and the problem."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("%s must be a number of dBFS, got %r" % (where, value))
    if not SOUND_THRESHOLD_MIN_DBFS <= value <= 0:
        raise ValueError(
            "%s must be between %g and 0 dBFS, got %r" % (where, SOUND_THRESHOLD_MIN_DBFS, value)
        )
    return float(value)


def is_audible(rms_dbfs: float, threshold_dbfs: float = SOUND_THRESHOLD_DBFS) -> bool:
    """A level is audible strictly above the threshold (at the threshold it is silence)."""
    return rms_dbfs > threshold_dbfs


def sounded(
    playing: "bool | None",
    dead_air: "bool | None",
    rms_dbfs: "float | None",
    threshold_dbfs: float = SOUND_THRESHOLD_DBFS,
) -> bool:
    """An audio reading sounded: playing, no dead air, and RMS above the threshold."""
    if rms_dbfs is None:
        return False
    return bool(playing) and not dead_air and is_audible(rms_dbfs, threshold_dbfs)


def silent_while_playing(
    playing: "bool | None",
    dead_air: "bool | None",
    rms_dbfs: "float | None",
    threshold_dbfs: float = SOUND_THRESHOLD_DBFS,
) -> bool:
    """Playing was reported but it did not sound (dead air, or RMS at or below the threshold)."""
    return bool(playing) and not sounded(playing, dead_air, rms_dbfs, threshold_dbfs)


def _threshold_text(threshold: "float | str") -> str:
    if isinstance(threshold, str):
        if not threshold.startswith("$"):
            raise ValueError("threshold must be a number or a $variable, got %r" % threshold)
        return threshold
    return "%g" % check_sound_threshold(threshold)


def sounded_where(threshold: "float | str" = SOUND_THRESHOLD_DBFS) -> str:
    """`sounded` as an InfluxQL condition on raw ``audio`` points.

    Args:
        threshold: dBFS, or a Grafana variable (``"$sound_threshold"``).
    """
    return '"playing" = true AND "dead_air" = false AND "rms_dbfs" > %s' % _threshold_text(threshold)


def silent_where(threshold: "float | str" = SOUND_THRESHOLD_DBFS) -> str:
    """`silent_while_playing` as an InfluxQL condition on raw ``audio`` points."""
    return '"playing" = true AND ("dead_air" = true OR "rms_dbfs" <= %s)' % _threshold_text(threshold)


def board_showing(power: "bool | None", blank: "bool | None", frozen: "bool | None") -> bool:
    """A board shows content: power on, not blank, not frozen."""
    return bool(power) and not blank and not frozen


BOARD_UNLIT_WHERE = '"power" = false OR "blank" = true OR "frozen" = true'


# A device is offline once it has not been heard for this many heartbeat intervals.
MISSED_HEARTBEATS = 3.0


def online(
    last_seen_s: "float | None", now_s: float, heartbeat_s: float, missed: float = MISSED_HEARTBEATS
) -> "bool | None":
    """Online until ``missed`` heartbeat intervals pass without a message; None if never heard."""
    if last_seen_s is None:
        return None
    return now_s - last_seen_s <= missed * heartbeat_s


def device_tags(
    device: str, commune: "str | None", hamlet: "str | None", kind: "str | None"
) -> "dict[str, str | None]":
    """The InfluxDB tags of a device's points; an empty or missing place is left out (None)."""
    return {
        "device": device,
        "commune": str(commune) if commune else None,
        "hamlet": str(hamlet) if hamlet else None,
        "kind": str(kind) if kind else None,
    }


def dbfs_to_power(dbfs: float) -> float:
    """A level in dBFS as mean square relative to full scale (what averages by energy)."""
    return float(10.0 ** (dbfs / 10.0))


def local_day_start_s(ts_s: float) -> int:
    """Epoch seconds of 00:00 Vietnam time of the day ``ts_s`` falls in."""
    return int((ts_s + LOCAL_UTC_OFFSET_S) // 86400 * 86400 - LOCAL_UTC_OFFSET_S)


# -- Stored timestamps -----------------------------------------------------------------------
# A device reading is stored at its millisecond with its seq in the sub-millisecond digits
# (InfluxDB keeps nanoseconds): two readings of one device and kind made in the same
# millisecond are two points, and a replay of the same (boot_id, seq) lands on the same point
# (same series, same timestamp), so it overwrites its twin instead of adding one. Every query
# reads times in milliseconds (``epoch=ms`` truncates), so the digits change no answer.
NS_PER_MS = 1_000_000


def stored_ns(ts_ms: int, seq: int) -> int:
    """The nanosecond timestamp a reading of ``seq`` placed at ``ts_ms`` is stored at."""
    return ts_ms * NS_PER_MS + seq % NS_PER_MS
