"""One function per acceptance check: measured values and limits in, a verdict out.

Every function is pure (no I/O, no clock): the runner passes what it observed and the
time span it observed it in, so each check is unit-testable and re-judgeable from a
recording. A check never raises on odd device data; it fails and says why.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.acceptance.parse import SINE_CREST_DB, measured_number
from backend.acceptance.profile import FieldRule, Profile
from backend.acceptance.text import advice, explain_error, tr

__all__ = [
    "CheckResult",
    "check_amplifier",
    "check_clock",
    "check_online",
    "check_reconnect",
    "check_report_now",
    "check_telemetry",
    "check_test_pattern",
    "check_test_tone",
    "not_run",
    "seq_gaps",
]

Span = tuple[int, int]


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check, as it goes into the report.

    Attributes:
        name: the check (``online``, ``test_tone``, ...).
        passed: whether it met every limit.
        measured: what was measured, by name (JSON values).
        limit: the limits it was judged against, by name.
        detail: one sentence for a person, in the report's language.
        started_ms: when the check's measurement started (unix ms, backend clock).
        ended_ms: when it ended.
        action: what to do about a failure, in the report's language (empty if passed).
    """

    name: str
    passed: bool
    measured: dict[str, Any] = field(default_factory=dict)
    limit: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    started_ms: int = 0
    ended_ms: int = 0
    action: str = ""

    def to_json(self) -> dict[str, Any]:
        """The check as a JSON object."""
        return asdict(self)


def _verdict(
    name: str, problems: list[str], measured: dict[str, Any], limit: dict[str, Any], span: Span, lang: str
) -> CheckResult:
    detail = "; ".join(problems) if problems else tr(lang, "ok")
    action = advice(lang, name, None) if problems else ""
    return CheckResult(name, not problems, measured, limit, detail, span[0], span[1], action)


def not_run(name: str, reason_key: str, span: Span, lang: str = "vi") -> CheckResult:
    """A check that could not run (device offline, not for this kind): it fails."""
    action = advice(lang, name, reason_key)
    return CheckResult(name, False, {}, {}, tr(lang, reason_key), span[0], span[1], action)


def _finite(value: float | None) -> float | None:
    """``value`` if it is a finite number, else None (NaN must never pass a limit)."""
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def _no_result(name: str, result: Mapping[str, Any] | None, timeout_s: float, lang: str) -> str | None:
    """Why a command result is unusable, or None if it is a success."""
    if result is None:
        return tr(lang, "no_result", timeout_s=timeout_s)
    if result.get("ok") is not True:
        return tr(lang, "command_failed", error=explain_error(lang, str(result.get("error") or "?")[:300]))
    return None


def check_online(
    state: Mapping[str, Any] | None,
    age_s: float | None,
    profile: Profile,
    span: Span,
    lang: str = "vi",
) -> CheckResult:
    """Online with a fresh birth: the retained state is a ``birth`` at most N minutes old.

    Args:
        state: the retained message on the state topic (None if there was none).
        age_s: the birth's age (see ``parse.birth_age_s``), None when unknown.
    """
    limit = {"birth_max_age_s": profile.birth_max_age_s}
    age_s = _finite(age_s)
    measured: dict[str, Any] = {"state": None if state is None else state.get("kind")}
    problems: list[str] = []
    if state is None:
        problems.append(tr(lang, "no_state"))
    elif state.get("kind") != "birth":
        problems.append(tr(lang, "death", reason=state.get("reason")))
    else:
        measured.update(bdseq=state.get("bdseq"), agent_version=state.get("agent_version"))
        measured["birth_age_s"] = None if age_s is None else round(age_s, 1)
        if age_s is None:
            problems.append(tr(lang, "birth_age_unknown"))
        elif age_s > profile.birth_max_age_s:
            problems.append(tr(lang, "birth_old", age_s=age_s, limit_s=profile.birth_max_age_s))
    return _verdict("online", problems, measured, limit, span, lang)


def check_telemetry(
    latest: Mapping[str, Mapping[str, Any] | None], profile: Profile, span: Span, lang: str = "vi"
) -> CheckResult:
    """Every required telemetry kind arrived and each profiled field is within its limit.

    Args:
        latest: telemetry kind -> the freshest message of that kind (None if none came).
    """
    measured: dict[str, Any] = {}
    limit: dict[str, Any] = {}
    problems: list[str] = []
    bad: list[str] = []
    for kind in profile.telemetry_kinds:
        if latest.get(kind) is None:
            problems.append(tr(lang, "missing_kind", kind=kind))
    for rule in profile.rules:
        msg = latest.get(rule.kind)
        if rule.kind not in profile.telemetry_kinds and msg is None:
            continue
        value = None if msg is None else msg.get(rule.field)
        measured[rule.name] = value
        limit[rule.name] = rule.describe()
        if msg is not None and not rule.accepts(value):
            bad.append(f"{rule.name}={_short(value)} ({rule.describe()})")
    if bad:
        problems.append(tr(lang, "bad_fields", fields=", ".join(bad)))
    return _verdict("telemetry", problems, measured, limit, span, lang)


def _short(value: Any) -> str:
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text[:40]


def check_report_now(
    result: Mapping[str, Any] | None,
    round_trip_s: float | None,
    profile: Profile,
    span: Span,
    lang: str = "vi",
) -> CheckResult:
    """``report_now`` answered ok within the limit (command published -> result received)."""
    limit = {"round_trip_s": profile.report_now_limit_s}
    round_trip_s = _finite(round_trip_s)
    measured: dict[str, Any] = {"round_trip_s": None if round_trip_s is None else round(round_trip_s, 3)}
    problems = []
    why = _no_result("report_now", result, profile.command_timeout_s, lang)
    if why is not None:
        problems.append(why)
    elif round_trip_s is None or round_trip_s > profile.report_now_limit_s:
        problems.append(
            tr(lang, "too_slow", value=round_trip_s or math.inf, limit=profile.report_now_limit_s)
        )
    return _verdict("report_now", problems, measured, limit, span, lang)


def check_test_tone(
    result: Mapping[str, Any] | None, profile: Profile, span: Span, lang: str = "vi"
) -> CheckResult:
    """The device's own audio probe measured the tone within ± tolerance of the expected RMS.

    The tone's ``level_dbfs`` is its peak; a sine's RMS is 3.01 dB lower, which is what the
    probe measures. A frequency is judged only when the agent reports one it measured.
    """
    expected = profile.tone_level_dbfs - SINE_CREST_DB
    limit = {
        "expected_rms_dbfs": round(expected, 2),
        "tolerance_db": profile.tone_tolerance_db,
        "freq_hz": profile.tone_freq_hz,
        "freq_tolerance_hz": profile.tone_freq_tolerance_hz,
    }
    measured: dict[str, Any] = {}
    problems = []
    why = _no_result("play_test_tone", result, profile.tone_seconds + profile.command_timeout_s, lang)
    values = result.get("measured") if isinstance(result, Mapping) else None
    values = values if isinstance(values, Mapping) else {}
    level = measured_number(values, "tone_dbfs")
    level = level if level is not None else measured_number(values, "rms_dbfs")
    freq = measured_number(values, "measured_freq_hz")
    measured.update(
        rms_dbfs=level,
        rms_dbfs_before=measured_number(values, "rms_dbfs_before"),
        measured_freq_hz=freq,
    )
    if why is not None:
        problems.append(why)
    elif level is None:
        problems.append(tr(lang, "no_level", why=str(values.get("audio_error") or "-")[:200]))
    elif abs(level - expected) > profile.tone_tolerance_db:
        problems.append(tr(lang, "level_off", value=level, delta=level - expected))
    if why is None and freq is not None and abs(freq - profile.tone_freq_hz) > profile.tone_freq_tolerance_hz:
        problems.append(tr(lang, "freq_off", value=freq))
    return _verdict("test_tone", problems, measured, limit, span, lang)


def check_amplifier(
    result: Mapping[str, Any] | None, profile: Profile, span: Span, lang: str = "vi"
) -> CheckResult:
    """The amplifier's supply power rose by at least ``min_rise_w`` during the test tone."""
    limit = {"min_rise_w": profile.amp_min_rise_w}
    values = result.get("measured") if isinstance(result, Mapping) else None
    values = values if isinstance(values, Mapping) else {}
    before = measured_number(values, "amp_power_w_before")
    during = measured_number(values, "amp_power_w")
    rise = None if before is None or during is None else round(during - before, 2)
    measured = {"amp_power_w_before": before, "amp_power_w_during": during, "rise_w": rise}
    problems = []
    why = _no_result("play_test_tone", result, profile.tone_seconds + profile.command_timeout_s, lang)
    if why is not None:
        problems.append(why)
    elif rise is None:
        error = values.get("power_error") or "-"
        problems.append(tr(lang, "no_power", why=str(error)[:200]))
    elif rise < profile.amp_min_rise_w:
        problems.append(tr(lang, "power_flat", rise=rise, limit=profile.amp_min_rise_w))
    return _verdict("amplifier", problems, measured, limit, span, lang)


def check_test_pattern(
    result: Mapping[str, Any] | None,
    displayed: str | None,
    profile: Profile,
    span: Span,
    lang: str = "vi",
) -> CheckResult:
    """The board accepted the pattern and a display message then reported ``TEST:<pattern>``.

    Args:
        result: the ``show_test_pattern`` result.
        displayed: ``content_id`` of the display telemetry after the command (None if none).
    """
    expected = "TEST:" + profile.pattern
    values = result.get("measured") if isinstance(result, Mapping) else None
    values = values if isinstance(values, Mapping) else {}
    measured = {"result_content_id": values.get("content_id"), "telemetry_content_id": displayed}
    problems = []
    why = _no_result("show_test_pattern", result, profile.pattern_wait_s, lang)
    if why is not None:
        problems.append(why)
    elif displayed != expected:
        problems.append(tr(lang, "pattern_not_reported", expected=expected, got=displayed))
    return _verdict("test_pattern", problems, measured, {"content_id": expected}, span, lang)


def seq_gaps(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Missing runs ``(first, last)`` between the lowest and highest sequence number seen."""
    ordered = sorted(set(seqs))
    return [(a + 1, b - 1) for a, b in itertools.pairwise(ordered) if b > a + 1]


def check_reconnect(
    result: Mapping[str, Any] | None,
    recovered_s: float | None,
    seqs: Iterable[int],
    profile: Profile,
    span: Span,
    lang: str = "vi",
) -> CheckResult:
    """The device came back (new birth) within the limit and no sequence number is missing.

    Args:
        result: the ``reconnect`` result.
        recovered_s: seconds from the drop to the new birth (None: no new birth).
        seqs: every ``seq`` of the device's current boot received during the test.
    """
    recovered_s = _finite(recovered_s)
    gaps = seq_gaps(seqs)
    missing = sum(b - a + 1 for a, b in gaps)
    measured = {
        "recovered_s": None if recovered_s is None else round(recovered_s, 2),
        "missing_seqs": missing,
        "gaps": ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in gaps)[:300],
    }
    limit = {"recovered_s": profile.reconnect_limit_s, "missing_seqs": 0}
    problems = []
    why = _no_result("reconnect", result, profile.command_timeout_s, lang)
    if why is not None:
        problems.append(why)
    elif recovered_s is None:
        problems.append(tr(lang, "no_birth_after", timeout_s=profile.reconnect_limit_s))
    elif recovered_s > profile.reconnect_limit_s:
        problems.append(tr(lang, "too_slow", value=recovered_s, limit=profile.reconnect_limit_s))
    if missing:
        problems.append(tr(lang, "seq_gap", missing=missing, ranges=measured["gaps"]))
    return _verdict("reconnect", problems, measured, limit, span, lang)


def check_clock(
    fresh: Sequence[tuple[Mapping[str, Any], int]], profile: Profile, span: Span, lang: str = "vi"
) -> CheckResult:
    """Every fresh message says ``clock_ok`` and its ``ts`` is within the skew limit.

    Args:
        fresh: ``(message, received_ms)`` pairs of messages built just before they were
            received (the ``report_now`` answers), so transit time is negligible.
    """
    limit = {"clock_ok": True, "max_skew_s": profile.clock_max_skew_s}
    skews = [(m["ts"] - at) / 1000 for m, at in fresh if type(m.get("ts")) is int]
    flags = [m.get("clock_ok") for m, _ in fresh]
    worst = max(skews, key=abs) if skews else None
    measured = {
        "clock_ok": all(f is True for f in flags) if flags else None,
        "skew_s": None if worst is None else round(worst, 3),
        "messages": len(fresh),
    }
    problems = []
    if not fresh or worst is None:
        problems.append(tr(lang, "no_fresh_message"))
    else:
        if measured["clock_ok"] is not True:
            problems.append(tr(lang, "clock_not_ok"))
        if abs(worst) > profile.clock_max_skew_s:
            problems.append(tr(lang, "clock_skew", skew_s=worst))
    return _verdict("clock", problems, measured, limit, span, lang)


def rules_of(profile: Profile, kind: str) -> list[FieldRule]:
    """The telemetry rules of one message kind (for documentation and tests)."""
    return [rule for rule in profile.rules if rule.kind == kind]
