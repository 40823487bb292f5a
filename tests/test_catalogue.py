"""One catalogue of words: every fault, kind and shared term once, read the same everywhere."""

from __future__ import annotations

from backend.alerts.messages import FAULT_TEXT, render
from backend.alerts.model import Alert
from backend.catalogue import TERMS, fault_title, kind_name, term
from backend.monitor.rules import FAULTS
from backend.registry import DEVICE_KINDS, load_registry
from tests.monitor_support import local_ts
from tests.test_registry import EXAMPLE


def test_every_term_has_vietnamese_and_english() -> None:
    for key, (vi, en) in TERMS.items():
        assert vi.strip(), key
        assert en.strip(), key


def test_every_fault_and_kind_is_in_the_catalogue() -> None:
    for fault in FAULTS:
        assert f"fault.{fault}" in TERMS
        assert f"fault.{fault}.check" in TERMS
    assert all(f"kind.{kind}" in TERMS for kind in DEVICE_KINDS)
    assert set(FAULT_TEXT) == set(FAULTS)


def test_an_alert_names_things_with_the_catalogues_words() -> None:
    registry = load_registry(EXAMPLE)
    for language in ("vi", "en"):
        notice = render(
            Alert("vn-trangxa-loa-01", "amp_idle", local_ts(17, 0), local_ts(17, 1), "2 W"),
            registry,
            "open",
            local_ts(17, 1),
            language,
        )
        assert notice.text.startswith(f"{term('event.open', language)}: {fault_title('amp_idle', language)}")
        assert f"{term('commune', language)}: " in notice.text
        assert f"({kind_name('speaker_cluster', language)})" in notice.text


def test_a_term_reads_the_same_in_alerts_dashboards_reports_and_the_cli() -> None:
    from backend.acceptance.text import tr
    from backend.kpi.i18n import Text
    from dashboards.i18n import Strings

    for language in ("vi", "en"):
        commune = term("commune", language)
        assert Strings(language)("var.commune") == commune
        assert Text(language)("col.commune") == commune
        assert tr(language, "commune") == commune
        assert Strings(language)("state.offline") == term("state.offline", language)
        assert Text(language).verdict("unknown") == term("verdict.unknown", language)
        assert tr(language, "pass") == term("verdict.pass", language)
    assert term("verdict.unknown") == "Không có dữ liệu"
