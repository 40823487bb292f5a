"""What each indicator of the plan means when it is computed from measurements.

The thresholds are configuration (`Definitions`, loaded from a TOML file with
`load_definitions`), the yearly targets come from the plan (section II of the district's
2024–2025 plan), and `explain` renders the definition in words (Vietnamese or English)
with the values in force, so every report prints the exact rule it applied.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from protocols import stored_data

__all__ = [
    "DEFAULT_TARGETS",
    "INDICATORS",
    "Definitions",
    "DefinitionsError",
    "explain",
    "load_definitions",
    "target_for",
    "title",
]

INDICATORS = ("1.1", "1.2", "1.3", "1.4", "1.5", "2.2")

# The plan's targets in percent of units (2.2 "yes" = 100: the district board qualifies).
DEFAULT_TARGETS: Mapping[str, Mapping[int, float]] = MappingProxyType(
    {
        "1.1": {2024: 100.0, 2025: 100.0},
        "1.2": {2024: 50.0, 2025: 100.0},
        "1.3": {2024: 100.0, 2025: 100.0},
        "1.4": {2024: 0.0, 2025: 100.0},
        "1.5": {2024: 0.0, 2025: 70.0},
        "2.2": {2024: 100.0, 2025: 100.0},
    }
)

_TITLES = {
    "1.1": (
        "Tỷ lệ xã, thị trấn có hệ thống truyền thanh hoạt động đến xóm, tổ dân phố",
        "Communes/towns whose radio works down to every hamlet",
    ),
    "1.2": (
        "Tỷ lệ chuyển đổi đài truyền thanh có dây/không dây FM sang đài truyền thanh ứng dụng CNTT-VT",
        "Wired/FM commune radio converted to IP radio",
    ),
    "1.3": ("Tỷ lệ xã, thị trấn có trang thông tin điện tử", "Communes/towns with a website"),
    "1.4": ("Tỷ lệ thị trấn có bảng tin điện tử công cộng", "Towns with a public e-board"),
    "1.5": ("Tỷ lệ xã có bảng tin điện tử công cộng", "Communes with a public e-board"),
    "2.2": (
        "Bảng tin điện tử công cộng cỡ lớn của huyện kết nối với Hệ thống thông tin nguồn cấp tỉnh",
        "District large LED/LCD board connected to the provincial source system",
    ),
}


class DefinitionsError(ValueError):
    """The definitions file is missing, not TOML, or has a bad value (the message names it)."""


@dataclass(frozen=True)
class Definitions:
    """Thresholds of every indicator; the defaults are what the report uses without a file.

    Attributes:
        dead_air_threshold_dbfs: audio at or below this RMS is silence (dead air).
        bulletin_sounded_pct: S, a cluster "sounded" in a bulletin when audio above the
            threshold covered at least this share of the scheduled window.
        cluster_bulletins_pct: X, a hamlet cluster passes 1.1 when it sounded in at least
            this share of the period's scheduled bulletins.
        audio_hold_s: an audio reading stands for the line until the next reading, at most
            this long (agents send on change plus a snapshot every 300 s).
        board_on_pct: Y, an e-board passes 1.4/1.5 when on and showing content for at
            least this share of its operating hours.
        display_hold_s: a display reading stands until the next one, at most this long.
        led_sync_max_h: Z, the district board's provincial source sync must be fresher.
        led_online_pct: W, share of operating hours the district board must be online
            and in sync.
        website_ok_pct: share of website checks in the period that must succeed for 1.3.
        website_interval_s: how often the monitor probes commune websites.
        website_timeout_s: one probe's time limit.
        bucket_s: telemetry presence is counted in buckets of this size (data coverage).
        gap_min_s: a silence in a device's telemetry at least this long is listed as a gap.
        coverage_warn_pct: below this data coverage the report opens with a warning banner.
        targets: indicator id -> year -> target percent.
    """

    dead_air_threshold_dbfs: float = stored_data.SOUND_THRESHOLD_DBFS
    bulletin_sounded_pct: float = 50.0
    cluster_bulletins_pct: float = 90.0
    audio_hold_s: float = 360.0
    board_on_pct: float = 90.0
    display_hold_s: float = 360.0
    led_sync_max_h: float = 24.0
    led_online_pct: float = 90.0
    website_ok_pct: float = 90.0
    website_interval_s: float = 3600.0
    website_timeout_s: float = 10.0
    bucket_s: int = 300
    gap_min_s: float = 900.0
    coverage_warn_pct: float = 80.0
    targets: Mapping[str, Mapping[int, float]] = field(default_factory=lambda: DEFAULT_TARGETS)

    def __post_init__(self) -> None:
        for name in ("bulletin_sounded_pct", "cluster_bulletins_pct", "board_on_pct", "led_online_pct"):
            _check_pct(name, getattr(self, name))
        _check_pct("website_ok_pct", self.website_ok_pct)
        _check_pct("coverage_warn_pct", self.coverage_warn_pct)
        if not -200 <= self.dead_air_threshold_dbfs <= 0:
            raise DefinitionsError(
                f"dead_air_threshold_dbfs must be between -200 and 0, got {self.dead_air_threshold_dbfs}"
            )
        for name in ("audio_hold_s", "display_hold_s", "led_sync_max_h", "website_interval_s"):
            if getattr(self, name) <= 0:
                raise DefinitionsError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.website_timeout_s <= 120:
            raise DefinitionsError(f"website_timeout_s must be in (0, 120], got {self.website_timeout_s}")
        if not 60 <= self.bucket_s <= 3600:
            raise DefinitionsError(f"bucket_s must be between 60 and 3600, got {self.bucket_s}")
        if self.gap_min_s < self.bucket_s:
            raise DefinitionsError(f"gap_min_s must be >= bucket_s ({self.bucket_s}), got {self.gap_min_s}")
        for indicator, years in self.targets.items():
            if indicator not in INDICATORS:
                raise DefinitionsError(f"targets.{indicator!r} is not an indicator ({', '.join(INDICATORS)})")
            if not years:
                raise DefinitionsError(f"targets.{indicator} has no year")
            for year, pct in years.items():
                _check_pct(f"targets.{indicator}.{year}", pct)
        missing = [i for i in INDICATORS if i not in self.targets]
        if missing:
            raise DefinitionsError(f"targets lacks indicators {', '.join(missing)}")


def _check_pct(name: str, value: float) -> None:
    if not 0 <= value <= 100:
        raise DefinitionsError(f"{name} must be a percentage 0..100, got {value!r}")


def load_definitions(path: str | os.PathLike[str] | None) -> Definitions:
    """Defaults overridden by a TOML file (top-level keys as `Definitions`, ``[targets."1.2"]``).

    Example file::

        cluster_bulletins_pct = 95
        [targets."1.2"]
        2025 = 80

    Raises:
        DefinitionsError: unreadable file, unknown key, wrong type or out-of-range value.
    """
    if path is None:
        return Definitions()
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DefinitionsError(f"definitions file {path} does not exist") from None
    except (OSError, UnicodeError, tomllib.TOMLDecodeError) as exc:
        raise DefinitionsError(f"cannot read definitions file {path}: {exc}") from None
    return definitions_from_dict(raw, source=str(path))


def definitions_from_dict(raw: Mapping[str, Any], source: str = "definitions") -> Definitions:
    """Validate already-parsed definitions (what `load_definitions` does after TOML)."""
    known = {f.name: f for f in fields(Definitions)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise DefinitionsError(f"{source}: {key!r} is not a known setting (known: {', '.join(known)})")
        if key == "targets":
            values[key] = _targets(value, source)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DefinitionsError(f"{source}: {key} must be a number, got {value!r}")
        values[key] = int(value) if key == "bucket_s" else float(value)
    try:
        return replace(Definitions(), **values)
    except DefinitionsError as exc:
        raise DefinitionsError(f"{source}: {exc}") from None


def _targets(raw: Any, source: str) -> dict[str, dict[int, float]]:
    if not isinstance(raw, Mapping):
        raise DefinitionsError(f"{source}: targets must be a table of indicators")
    merged = {k: dict(v) for k, v in DEFAULT_TARGETS.items()}
    for indicator, years in raw.items():
        if not isinstance(years, Mapping):
            raise DefinitionsError(f"{source}: targets.{indicator} must be a table of year = percent")
        table = merged.setdefault(str(indicator), {})
        for year, pct in years.items():
            if not str(year).isdigit() or isinstance(pct, bool) or not isinstance(pct, int | float):
                problem = f"targets.{indicator}: {year!r} = {pct!r} is not year = percent"
                raise DefinitionsError(f"{source}: {problem}")
            table[int(year)] = float(pct)
    return merged


def target_for(defs: Definitions, indicator: str, year: int) -> tuple[float, int]:
    """The target percent of ``indicator`` for ``year`` and the plan year it came from.

    A year outside the plan takes the nearest plan year before it (after the plan, its last
    year still stands), or the first plan year for a period before the plan.
    """
    years = defs.targets[indicator]
    earlier = [y for y in years if y <= year]
    chosen = max(earlier) if earlier else min(years)
    return years[chosen], chosen


def title(indicator: str, lang: str) -> str:
    """The plan's wording of an indicator."""
    vi, en = _TITLES[indicator]
    return vi if lang == "vi" else en


def _num(value: float) -> str:
    return f"{value:g}"


def explain(indicator: str, defs: Definitions, lang: str) -> str:
    """The definition of ``indicator`` in words, with the thresholds in force."""
    d = {
        "thr": _num(defs.dead_air_threshold_dbfs),
        "s": _num(defs.bulletin_sounded_pct),
        "x": _num(defs.cluster_bulletins_pct),
        "y": _num(defs.board_on_pct),
        "z": _num(defs.led_sync_max_h),
        "w": _num(defs.led_online_pct),
        "web": _num(defs.website_ok_pct),
        "hold": _num(defs.audio_hold_s),
    }
    text = _EXPLAIN[indicator][0 if lang == "vi" else 1]
    return text.format(**d)


_EXPLAIN = {
    "1.1": (
        "Một cụm loa đã phát trong một bản tin khi thiết bị báo đang phát, không có khoảng lặng (dead air) "
        "và âm thanh đo được trên đầu ra (RMS) lớn hơn {thr} dBFS trong ít nhất {s}% thời lượng bản tin "
        "theo lịch. Một thôn/xóm đạt khi cụm loa đã phát trong ít "
        "nhất {x}% số bản tin theo lịch của kỳ. Một xã đạt khi mọi cụm loa đều đạt. Bản tin mà thiết bị "
        "không gửi dữ liệu nào (không có bản ghi âm thanh lẫn nhịp tim) là 'không có dữ liệu': không tính "
        "là phát, cũng không tính là không phát. Mỗi bản ghi âm thanh có giá trị đến bản ghi kế tiếp, tối "
        "đa {hold} giây.",
        "A speaker cluster sounded in a bulletin when the device reported playing without dead air and "
        "the audio measured on its output (RMS) was above {thr} dBFS for at least {s}% of the scheduled "
        "window. A hamlet passes when its cluster sounded "
        "in at least {x}% of the period's scheduled bulletins; a commune passes when every cluster "
        "passes. A bulletin for which the device sent nothing (no audio and no heartbeat) is 'no data': "
        "neither sounded nor silent. An audio reading stands until the next one, at most {hold} s.",
    ),
    "1.2": (
        "Xã có đài truyền thanh ứng dụng CNTT-VT (loại 'ip' trong danh mục) và đã được đo là hoạt động: "
        "ít nhất một cụm loa đã phát ít nhất một bản tin trong kỳ (theo định nghĩa 1.1). Tỷ lệ tính trên "
        "tất cả xã, thị trấn.",
        "A commune whose radio is an IP system (type 'ip' in the registry) verified operating: at least "
        "one of its clusters sounded in at least one bulletin of the period (as defined for 1.1). The "
        "share is over all communes and towns.",
    ),
    "1.3": (
        "Máy chủ tincoso kiểm tra trang thông tin điện tử của từng xã theo lịch (mã HTTP, thời gian phản "
        "hồi, hạn chứng chỉ TLS). Một xã đạt khi ít nhất {web}% số lần kiểm tra trong kỳ thành công "
        "(HTTP dưới 400, chứng chỉ còn hạn).",
        "The tincoso backend probes each commune website on a schedule (HTTP status, latency, TLS "
        "expiry). A commune passes when at least {web}% of the period's checks succeeded (HTTP below "
        "400, certificate not expired).",
    ),
    "1.4": (
        "Một thị trấn đạt khi bảng tin điện tử của nó bật và đang hiển thị nội dung (nguồn bật, không "
        "trắng, không đứng hình) trong ít nhất {y}% giờ hoạt động, theo dữ liệu màn hình.",
        "A town passes when its e-board was on and showing content (power on, not blank, not frozen) "
        "for at least {y}% of its operating hours, from the display readings.",
    ),
    "1.5": (
        "Một xã đạt khi bảng tin điện tử của nó bật và đang hiển thị nội dung (nguồn bật, không trắng, "
        "không đứng hình) trong ít nhất {y}% giờ hoạt động, theo dữ liệu màn hình.",
        "A commune passes when its e-board was on and showing content (power on, not blank, not frozen) "
        "for at least {y}% of its operating hours, from the display readings.",
    ),
    "2.2": (
        "Bảng LED của huyện đạt khi trực tuyến (có dữ liệu màn hình) và lần đồng bộ với Hệ thống thông "
        "tin nguồn cấp tỉnh mới hơn {z} giờ trong ít nhất {w}% giờ hoạt động. Thời gian không có dữ liệu "
        "được tính là mất kết nối.",
        "The district LED board passes when online (sending display readings) with its provincial "
        "source sync fresher than {z} h for at least {w}% of its operating hours. Time without data "
        "counts as offline.",
    ),
}
