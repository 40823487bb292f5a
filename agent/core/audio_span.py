"""Audio messages that tile time: each covers the audio since the previous audio message.

The audio probe's reading covers the audio since the previous poll, but the reporting
policy sends audio only when it changed or a snapshot is due. A reading that is not sent
is not dropped: :class:`UnsentAudio` merges it with the others not sent (by energy, as
the probe merges its windows) and the runtime sends the merge, stamped at the poll where
it ended, just before the next audio message. So the stored ``window_s`` add up to the
audio measured, and the backend's sums over them (the rollups' seconds sounded) agree
with the KPI's spans held from one reading to the next.

The merged readings are alike by construction (any change beyond a dead band would have
been sent), so the merge loses nothing a user reads.

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

import math

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

_FLOOR_DBFS = -120.0


def _power(dbfs: float) -> float:
    return 0.0 if dbfs <= _FLOOR_DBFS else 10.0 ** (dbfs / 10.0)


def _dbfs(power: float) -> float:
    if power <= 0:
        return _FLOOR_DBFS
    return max(_FLOOR_DBFS, 10.0 * math.log10(power))


def merge(earlier: "dict[str, Any]", later: "dict[str, Any]") -> "dict[str, Any]":
    """One audio reading covering ``earlier`` then ``later``.

    ``window_s`` and ``dead_air_s`` add up, ``rms_dbfs`` is the energy mean weighted by
    ``window_s``, ``peak_dbfs`` the maximum, ``dead_air`` and ``clipping`` whether either
    had it; every other field (``playing``, ``programme``, the power meter's) is the latest.
    """
    out = dict(later)
    a = float(earlier.get("window_s") or 0.0)
    b = float(later.get("window_s") or 0.0)
    total = a + b
    out["window_s"] = round(total, 3)
    if total > 0:
        energy = _power(earlier["rms_dbfs"]) * a + _power(later["rms_dbfs"]) * b
        out["rms_dbfs"] = round(_dbfs(energy / total), 2)
    if "peak_dbfs" in earlier and "peak_dbfs" in later:
        out["peak_dbfs"] = max(earlier["peak_dbfs"], later["peak_dbfs"])
    for flag in ("dead_air", "clipping"):
        if flag in earlier or flag in later:
            out[flag] = bool(earlier.get(flag)) or bool(later.get(flag))
    if "dead_air_s" in earlier or "dead_air_s" in later:
        silent = float(earlier.get("dead_air_s") or 0) + float(later.get("dead_air_s") or 0)
        out["dead_air_s"] = round(silent, 3)
    return out


class UnsentAudio:
    """Audio readings the policy did not send, merged, with the stamp of the latest."""

    def __init__(self) -> None:
        self.fields = None  # type: dict[str, Any] | None
        self.stamp = None  # type: Any

    def add(self, fields: "dict[str, Any]", stamp: "Any") -> None:
        """Hold one reading that was not sent (``stamp``: its poll's ``(ts, clock_ok, mono)``)."""
        self.fields = dict(fields) if self.fields is None else merge(self.fields, fields)
        self.stamp = stamp

    def take(self) -> "tuple[dict[str, Any], Any] | None":
        """The merged readings and their stamp, or None; empties the hold."""
        if self.fields is None:
            return None
        held = (self.fields, self.stamp)
        self.fields = None
        self.stamp = None
        return held
