"""Vendor acceptance profiles: which checks a device kind must pass, and the limits.

A profile is a TOML file; one default per device kind ships in ``profiles/``. A vendor
contract copies one and tightens it. Every value is checked when the file is loaded and a
mistake is named by section and key (``[test_tone] tolerance_db must be a number > 0,
got 'two'``), so a profile cannot silently fall back to a default.

Telemetry limits: under ``[telemetry.<kind>]``, ``field = [lo, hi]`` or
``field = {min = lo, max = hi}`` (either bound may be left out) requires a number in that
range, ``field = true`` / ``"text"`` requires that exact value. A listed field must be
present and not null.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols import display_frame, payloads, topics

__all__ = ["CHECKS", "FieldRule", "Profile", "ProfileError", "default_profile", "load_profile"]

PROFILES_DIR = Path(__file__).with_name("profiles")
CHECKS = ("online", "telemetry", "report_now", "test_tone", "amplifier", "test_pattern", "reconnect", "clock")
_SECTIONS = ("profile", "online", "telemetry", "report_now", *CHECKS[3:6], "reconnect", "clock")


class ProfileError(ValueError):
    """The profile file is missing, not TOML, or has a bad value (the message names it)."""


@dataclass(frozen=True)
class FieldRule:
    """One telemetry field's limit: a range for numbers, or an exact value."""

    kind: str
    field: str
    lo: float | None = None
    hi: float | None = None
    equals: bool | str | None = None

    @property
    def name(self) -> str:
        """``kind.field``, as the report names it."""
        return f"{self.kind}.{self.field}"

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (from a decoded message) meets the rule; None never does."""
        if value is None:
            return False
        if self.equals is not None:
            return type(value) is type(self.equals) and value == self.equals
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def describe(self) -> str:
        """The limit as text: ``[-113, -51]``, ``≥ 1``, ``= true``."""
        if self.equals is not None:
            return "= " + (str(self.equals).lower() if isinstance(self.equals, bool) else self.equals)
        if self.lo is not None and self.hi is not None:
            return f"[{self.lo:g}, {self.hi:g}]"
        if self.lo is not None:
            return f"≥ {self.lo:g}"
        return f"≤ {self.hi:g}" if self.hi is not None else "present"


@dataclass(frozen=True)
class Profile:
    """A loaded, validated acceptance profile (attributes mirror the TOML keys)."""

    name: str
    device_kind: str
    vendor: str
    checks: tuple[str, ...]
    birth_max_age_s: float
    state_wait_s: float
    telemetry_kinds: tuple[str, ...]
    telemetry_wait_s: float
    rules: tuple[FieldRule, ...]
    report_now_limit_s: float
    tone_freq_hz: float
    tone_level_dbfs: float
    tone_seconds: float
    tone_tolerance_db: float
    tone_freq_tolerance_hz: float
    amp_min_rise_w: float
    pattern: str
    pattern_seconds: float
    pattern_wait_s: float
    reconnect_after_s: float
    reconnect_limit_s: float
    clock_max_skew_s: float
    command_timeout_s: float
    source: str = "<profile>"
    sha256: str = ""

    def summary(self) -> dict[str, Any]:
        """What the report records about the profile."""
        return {
            "name": self.name,
            "device_kind": self.device_kind,
            "vendor": self.vendor,
            "source": self.source,
            "sha256": self.sha256,
        }


class _Table:
    def __init__(self, name: str, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise ProfileError(f"[{name}] must be a table, got {type(raw).__name__}")
        self.name, self.raw = name, raw
        self.used: set[str] = set()

    def check_unknown(self, also: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(self.raw) - self.used - set(also))
        if unknown:
            raise ProfileError(f"[{self.name}] unknown key {unknown[0]!r}")

    def fail(self, key: str, what: str, value: Any) -> ProfileError:
        return ProfileError(f"[{self.name}] {key} must be {what}, got {value!r}")

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        self.used.add(key)
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(key, f"a number {lo:g}..{hi:g}", value)
        return float(value)

    def text(self, key: str, default: str) -> str:
        self.used.add(key)
        value = self.raw.get(key, default)
        if not isinstance(value, str):
            raise self.fail(key, "a string", value)
        return value

    def names(self, key: str, default: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
        self.used.add(key)
        value = self.raw.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v in allowed for v in value):
            raise self.fail(key, "a list of " + ", ".join(allowed), value)
        return tuple(value)


def _rule(kind: str, field: str, value: Any) -> FieldRule:
    where = f"[telemetry.{kind}] {field}"
    if isinstance(value, bool | str):
        return FieldRule(kind, field, equals=value)
    if isinstance(value, list) and len(value) == 2:
        lo, hi = value
    elif isinstance(value, dict) and set(value) <= {"min", "max"}:
        lo, hi = value.get("min"), value.get("max")
    else:
        raise ProfileError(f"{where} must be [lo, hi], {{min, max}}, true/false or a string, got {value!r}")
    for bound in (lo, hi):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float)):
            raise ProfileError(f"{where} bounds must be numbers, got {value!r}")
    if lo is not None and hi is not None and lo > hi:
        raise ProfileError(f"{where} lower bound {lo} is above upper bound {hi}")
    return FieldRule(kind, field, None if lo is None else float(lo), None if hi is None else float(hi))


def _rules(telemetry: _Table) -> tuple[FieldRule, ...]:
    out: list[FieldRule] = []
    for kind in topics.TELEMETRY_KINDS:
        table = _Table(f"telemetry.{kind}", telemetry.raw.get(kind, {}))
        known = {spec["name"] for spec in payloads.SCHEMAS[kind][1]}
        for field, value in table.raw.items():
            if field not in known:
                raise ProfileError(f"[telemetry.{kind}] {field} is not a {kind} field (protocol v1)")
            out.append(_rule(kind, field, value))
    return tuple(out)


def parse_profile(raw: dict[str, Any], source: str = "<profile>", sha256: str = "") -> Profile:
    """Validate an already-parsed profile.

    Raises:
        ProfileError: a section or key is unknown or a value is invalid.
    """
    for name in raw:
        if name not in _SECTIONS:
            raise ProfileError(f"unknown section [{name}] (known: {', '.join(_SECTIONS)})")
    t = {name: _Table(name, raw.get(name, {})) for name in _SECTIONS}
    head = t["profile"]
    kind = head.text("device_kind", "")
    if kind not in payloads.DEVICE_KINDS:
        raise head.fail("device_kind", "one of " + ", ".join(payloads.DEVICE_KINDS), kind)
    pattern = t["test_pattern"].text("pattern", "grid")
    if pattern not in display_frame.TEST_PATTERN_IDS:
        raise t["test_pattern"].fail(
            "pattern", "one of " + ", ".join(display_frame.TEST_PATTERN_IDS), pattern
        )
    tone, clock = t["test_tone"], t["clock"]
    profile = Profile(
        name=head.text("name", f"{kind} default"),
        device_kind=kind,
        vendor=head.text("vendor", ""),
        checks=head.names("checks", CHECKS, CHECKS),
        birth_max_age_s=60 * t["online"].number("birth_max_age_min", 1440, 0.1, 525600),
        state_wait_s=t["online"].number("wait_s", 5, 0.1, 600),
        telemetry_kinds=t["telemetry"].names("kinds", ("heartbeat",), topics.TELEMETRY_KINDS),
        telemetry_wait_s=t["telemetry"].number("wait_s", 15, 0.1, 3600),
        rules=_rules(t["telemetry"]),
        report_now_limit_s=t["report_now"].number("limit_s", 5, 0.01, 600),
        tone_freq_hz=tone.number("freq_hz", 1000, 20, 20000),
        tone_level_dbfs=tone.number("level_dbfs", -12, -60, 0),
        tone_seconds=tone.number("seconds", 5, 0.5, 60),
        tone_tolerance_db=tone.number("tolerance_db", 2, 0.01, 60),
        tone_freq_tolerance_hz=tone.number("freq_tolerance_hz", 50, 0.1, 20000),
        amp_min_rise_w=t["amplifier"].number("min_rise_w", 5, 0, 100000),
        pattern=pattern,
        pattern_seconds=t["test_pattern"].number("seconds", 10, 1, 600),
        pattern_wait_s=t["test_pattern"].number("wait_s", 10, 0.1, 600),
        reconnect_after_s=t["reconnect"].number("after_s", 1, 0, 60),
        reconnect_limit_s=t["reconnect"].number("limit_s", 30, 0.1, 3600),
        clock_max_skew_s=clock.number("max_skew_s", 5, 0.001, 86400),
        command_timeout_s=t["report_now"].number("timeout_s", 30, 0.1, 600),
        source=source,
        sha256=sha256,
    )
    for name, table in t.items():
        table.check_unknown(topics.TELEMETRY_KINDS if name == "telemetry" else ())
    return profile


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile file.

    Raises:
        ProfileError: it cannot be read, is not TOML, or a value is invalid.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProfileError(f"profile {path} is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from None
    return parse_profile(raw, str(path), hashlib.sha256(data).hexdigest())


def default_profile(device_kind: str) -> Profile:
    """The shipped profile of a device kind.

    Raises:
        ProfileError: no default profile for that kind.
    """
    if device_kind not in payloads.DEVICE_KINDS:
        raise ProfileError(f"no default acceptance profile for device kind {device_kind!r}")
    return load_profile(PROFILES_DIR / f"{device_kind}.toml")
