"""The short form of a notice, for SMS and chat: at most two concatenated Vietnamese SMS.

Vietnamese with diacritics does not fit the GSM 7-bit alphabet, so an SMS carrying it is
encoded in UCS-2: 70 characters in a single message, 67 per part once it is split (the
user-data header takes the rest). Two parts, 134 characters, is the budget: it keeps the
cost of a notice at two messages and still names the fault, the place, the device, the time
and the evidence. Every character tincoso writes is in the Basic Multilingual Plane (text is
NFC-normalised first), so one character is one UCS-2 unit.
"""

from __future__ import annotations

import unicodedata

from backend.catalogue import LANGUAGES, TERMS, term

__all__ = [
    "SHORT_LIMIT",
    "SHORT_TITLE",
    "UCS2_PART",
    "UCS2_SINGLE",
    "short_text",
    "sms_parts",
    "ucs2_units",
    "unaccented",
]

UCS2_SINGLE = 70
UCS2_PART = 67
SHORT_LIMIT = 2 * UCS2_PART

# fault -> language -> a title short enough for an SMS (catalogue ``fault.X.short``); the
# notice's title otherwise.
SHORT_TITLE: dict[str, dict[str, str]] = {
    key.split(".")[1]: {lang: term(key, lang) for lang in LANGUAGES}
    for key in TERMS
    if key.startswith("fault.") and key.endswith(".short")
}


def ucs2_units(text: str) -> int:
    """UCS-2/UTF-16 code units of ``text`` once NFC-normalised (what an SMS counts)."""
    return len(unicodedata.normalize("NFC", text).encode("utf-16-le")) // 2


def sms_parts(text: str) -> int:
    """How many SMS a UCS-2 text takes: one up to 70 units, else 67 per part."""
    units = ucs2_units(text)
    return 1 if units <= UCS2_SINGLE else -(-units // UCS2_PART)


def _first_clause(evidence: str) -> str:
    return evidence.split(" (", 1)[0].split("; ", 1)[0].strip()


def _heading(evidence: str) -> str:
    # "Nghi mất điện lưới: điện áp nguồn về 0 V lúc 17:02, ..." -> the likely cause alone.
    head, colon, _ = _first_clause(evidence).partition(": ")
    return head if colon else ""


def short_text(
    head: str,
    place: tuple[str, str],
    device: str,
    when: str,
    evidence: str,
    *,
    limit: int = SHORT_LIMIT,
) -> str:
    """Compose the short form, dropping detail until it fits ``limit`` UCS-2 units.

    Args:
        head: ``SỰ CỐ #K7Q2M Mất kết nối``.
        place: Commune and hamlet names.
        device: Device id.
        when: ``từ 17:12 26/11`` or ``kéo dài 1 giờ 05 phút``.
        evidence: The evidence sentence ("" for none).
        limit: Longest result.

    Returns:
        NFC text of at most ``limit`` units: the evidence is shortened to its first clause,
        then to its heading (an outage's likely cause), then left out, then the hamlet is cut,
        and only then the text itself.
    """
    commune, hamlet = place
    for evidence_part, hamlet_part in (
        (evidence, hamlet),
        (_first_clause(evidence), hamlet),
        (_heading(evidence), hamlet),
        ("", hamlet),
    ):
        text = _join(head, commune, hamlet_part, device, when, evidence_part)
        if ucs2_units(text) <= limit:
            return text
    base = _join(head, commune, "", device, when, "")
    room = limit - ucs2_units(base) - 2
    if room >= 4:
        return _join(head, commune, hamlet[: room - 1] + "…", device, when, "")
    text = unicodedata.normalize("NFC", base)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _join(head: str, commune: str, hamlet: str, device: str, when: str, evidence: str) -> str:
    place = f"{commune}, {hamlet}" if hamlet else commune
    text = f"{head} - {place}, {device}, {when}"
    if evidence:
        text += f": {evidence}"
    return unicodedata.normalize("NFC", text)


def unaccented(text: str) -> str:
    """Vietnamese without diacritics (``Tràng Xá`` -> ``Trang Xa``), for SMS routes limited to GSM 7-bit.

    Some brandname routes refuse or overcharge Unicode SMS; the same text without accents is
    still read by everyone, and at most 134 characters it fits one concatenated pair even then.
    """
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.replace("“", '"').replace("”", '"').replace("–", "-").replace("…", "...")
