"""The KPI report as PDF, printed by WeasyPrint from the same HTML as the web page."""

from __future__ import annotations

from pathlib import Path

__all__ = ["html_to_pdf"]


def html_to_pdf(html: str, path: Path) -> Path:
    """Print ``html`` (self-contained: styles inline, images as data URIs) to ``path``.

    WeasyPrint is imported here so the rest of the backend does not load Pango.
    """
    import weasyprint  # type: ignore[import-untyped]

    weasyprint.HTML(string=html, base_url=str(path.parent)).write_pdf(str(path))
    return path
