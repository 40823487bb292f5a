"""Where a report's figures come from, so an auditor can tell two reports apart and redo one.

The provenance block names the software version, the data source, fingerprints (SHA-256)
of the registry and of the definitions in force, the period in Vietnam time and the data
coverage; and the indicators the report does not measure, with the reason (2.1).
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any

from backend.kpi.compute import data_coverage_pct
from backend.kpi.definitions import Definitions
from backend.kpi.export import _plain
from backend.kpi.model import KpiReport
from backend.registry import Registry
from protocols.stored_data import LOCAL_TZ_NAME

__all__ = ["NOT_MEASURED", "fingerprint", "not_measured", "provenance", "software_version"]

# Indicators of the plan that measurements cannot decide, with the reason (vi, en).
NOT_MEASURED = {
    "2.1": (
        "Đài Truyền thanh - Truyền hình cấp huyện có cơ sở vật chất",
        "District radio-TV facility exists",
        "Không đo được: đây là cơ sở vật chất (trụ sở, trang thiết bị) của đài huyện, không có thiết bị "
        "nào gửi dữ liệu về tincoso. Kết quả lấy theo báo cáo của Phòng Văn hóa và Thông tin.",
        "Not measurable: it is the district station's premises and equipment, which send no data to "
        "tincoso. Take the result from the culture and information office's own report.",
    ),
}


def software_version() -> str:
    """``tincoso <version>`` of the installed package."""
    try:
        return f"tincoso {metadata.version('tincoso')}"
    except metadata.PackageNotFoundError:
        return "tincoso (not installed)"


def fingerprint(value: Any) -> str:
    """SHA-256 of a value's canonical JSON (sorted keys): the same inputs, the same digest."""
    text = json.dumps(_plain(value), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def provenance(report: KpiReport, registry: Registry, defs: Definitions, source: str) -> dict[str, Any]:
    """The provenance block of a report (plain values, for HTML and JSON alike)."""
    period = report.period
    fleet = {"district": registry.district, "communes": registry.communes, "devices": registry.devices}
    return {
        "software": software_version(),
        "source": source or "—",
        "registry_sha256": fingerprint(fleet),
        "definitions_sha256": fingerprint(defs),
        "period": f"{period.first_day.isoformat()} .. {period.last_day.isoformat()} ({LOCAL_TZ_NAME})",
        "data_coverage_pct": data_coverage_pct(report),
    }


def not_measured(lang: str) -> list[dict[str, str]]:
    """The indicators the report does not measure, with title and reason in ``lang``."""
    pick = 0 if lang == "vi" else 1
    return [
        {"id": indicator, "title": texts[pick], "reason": texts[2 + pick]}
        for indicator, texts in NOT_MEASURED.items()
    ]
