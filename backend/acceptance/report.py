"""The acceptance report: ``report.json``, its SHA-256 and signature, ``report.html`` and ``report.pdf``.

``report.json`` is the record; ``report.json.sha256`` holds its hash in ``sha256sum``
format (so ``sha256sum -c`` works too). With the signing party's key, ``report.json.sig``
holds an Ed25519 signature of the same bytes and the public key (see
``backend/acceptance/signing.py``); the HTML and PDF show the hash and the key's
fingerprint, so a printed and signed copy names exactly one JSON file and one key.
:func:`verify` recomputes the hash later; ``signing.verify_signature`` checks the signature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.acceptance.parse import REPORT_FORMAT, read_report, sha256_hex
from backend.acceptance.runner import AcceptanceRun
from backend.acceptance.signing import sign_file
from backend.acceptance.text import LANGS, check_title, tr
from backend.registry import LOCAL_TZ, Device

__all__ = ["ReportFiles", "Verification", "build_report", "render_html", "verify", "write_report"]

TEMPLATES = Path(__file__).with_name("templates")
_VN = LOCAL_TZ  # one time zone constant (protocols/stored_data.py through backend.registry)


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written, and the hash of its JSON."""

    json_path: Path
    sha256_path: Path
    html_path: Path
    sha256: str
    sig_path: Path | None = None
    fingerprint: str | None = None
    pdf_path: Path | None = None


@dataclass(frozen=True)
class Verification:
    """The outcome of ``tincoso acceptance verify``."""

    path: Path
    computed: str
    recorded: str | None

    @property
    def ok(self) -> bool:
        """The recorded hash exists and matches."""
        return self.recorded is not None and self.recorded == self.computed


def local_iso(ms: int) -> str:
    """Unix ms as Vietnam local time, ISO 8601 with offset."""
    return datetime.fromtimestamp(ms / 1000, _VN).isoformat(timespec="seconds")


def build_report(run: AcceptanceRun, device: Device | None = None, lang: str = "vi") -> dict[str, Any]:
    """The report as a JSON-ready dict (device identity, firmware, checks, verdict)."""
    birth = run.birth or {}
    identity: dict[str, Any] = {"id": run.device_id, "kind": run.device_kind}
    if device is not None:
        identity.update(
            commune=device.commune, hamlet=device.hamlet, vendor=device.vendor, model=device.model
        )
    checks = [{"title": check_title(lang, c.name), **c.to_json()} for c in run.checks]
    return {
        "format": REPORT_FORMAT,
        "lang": lang,
        "device": identity,
        "firmware": {
            "agent_version": birth.get("agent_version"),
            "platform": birth.get("platform"),
            "boot_id": birth.get("boot_id"),
            "bdseq": birth.get("bdseq"),
        },
        "hardware": run.hardware
        or {"imei": None, "iccid": None, "serial": None, "serial_source": None, "error": "not asked"},
        "profile": run.profile.summary(),
        "started_ms": run.started_ms,
        "ended_ms": run.ended_ms,
        "started": local_iso(run.started_ms),
        "ended": local_iso(run.ended_ms),
        "passed": run.passed,
        "checks_passed": sum(1 for c in run.checks if c.passed),
        "checks_total": len(run.checks),
        "checks": checks,
        "invalid_messages": run.invalid_messages[:50],
    }


def render_html(report: dict[str, Any], sha256: str, lang: str = "vi", fingerprint: str | None = None) -> str:
    """The report page (self-contained HTML, A4 print layout) showing the JSON's hash and signer key."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["value"] = _value
    return env.get_template("report.html").render(
        r=report,
        sha256=sha256,
        fingerprint=fingerprint,
        lang=lang if lang in LANGS else "vi",
        t=lambda key: tr(lang, key),
    )


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def write_report(
    report: dict[str, Any],
    directory: str | Path,
    lang: str = "vi",
    *,
    signing_key: Ed25519PrivateKey | None = None,
    pdf: bool = False,
) -> ReportFiles:
    """Write ``report.json``, ``.sha256``, ``.sig`` (with a key), ``report.html`` and ``report.pdf``.

    Args:
        report: from :func:`build_report`.
        directory: created if missing.
        lang: language of the HTML and PDF.
        signing_key: the signing party's private key; None leaves the report unsigned.
        pdf: also print ``report.pdf`` (WeasyPrint, A4).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(report, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    digest = sha256_hex(data)
    json_path = directory / "report.json"
    json_path.write_bytes(data)
    sha_path = directory / "report.json.sha256"
    sha_path.write_text(f"{digest}  report.json\n", encoding="ascii")
    sig_path, fingerprint = sign_file(json_path, signing_key) if signing_key else (None, None)
    html = render_html(report, digest, lang, fingerprint)
    html_path = directory / "report.html"
    html_path.write_text(html, encoding="utf-8")
    pdf_path = None
    if pdf:
        from backend.kpi.render_pdf import html_to_pdf

        pdf_path = html_to_pdf(html, directory / "report.pdf")
    return ReportFiles(json_path, sha_path, html_path, digest, sig_path, fingerprint, pdf_path)


def verify(path: str | Path, expected: str | None = None) -> Verification:
    """Recompute the SHA-256 of a ``report.json`` and compare it with the recorded one.

    Args:
        path: the report.
        expected: the hash from a signed copy; default: the ``.sha256`` file beside it.

    Raises:
        ReportError: the file is unreadable or not an acceptance report.
    """
    path = Path(path)
    _report, data = read_report(path)
    recorded = expected.strip().lower() if expected else None
    if recorded is None:
        sidecar = path.with_name(path.name + ".sha256")
        try:
            recorded = sidecar.read_text(encoding="ascii").split()[0].lower()
        except (OSError, IndexError, UnicodeDecodeError):
            recorded = None
    return Verification(path, sha256_hex(data), recorded)


def now_stamp(ms: int) -> str:
    """A directory-safe stamp of a run's start (UTC): ``20251126T100000Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
